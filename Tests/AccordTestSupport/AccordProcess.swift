// The one process runner of the test targets: the `accord` binary run as a
// user runs it (STYLE.md item 14), the testenv scripts, psql, cp, ssh-keygen;
// and a started process killed as a crash kills it.
//
// posix_spawn + waitpid, never Foundation's `Process`: on Linux `Process`
// learns of a child's exit through a descriptor its children inherit, so after
// a script that leaves a daemon running (pg-start.sh) `waitUntilExit` never
// returns, and it was seen to miss the exit of a child that crashed. Output
// goes to files, not pipes, so a chatty child never blocks on a full pipe.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

public struct CommandResult: CustomStringConvertible {
    public var args: [String]
    public var status: Int32
    /// True when the process died of a signal (a crash, or our SIGKILL); `status` is then the signal number.
    public var signaled: Bool
    public var stdoutBytes: [UInt8]
    public var stderr: String
    public var seconds: Double
    public var stdout: String { String(decoding: stdoutBytes, as: UTF8.self) }
    public var ok: Bool { !signaled && status == 0 }
    public var output: String { stdout + stderr }
    public var description: String {
        "`\(args.joined(separator: " "))`: \(signaled ? "killed by signal" : "exit status") \(status) after \(String(format: "%.2f", seconds)) s\n--- stdout ---\n\(stdout.suffix(6000))\n--- stderr ---\n\(stderr.suffix(6000))"
    }

    public init(args: [String], status: Int32, signaled: Bool, stdoutBytes: [UInt8], stderr: String, seconds: Double) {
        self.args = args; self.status = status; self.signaled = signaled
        self.stdoutBytes = stdoutBytes; self.stderr = stderr; self.seconds = seconds
    }
}

public struct ProcessStartError: Error, CustomStringConvertible {
    public var description: String
}

/// A child started by `startProcess` and reaped by us alone; its output goes to files.
public final class RunningCommand {
    public let args: [String]
    public let pid: pid_t
    /// The child leads its own process group (`startProcess(newProcessGroup:)`): a kill reaches its children too.
    public let ownsGroup: Bool
    let stdoutPath: String, stderrPath: String
    let started = Date()
    public private(set) var exitStatus: Int32?
    public private(set) var exitSignal: Int32?

    init(args: [String], pid: pid_t, ownsGroup: Bool, stdoutPath: String, stderrPath: String) {
        self.args = args; self.pid = pid; self.ownsGroup = ownsGroup
        self.stdoutPath = stdoutPath; self.stderrPath = stderrPath
    }

    /// Reaps the child if it has ended; true while it runs.
    public var isRunning: Bool {
        if exitStatus != nil || exitSignal != nil { return false }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == 0 { return true }
        if r < 0 { if errno == EINTR { return true }; exitStatus = -1; return false }   // not our child any more: gone
        let sig = status & 0x7f
        if sig == 0 { exitStatus = (status >> 8) & 0xff } else if sig != 0x7f { exitSignal = sig } else { return true }
        return false
    }

    public func kill(_ signal: Int32 = SIGKILL) {
        guard isRunning else { return }
        if ownsGroup { _ = Glibc.kill(-pid, signal) }
        _ = Glibc.kill(pid, signal)
    }

    /// Waits at most `timeout` seconds (then kills it) and collects the output.
    public func finish(timeout: Double = 240) -> CommandResult {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning && Date() < deadline { usleep(1000) }
        var killed = false
        if isRunning {
            kill(SIGKILL)
            killed = true
            while isRunning { usleep(1000) }
        }
        let seconds = Date().timeIntervalSince(started)
        let out = (try? Data(contentsOf: URL(fileURLWithPath: stdoutPath))).map { Array($0) } ?? []
        var err = (try? Data(contentsOf: URL(fileURLWithPath: stderrPath))).map { String(decoding: $0, as: UTF8.self) } ?? ""
        if killed { err += "\n[killed after \(timeout) s]" }
        for f in [stdoutPath, stderrPath] where !f.hasPrefix("/dev/") { unlink(f) }
        return CommandResult(args: args, status: exitSignal ?? exitStatus ?? -1, signaled: exitSignal != nil,
                             stdoutBytes: out, stderr: err, seconds: seconds)
    }
}

/// glibc ≥ 2.34's `posix_spawn_file_actions_addclosefrom_np`, which the Glibc
/// module does not export (its header guards it with `__USE_MISC`).
@_silgen_name("posix_spawn_file_actions_addclosefrom_np")
private func spawnActionsCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ from: Int32) -> Int32

