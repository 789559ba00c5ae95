// The `accord` binary run as a user runs it, and killed as a crash kills it.
import Foundation
import XCTest
import AccordCore
#if canImport(Glibc)
import Glibc
#endif

// MARK: Running the binary

struct CommandResult: CustomStringConvertible {
    var args: [String]
    var status: Int32
    /// True when the process died of a signal; `status` is then the signal number.
    var signaled: Bool
    var stdout: String
    var stderr: String
    var seconds: Double
    var ok: Bool { !signaled && status == 0 }
    var output: String { stdout + stderr }
    var description: String {
        "`accord \(args.joined(separator: " "))`: \(signaled ? "killed by signal" : "exit status") \(status) after \(String(format: "%.2f", seconds)) s\n--- stdout ---\n\(stdout.suffix(3000))\n--- stderr ---\n\(stderr.suffix(3000))"
    }
}

/// A started `accord` process, to wait for or to kill.
final class RunningCommand {
    let args: [String]
    let process: Process
    let stdoutPath: String, stderrPath: String
    let started = Date()

    init(args: [String], process: Process, stdoutPath: String, stderrPath: String) {
        self.args = args; self.process = process; self.stdoutPath = stdoutPath; self.stderrPath = stderrPath
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    func kill(_ signal: Int32 = SIGKILL) { Glibc.kill(pid, signal) }

    /// Waits at most `timeout` seconds (then kills it) and collects the output.
    func finish(timeout: Double = 240) -> CommandResult {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(2000) }
        if process.isRunning { kill(); }
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

enum AccordBinary {
    /// $ACCORD_BIN, else `<package root>/.build/debug/accord` (found from this file's path).
    static let path: String? = {
        if let b = ProcessInfo.processInfo.environment["ACCORD_BIN"], !b.isEmpty { return b }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let candidate = root.appendingPathComponent(".build/debug/accord").path
        return FileManager.default.isExecutableFile(atPath: candidate) ? candidate : nil
    }()

    static func start(_ args: [String], outputDirectory: String, environment: [String: String] = [:]) throws -> RunningCommand {
        guard let bin = path else { throw XCTSkip("accord binary not found: run `swift build --build-tests` or set ACCORD_BIN") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "ACCORD_REPOSITORY")
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let tag = hexString(Sys.randomBytes(5))
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

/// What `accord backup --json` prints.
struct BackupJSON: Decodable {
    var id: String
    var paths: [String]
    var summary: Snapshot.Summary
}

/// The pid of `parent`'s first child process, from /proc (for killing `accord serve`).
func childProcesses(of parent: Int32) -> [Int32] {
    var out: [Int32] = []
    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = Int32(name), let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8) else { continue }
        // pid (comm) state ppid …: comm may hold spaces, so parse after the last ')'.
        guard let close = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        if fields.count > 2, Int32(fields[1]) == parent { out.append(pid) }
    }
    return out
}

func sleepSeconds(_ s: Double) { if s > 0 { usleep(UInt32(s * 1_000_000)) } }
