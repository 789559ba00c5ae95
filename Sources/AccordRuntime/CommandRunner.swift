import Foundation

/// Quotes a word for `/bin/sh` (single quotes unless it is plainly safe).
public func shellQuote(_ s: String) -> String {
    if !s.isEmpty && s.allSatisfy({ $0.isLetter || $0.isNumber || "/._-+:@=,".contains($0) }) { return s }
    return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// How a child process ended.
public struct ExitStatus: CustomStringConvertible, Sendable {
    public var code: Int32
    public var signaled: Bool
    public init(code: Int32, signaled: Bool) { self.code = code; self.signaled = signaled }
    public var succeeded: Bool { code == 0 && !signaled }
    public var description: String { signaled ? "killed by signal \(code)" : "exit status \(code)" }
}

/// Why a command run by `CommandRunner` failed. Its own type, not a backup's
/// or a sync's: the caller (backup's `--command` path, a plan restore, the
/// ssh transport) adds what the failure means for its work.
public enum CommandError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The process could not be started (no shell, no such program, no descriptors).
    case cannotStart(command: String, reason: String)
    /// The process ran and ended badly; `stderrTail` is the end of its stderr.
    case failed(command: String, status: String, stderrTail: String)

    public var command: String {
        switch self { case .cannotStart(let c, _), .failed(let c, _, _): return c }
    }

    public var description: String {
        switch self {
        case .cannotStart(let c, let r): return "cannot start `\(c)`: \(r)"
        case .failed(let c, let s, let e): return "`\(c)` failed (\(s))" + (e.isEmpty ? "" : "; stderr: \(e)")
        }
    }
}

/// Runs `/bin/sh -c COMMAND`, exposing its stdout as a descriptor to stream
/// from (and/or feeding its stdin), and keeping the last 2 KiB of its stderr
/// for error messages. Secrets travel in the environment or stdin, never on
/// the command line.
// @unchecked Sendable: `tail` is shared with the stderr thread only under `tailLock`;
// the pipes are set in `start` before that thread exists.
public final class CommandRunner: @unchecked Sendable {
    public let command: String
    /// Run directly, without a shell, when set (`init(argv:)`).
    let argv: [String]?
    let environment: [String: String]
    let process = Process()
    private var stdoutPipe: Pipe?
    private var stdinPipe: Pipe?
    private let stderrPipe = Pipe()
    private var tail: [UInt8] = []
    private let tailLock = NSLock()
    private let stderrDone = DispatchSemaphore(value: 0)
    /// What no child inherits: the passphrase sources and the S3 credentials.
    public static let secretVariables = ["ACCORD_PASSWORD_FILE", "ACCORD_PASSWORD_COMMAND"] + cloudCredentialVariables
    /// The S3 secrets `AccordS3` reads from the environment.
    public static let cloudCredentialVariables = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    /// Set for `$ACCORD_PASSWORD_COMMAND` alone: a command that fetches the
    /// passphrase from a cloud secret store may need the same credentials.
    public var keepsCloudCredentials = false

    public init(command: String, environment: [String: String] = [:]) {
        self.command = command
        self.argv = nil
        self.environment = environment
    }

    /// A program and its arguments, run without a shell (a relative name is looked up in PATH).
    public init(argv: [String]) {
        self.command = argv.map(shellQuote).joined(separator: " ")
        self.argv = argv
        self.environment = [:]
    }

    /// Starts the command with stdout piped to the caller; returns the read end.
    public func start(stdin: Bool = false, captureStdout: Bool = true) throws -> Int32 {
        if let a = argv, let first = a.first {
            process.executableURL = URL(fileURLWithPath: first.hasPrefix("/") ? first : "/usr/bin/env")
            process.arguments = first.hasPrefix("/") ? Array(a.dropFirst()) : a
        } else {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", command]
        }
        var env = ProcessInfo.processInfo.environment
        // A child (a dump command, a hook, kubectl, ssh) never needs the repository's
        // passphrase source (an inline secret in a password command must not travel)
        // nor the bucket's credentials, which can delete every backup.
        for k in Self.secretVariables { env.removeValue(forKey: k) }
        if keepsCloudCredentials {
            for k in Self.cloudCredentialVariables { if let v = ProcessInfo.processInfo.environment[k] { env[k] = v } }
        }
        for (k, v) in environment { env[k] = v }
        process.environment = env
        if captureStdout { stdoutPipe = Pipe(); process.standardOutput = stdoutPipe } else { process.standardOutput = FileHandle.nullDevice }
        if stdin { stdinPipe = Pipe(); process.standardInput = stdinPipe } else { process.standardInput = FileHandle.nullDevice }
        process.standardError = stderrPipe
        do { try process.run() } catch {
            throw CommandError.cannotStart(command: command, reason: "\(error)")
        }
        try? stdoutPipe?.fileHandleForWriting.close()
        try? stdinPipe?.fileHandleForReading.close()
        try? stderrPipe.fileHandleForWriting.close()
        let fd = stderrPipe.fileHandleForReading.fileDescriptor
        let t = Thread { [self] in
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = (try? buf.withUnsafeMutableBytes { try Sys.read(fd, $0.baseAddress!, 4096) }) ?? 0
                if n <= 0 { break }
                tailLock.withLock {
                    tail.append(contentsOf: buf[0..<n])
                    if tail.count > 4096 { tail.removeFirst(tail.count - 2048) }
                }
            }
            stderrDone.signal()
        }
        t.start()
        return stdoutPipe?.fileHandleForReading.fileDescriptor ?? -1
    }

    /// The write end of the child's stdin (when started with `stdin: true`).
    public var stdinDescriptor: Int32 { stdinPipe?.fileHandleForWriting.fileDescriptor ?? -1 }

    /// Closes the child's stdin so it sees end of input.
    public func closeStdin() { try? stdinPipe?.fileHandleForWriting.close() }

    public func kill() { if process.isRunning { process.terminate() } }

    /// Waits for exit and for stderr to drain.
    public func wait() -> ExitStatus {
        process.waitUntilExit()
        // A grandchild may keep stderr open; the tail we have is enough after 5 s.
        _ = stderrDone.wait(timeout: .now() + 5)
        return ExitStatus(code: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal)
    }

    /// Waits for exit (as `wait`); throws `CommandError.failed` unless it succeeded.
    public func waitSucceeded() throws {
        let status = wait()
        guard status.succeeded else { throw CommandError.failed(command: command, status: status.description, stderrTail: stderrTail) }
    }

    /// Waits up to 5 s for the process to end (it usually has, after an error); nil if it has not.
    public func waitBriefly() -> ExitStatus? {
        let deadline = Sys.monotonicSeconds() + 5
        while process.isRunning && Sys.monotonicSeconds() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { return nil }
        _ = stderrDone.wait(timeout: .now() + 2)
        return ExitStatus(code: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal)
    }

    /// The end of what the command wrote to stderr, on one line.
    public var stderrTail: String {
        let t = tailLock.withLock { tail.suffix(600) }
        return String(decoding: t, as: UTF8.self)
            .split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.suffix(4).joined(separator: " | ")
    }
}