/// Starts `executable args…` (an absolute path); stdin is `stdinPath` or
/// /dev/null, stdout and stderr go to the files given (or to temporary
/// files); `finish` reads and removes them. `label` names the command in
/// results (default: executable and args). `environment` is the whole environment
/// (nil: this process's, without ACCORD_REPOSITORY), plus ACCORD_ENCRYPTION=none
/// unless it names one. With `newProcessGroup`
/// the child leads a group of its own, with no signal blocked or ignored,
/// so a kill on timeout reaches the daemons a script starts.
public func startProcess(_ executable: String, _ args: [String], environment: [String: String]? = nil, cwd: String? = nil,
                         stdinPath: String? = nil, stdoutPath: String? = nil, stderrPath: String? = nil,
                         newProcessGroup: Bool = false, label: [String]? = nil) throws -> RunningCommand {
    let tmp = "/tmp/accord-test-io-" + String(UInt64.random(in: .min ... .max), radix: 16)
    let out = stdoutPath ?? tmp + ".out", err = stderrPath ?? tmp + ".err"
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, stdinPath ?? "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    // The child starts with stdio only, as from a shell or cron: what the test
    // process holds (the harness's sockets, pipes of earlier tests) is not
    // accord's, and under `prlimit --nofile` it would count against accord's
    // limit (a full run once failed the 128-descriptor walk test that way).
    _ = spawnActionsCloseFrom(&actions, 3)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    if newProcessGroup {
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attr, 0)
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none); sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
    }
    var argv = [executable] + args
    if let dir = cwd { argv = ["/usr/bin/env", "--chdir=" + dir] + argv }
    var env = environment ?? ProcessInfo.processInfo.environment
    if environment == nil { env.removeValue(forKey: "ACCORD_REPOSITORY") }
    // Repositories a test creates are plain unless it asks for encryption
    // (`AccordTestCase.useEncryption`, or ACCORD_ENCRYPTION in its environment or
    // the runner's): an AE5 flow would otherwise create /etc/accord/repository.key.
    if env[plainByDefault.key] == nil { env[plainByDefault.key] = plainByDefault.value }
    let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for p in cArgs + cEnv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, &attr, cArgs, cEnv)
    guard rc == 0 else { throw ProcessStartError(description: "cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
    return RunningCommand(args: label ?? [executable] + args, pid: pid, ownsGroup: newProcessGroup, stdoutPath: out, stderrPath: err)
}

/// What every process a test starts gets unless its environment says otherwise.
public let plainByDefault = (key: "ACCORD_ENCRYPTION", value: "none")

/// Runs `executable args…` to completion (killed after `timeout` s); `stdin` is written to a file first.
public func runProcess(_ executable: String, _ args: [String], environment: [String: String]? = nil, cwd: String? = nil,
                       stdin: String? = nil, timeout: Double = 180, newProcessGroup: Bool = false) throws -> CommandResult {
    var inputPath: String?
    if let s = stdin {
        let p = "/tmp/accord-test-in-" + String(UInt64.random(in: .min ... .max), radix: 16)
        guard FileManager.default.createFile(atPath: p, contents: Data(s.utf8)) else {
            throw ProcessStartError(description: "cannot write the standard input of \(executable) to \(p)")
        }
        inputPath = p
    }
    defer { if let p = inputPath { unlink(p) } }
    return try startProcess(executable, args, environment: environment, cwd: cwd, stdinPath: inputPath,
                            newProcessGroup: newProcessGroup).finish(timeout: timeout)
}

public enum AccordBinary {
    /// The package root, found from this file's path (Tests/AccordTestSupport/…).
    public static let packageRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// $ACCORD_BIN, else next to the test bundle, else `<package root>/.build/debug/accord`.
    public static let path: String = {
        if let b = ProcessInfo.processInfo.environment["ACCORD_BIN"], !b.isEmpty { return b }
        var candidates: [String] = []
        candidates.append(Bundle.main.bundleURL.appendingPathComponent("accord").path)
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("accord").path)
        if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent().appendingPathComponent("accord").path) }
        let fallback = packageRoot + "/.build/debug/accord"
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? fallback
    }()

    public static var isBuilt: Bool { FileManager.default.isExecutableFile(atPath: path) }

    /// The binary's path; fails the test (and skips the rest of it) when it is not built.
    public static func require(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        guard isBuilt else {
            XCTFail("accord binary not found at \(path): run `swift build --build-tests` or set ACCORD_BIN", file: file, line: line)
            throw XCTSkip("no accord binary")
        }
        return path
    }

    /// Starts `accord args` (without ACCORD_REPOSITORY, with `environment`
    /// added); stdout and stderr go to files in `outputDirectory`. With
    /// `asUser`, runs it through `setpriv` as that uid/gid; with
    /// `openFileLimit`, under `prlimit --nofile`.
    public static func start(_ args: [String], outputDirectory: String, environment: [String: String] = [:],
                             asUser: (uid: UInt32, gid: UInt32)? = nil, cwd: String? = nil,
                             openFileLimit: Int? = nil) throws -> RunningCommand {
        let bin = try require()
        let tag = String(UInt64.random(in: .min ... .max), radix: 16)
        let out = outputDirectory + "/.stdout-\(tag)", err = outputDirectory + "/.stderr-\(tag)"
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "ACCORD_REPOSITORY")
        for (k, v) in environment { env[k] = v }
        var exe = bin, argv = args
        if let n = openFileLimit {
            (exe, argv) = ("/usr/bin/prlimit", ["--nofile=\(n):\(n)", "--", bin] + args)
        } else if let u = asUser {
            (exe, argv) = ("/usr/bin/setpriv", ["--reuid=\(u.uid)", "--regid=\(u.gid)", "--clear-groups", "--", bin] + args)
        }
        return try startProcess(exe, argv, environment: env, cwd: cwd, stdoutPath: out, stderrPath: err, label: ["accord"] + args)
    }

    /// Runs `accord args` to completion.
    @discardableResult
    public static func run(_ args: [String], outputDirectory: String, environment: [String: String] = [:],
                           asUser: (uid: UInt32, gid: UInt32)? = nil, cwd: String? = nil, openFileLimit: Int? = nil,
                           timeout: Double = 240) throws -> CommandResult {
        try start(args, outputDirectory: outputDirectory, environment: environment, asUser: asUser, cwd: cwd,
                  openFileLimit: openFileLimit).finish(timeout: timeout)
    }
}
