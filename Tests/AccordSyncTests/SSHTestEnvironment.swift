// A real sshd on loopback for the sync tests (scripts/testenv/sshd-start.sh),
// started once per test class and stopped after it.
import Foundation
import XCTest
import AccordCore
import AccordRuntime

struct SSHEnvironment {
    var directory: String
    var port: String
    var key: String
    var config: String
    var knownHosts: String
    var user: String
    var noSudoUser: String
    /// The least-privilege user (forced command `serve --repo pinnedRepo`), when the binary directory was given.
    var pinnedUser: String?
    var pinnedRepo: String?

    static let scripts = AccordBinary.packageRoot + "/scripts/testenv"

    /// Runs `sshd-start.sh DIR` with ACCORD_BIN_DIR set to the binary's directory, so `sudo -n accord` finds it.
    static func start() throws -> SSHEnvironment {
        guard getuid() == 0 else { throw SSHStartError(message: "sshd-start.sh must run as root (uid \(getuid()))") }
        let dir = "/tmp/accord-synctest-sshd-" + hexString(Sys.randomBytes(5))
        let binDir = URL(fileURLWithPath: AccordBinary.path).resolvingSymlinksInPath().deletingLastPathComponent().path
        let (status, output) = runScript(scripts + "/sshd-start.sh", dir, environment: ["ACCORD_BIN_DIR": binDir])
        guard status == 0 else {
            _ = runScript(scripts + "/sshd-stop.sh", dir)
            try? FileManager.default.removeItem(atPath: dir)
            throw SSHStartError(message: "sshd-start.sh exited with \(status): \(output.suffix(1500))")
        }
        let text = (try? String(contentsOfFile: dir + "/env", encoding: .utf8)) ?? ""
        let env = parseEnvLines(text)
        guard let port = env["SSH_PORT"], let key = env["SSH_KEY"], let config = env["SSH_CONFIG"], let known = env["SSH_KNOWN_HOSTS"] else {
            throw SSHStartError(message: "\(dir)/env lacks SSH_PORT/SSH_KEY/SSH_CONFIG/SSH_KNOWN_HOSTS:\n\(text)")
        }
        return SSHEnvironment(directory: dir, port: port, key: key, config: config, knownHosts: known,
                              user: env["SSH_USER"] ?? "accordsync", noSudoUser: env["SSH_NOSUDO_USER"] ?? "accordnosudo",
                              pinnedUser: env["SSH_PINNED_USER"], pinnedRepo: env["SSH_PINNED_REPO"])
    }

    /// `ssh USER@host sudo -n true` succeeds within 10 s.
    func sudoWorks() -> Bool {
        let r = try? runProcess("/usr/bin/ssh", ["-F", config, "\(user)@127.0.0.1", "sudo", "-n", "true"], timeout: 10)
        return r?.ok ?? false
    }

    func stop() {
        _ = Self.runScript(Self.scripts + "/sshd-stop.sh", directory)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// `--ssh-option=-F CONFIG`: port, key and pinned host key from the test config.
    /// (The `=` form: see `testSSHOptionStartingWithDashIsAcceptedAsSeparateValue`.)
    var configOption: String { "--ssh-option=-F \(config)" }

    @discardableResult
    static func runScript(_ script: String, _ arg: String, environment: [String: String] = [:]) -> (Int32, String) {
        // AccordTestSupport's runner: the script leaves sshd running, which Foundation's `Process` may wait on forever.
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        do {
            let r = try runProcess("/bin/bash", [script, arg], environment: env, timeout: 600)
            return (r.signaled ? -1 : r.status, r.output)
        } catch { return (-1, "cannot run \(script): \(error)") }
    }
}

struct SSHStartError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A test case with a real sshd for the whole class. Tests are skipped (with
/// the reason) only when sshd cannot start at all.
class SSHSyncTestCase: SyncTestCase {
    // nonisolated(unsafe): XCTest runs each class's setUp, tests and tearDown one after
    // another on one thread, so this is never touched by two threads at once.
    nonisolated(unsafe) static var environments: [ObjectIdentifier: Result<SSHEnvironment, Error>] = [:]

    override class func setUp() {
        super.setUp()
        environments[ObjectIdentifier(self)] = Result { try SSHEnvironment.start() }
    }

    override class func tearDown() {
        if case .success(let env)? = environments.removeValue(forKey: ObjectIdentifier(self)) { env.stop() }
        super.tearDown()
    }

    var ssh: SSHEnvironment!

    override func setUpWithError() throws {
        try super.setUpWithError()
        switch Self.environments[ObjectIdentifier(type(of: self))] {
        case .success(let env)?:
            ssh = env
            // /etc/sudoers.d/accord-testenv is global: another sshd-stop.sh on this
            // machine may have removed it since the class started. Start afresh then.
            if !env.sudoWorks() {
                env.stop()
                do {
                    ssh = try SSHEnvironment.start()
                    Self.environments[ObjectIdentifier(type(of: self))] = .success(ssh)
                } catch {
                    Self.environments[ObjectIdentifier(type(of: self))] = .failure(error)
                    throw XCTSkip("sshd could not restart, so the ssh sync tests cannot run: \(error)")
                }
            }
        case .failure(let error)?: throw XCTSkip("sshd could not start, so the ssh sync tests cannot run: \(error)")
        case nil: throw XCTSkip("sshd was not started for \(type(of: self))")
        }
    }

    /// `USER@127.0.0.1:DIR`.
    func remote(_ dir: String, user: String? = nil) -> String { "\(user ?? ssh.user)@127.0.0.1:\(dir)" }

    /// `accord sync -d sourceRepo --to USER@127.0.0.1:DEST -F config …`.
    func syncArgs(to dest: String, user: String? = nil, json: Bool = true, extra: [String] = []) -> [String] {
        ["sync", "-d", sourceRepo, "--to", remote(dest, user: user), ssh.configOption] + (json ? ["--json"] : []) + extra
    }

    /// A script on the "remote" side, for `--remote-command`; readable by the ssh users.
    func remoteScript(_ name: String, _ body: String) throws -> String {
        let path = scratch.sub(name)
        try writeFile(path, Array(("#!/bin/sh\n" + body + "\n").utf8), mode: 0o755)
        return path
    }
}
