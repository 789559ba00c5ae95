import Foundation
import AccordCore
import AccordRuntime

/// Where a sync goes: `USER@NODE[:DIR]`, `NODE[:DIR]`, or a local `DIR`.
public struct Destination: Equatable, CustomStringConvertible {
    public var user: String?
    public var host: String?
    public var directory: String

    public init(user: String?, host: String?, directory: String) {
        self.user = user; self.host = host; self.directory = directory
    }

    /// Parses `--to`. A value starting with "/" or "." is a local directory.
    public static func parse(_ s: String, defaultDirectory: String) throws -> Destination {
        if s.isEmpty { throw SyncError.badDestination(s) }
        if s.hasPrefix("/") || s.hasPrefix(".") { return Destination(user: nil, host: nil, directory: s) }
        var rest = Substring(s)
        var user: String?
        if let at = rest.firstIndex(of: "@") {
            let u = String(rest[..<at])
            rest = rest[rest.index(after: at)...]
            // ssh would read a user or host starting with "-" as an option.
            guard !u.isEmpty, !u.hasPrefix("-"), u.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }) else {
                throw SyncError.badDestination(s)
            }
            user = u
        }
        var dir = defaultDirectory
        if let colon = rest.firstIndex(of: ":") {
            dir = String(rest[rest.index(after: colon)...])
            rest = rest[..<colon]
            if dir.isEmpty { dir = defaultDirectory }
        }
        let host = String(rest)
        guard !host.isEmpty, !host.hasPrefix("-"), host.allSatisfy({ $0.isLetter || $0.isNumber || "-._".contains($0) }) else { throw SyncError.badDestination(s) }
        return Destination(user: user, host: host, directory: dir)
    }

    public var isLocal: Bool { host == nil }
    public var description: String {
        guard let h = host else { return directory }
        return (user.map { "\($0)@" } ?? "") + h + ":" + directory
    }
}

/// A running `accord serve` on the other end: over ssh, or a local child process.
public final class SyncTransport {
    public let destination: Destination
    let runner: CommandRunner
    public let connection: FrameConnection

    /// Starts the server process. `remoteCommand` replaces `sudo -n accord`.
    public init(destination: Destination, sshOptions: [String] = [], remoteCommand: String? = nil, connectTimeout: Int = 10) throws {
        self.destination = destination
        var argv: [String]
        if destination.isLocal {
            argv = Self.localServeArgv(destination.directory)
        } else {
            let target = (destination.user.map { "\($0)@" } ?? "") + destination.host!
            let remote = (remoteCommand ?? "sudo -n accord") + " serve --repo " + shellQuote(destination.directory)
            // ssh keeps the first value given for an option: the user's come before our defaults.
            argv = ["ssh", "-o", "BatchMode=yes"]
            for o in sshOptions { argv += o.hasPrefix("-") ? o.split(separator: " ").map(String.init) : ["-o", o] }
            argv += ["-o", "ConnectTimeout=\(connectTimeout)", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
            argv += ["--", target, remote]
        }
        runner = CommandRunner(argv: argv)
        let stdout: Int32
        do { stdout = try runner.start(stdin: true) } catch CommandError.cannotStart(_, let reason) {
            throw SyncError.connect("cannot start `\(argv[0])`: \(reason)")
        }
        connection = FrameConnection(input: stdout, output: runner.stdinDescriptor,
                                     peer: destination.isLocal ? "accord serve" : "ssh \(destination.host!)")
    }

    /// Where the passphrase of `accord sync`'s own repository may come from in its
    /// environment: never passed on to serve (ssh passes no environment unless
    /// told to, and sudo resets it; a local child would inherit it).
    public static let passphraseVariables = ["ACCORD_PASSWORD_FILE", "ACCORD_PASSWORD_COMMAND"]

    /// `--to DIR`: this accord's `serve`, run through `env -u` so that it starts
    /// without the passphrase variables: serve never needs or sees a passphrase.
    public static func localServeArgv(_ directory: String) -> [String] {
        ["/usr/bin/env"] + passphraseVariables.flatMap { ["-u", $0] } + [selfExecutable, "serve", "--repo", directory]
    }

    static var selfExecutable: String {
        (try? Sys.readlink(Array("/proc/self/exe".utf8)))?.displayPath ?? CommandLine.arguments[0]
    }

    /// Turns a failure during the session into one clear message, using the
    /// ssh/sudo stderr and exit status when the process died.
    public func explain(_ error: Error) -> Error {
        if case ProtocolError.remote = error { return error }
        let status = runner.waitBriefly()
        let tail = runner.stderrTail
        let host = destination.host ?? "localhost"
        let user = destination.user ?? "the ssh user"
        let lower = tail.lowercased()
        func e(_ m: String) -> Error { SyncError.connect(m) }
        if lower.contains("connection refused") { return e("cannot connect to \(host): connection refused (is sshd running there, on that port?) [ssh: \(tail)]") }
        if lower.contains("timed out") || lower.contains("no route to host") { return e("cannot reach \(host): connection timed out [ssh: \(tail)]") }
        if lower.contains("could not resolve") { return e("cannot resolve host name \(host) [ssh: \(tail)]") }
        if lower.contains("host key verification failed") || lower.contains("remote host identification has changed") {
            return e("the host key of \(host) is unknown or has changed: verify it and add it to known_hosts [ssh: \(tail)]")
        }
        if lower.contains("permission denied") && !lower.contains("sudo") {
            return e("\(user)@\(host) did not accept the ssh key (permission denied): install the key there or pass --ssh-option IdentityFile=... [ssh: \(tail)]")
        }
        if lower.contains("password is required") || lower.contains("terminal is required") || lower.contains("not in the sudoers") || lower.contains("may not run sudo") || lower.contains("not allowed to execute") {
            return e("\(user) on \(host) cannot run sudo without a password: add a NOPASSWD sudoers rule for accord [sudo: \(tail)]")
        }
        if lower.contains("can't open user config file") || lower.contains("no such identity") || lower.contains("bad configuration option") {
            return e("ssh could not use its options: \(tail); check --ssh-option")
        }
        if let s = status, s.code == 127 || lower.contains("command not found") || lower.contains("accord: no such file") {
            return e("accord is not installed on \(host) (or not on sudo's PATH): install it or pass --remote-command [\(tail)]")
        }
        if let s = status, !tail.isEmpty { return e("the sync session with \(destination) ended (\(s)): \(tail)") }
        return error
    }

    /// Ends the session: closes the pipe and waits for the process.
    public func close() -> ExitStatus {
        runner.closeStdin()
        return runner.wait()
    }

    public func kill() { runner.kill() }
}
