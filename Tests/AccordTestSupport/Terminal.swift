// The built `accord` run on a pseudo-terminal of its own, as a user at a
// terminal runs it: the passphrase prompt (echo off, /dev/tty) is tested this
// way, answering each prompt when it appears, never on a timer.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// What a terminal session printed (everything the terminal showed: echo included) and how it ended.
public struct TerminalResult: CustomStringConvertible {
    public var output: String
    public var status: Int32
    public var signaled: Bool
    public var ok: Bool { !signaled && status == 0 }
    public var description: String { "\(signaled ? "killed by signal" : "exit status") \(status)\n--- terminal ---\n\(output.suffix(6000))" }
}

// glibc's pseudo-terminal calls, which the Glibc module does not export (`__USE_XOPEN_EXTENDED`).
@_silgen_name("grantpt") private func grantpt(_ fd: Int32) -> Int32
@_silgen_name("unlockpt") private func unlockpt(_ fd: Int32) -> Int32
@_silgen_name("ptsname") private func ptsname(_ fd: Int32) -> UnsafeMutablePointer<CChar>?

/// glibc's POSIX_SPAWN_SETSID (the Glibc module does not export it: `__USE_GNU`).
private let spawnSetSID: Int32 = 0x80

/// Runs `accord args` in a new session whose controlling terminal (and
/// stdin, stdout, stderr) is a new pseudo-terminal. Each answer is typed (with
/// a newline) once the terminal shows its prompt since the previous answer;
/// killed after `timeout` seconds.
public func runOnTerminal(_ args: [String], environment: [String: String] = [:], answers: [(prompt: String, reply: String)],
                          timeout: Double = 120) throws -> TerminalResult {
    let bin = try AccordBinary.require()
    let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
    guard master >= 0, grantpt(master) == 0, unlockpt(master) == 0, let name = ptsname(master) else {
        throw ProcessStartError(description: "no pseudo-terminal: \(String(cString: strerror(errno)))")
    }
    defer { close(master) }
    let slave = String(cString: name)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    // Opened after setsid and without O_NOCTTY: it becomes the controlling terminal.
    posix_spawn_file_actions_addopen(&actions, 0, slave, O_RDWR, 0)
    posix_spawn_file_actions_adddup2(&actions, 0, 1)
    posix_spawn_file_actions_adddup2(&actions, 0, 2)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    posix_spawnattr_setflags(&attr, Int16(spawnSetSID))
    var env = ProcessInfo.processInfo.environment
    env.removeValue(forKey: "ACCORD_REPOSITORY")
    if env[plainByDefault.key] == nil { env[plainByDefault.key] = plainByDefault.value }
    for (k, v) in environment { env[k] = v }
    let argv = [bin] + args
    let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for p in cArgs + cEnv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, bin, &actions, &attr, cArgs, cEnv)
    guard rc == 0 else { throw ProcessStartError(description: "cannot run \(bin): \(String(cString: strerror(rc)))") }

    var output: [UInt8] = [], answered = 0, answeredAt = 0
    let deadline = Date().addingTimeInterval(timeout)
    var buffer = [UInt8](repeating: 0, count: 4096)
    while Date() < deadline {
        var fds = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
        if poll(&fds, 1, 100) > 0 {
            let n = read(master, &buffer, buffer.count)
            if n <= 0 { break }   // EIO: every holder of the terminal has closed it (accord ended)
            output += buffer[0..<n]
        }
        if answered < answers.count,
           String(decoding: output[answeredAt...], as: UTF8.self).contains(answers[answered].prompt) {
            let line = Array((answers[answered].reply + "\n").utf8)
            _ = line.withUnsafeBytes { write(master, $0.baseAddress!, $0.count) }
            answered += 1
            answeredAt = output.count
        }
    }
    var status: Int32 = 0
    if Date() >= deadline { kill(pid, SIGKILL) }
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let sig = status & 0x7f
    return TerminalResult(output: String(decoding: output, as: UTF8.self), status: sig == 0 ? (status >> 8) & 0xff : sig, signaled: sig != 0)
}
