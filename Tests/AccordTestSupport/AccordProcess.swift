// The `accord` binary run as a user runs it, and killed as a crash kills it:
// one runner for the test targets that drive the command line.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

public struct CommandResult: CustomStringConvertible {
    public var args: [String]
    public var status: Int32
    /// True when the process died of a signal; `status` is then the signal number.
    public var signaled: Bool
    public var stdout: String
    public var stderr: String
    public var seconds: Double
    public var ok: Bool { !signaled && status == 0 }
    public var output: String { stdout + stderr }
    public var description: String {
        "`accord \(args.joined(separator: " "))`: \(signaled ? "killed by signal" : "exit status") \(status) after \(String(format: "%.2f", seconds)) s\n--- stdout ---\n\(stdout.suffix(3000))\n--- stderr ---\n\(stderr.suffix(3000))"
    }
}

/// A started `accord` process whose output goes to files, to wait for or to kill.
public final class RunningCommand {
    public let args: [String]
    let process: Process
    let stdoutPath: String, stderrPath: String
    let started = Date()

    init(args: [String], process: Process, stdoutPath: String, stderrPath: String) {
        self.args = args; self.process = process; self.stdoutPath = stdoutPath; self.stderrPath = stderrPath
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    public func kill(_ signal: Int32 = SIGKILL) { Glibc.kill(pid, signal) }

    /// Waits at most `timeout` seconds (then kills it) and collects the output.
    public func finish(timeout: Double = 240) -> CommandResult {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(2000) }
        if process.isRunning { kill() }
        process.waitUntilExit()
        let seconds = Date().timeIntervalSince(started)
        let out = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: stdoutPath)
        try? FileManager.default.removeItem(atPath: stderrPath)
        return CommandResult(args: args, status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                             stdout: out, stderr: err, seconds: seconds)
    }
}

public enum AccordBinary {
    /// The package root, found from this file's path.
    public static let packageRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// $ACCORD_BIN, else `<package root>/.build/debug/accord`.
    public static let path: String = {
        if let b = ProcessInfo.processInfo.environment["ACCORD_BIN"], !b.isEmpty { return b }
        return packageRoot + "/.build/debug/accord"
    }()

    public static var isBuilt: Bool { FileManager.default.isExecutableFile(atPath: path) }

    /// Starts `accord args` (without ACCORD_REPOSITORY, with `environment`
    /// added); stdout and stderr go to files in `outputDirectory`.
    public static func start(_ args: [String], outputDirectory: String, environment: [String: String] = [:]) throws -> RunningCommand {
        guard isBuilt else { throw XCTSkip("accord binary not found at \(path): run `swift build --build-tests` or set ACCORD_BIN") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "ACCORD_REPOSITORY")
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let tag = String(UInt64.random(in: .min ... .max), radix: 16)
        let out = outputDirectory + "/.stdout-\(tag)", err = outputDirectory + "/.stderr-\(tag)"
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return RunningCommand(args: args, process: p, stdoutPath: out, stderrPath: err)
    }
}
