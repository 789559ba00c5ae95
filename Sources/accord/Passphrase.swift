// Where the passphrase of an encrypted repository comes from (issue 15), and
// the key file the AE5 flows create on first use. A passphrase never comes
// from argv (any user can read /proc/<pid>/cmdline) and is never printed.
import ArgumentParser
import Foundation
import AccordCore
import AccordPlans
import AccordRuntime

/// The passphrase sources, first match wins:
///   1. `--password-file FILE`
///   2. `$ACCORD_PASSWORD_FILE`
///   3. `$ACCORD_PASSWORD_COMMAND` (run with /bin/sh -c; its stdout is the passphrase)
///   4. `repository: password-file:` in the settings file (/etc/accord/accord.yaml)
///   5. AE5 flows only (`-a backup|restore`, `backup|restore --plan`): /etc/accord/repository.key
///   6. a prompt on /dev/tty, echo off, when standard input is a terminal.
/// All but the prompt are `explicit`: a client with a key configured refuses a
/// plain repository (the core checks), so a repository swapped for a plain one
/// cannot collect new backups unencrypted.
enum Passphrase {
    static let maxFileSize = 64 << 10
    static let defaultKeyFile = "/etc/accord/repository.key"
    static let fileVariable = "ACCORD_PASSWORD_FILE"
    static let commandVariable = "ACCORD_PASSWORD_COMMAND"
    static let encryptionVariable = "ACCORD_ENCRYPTION"
    static let encryptions = Settings.encryptionNames

    /// One source, resolved (nothing read yet: the core asks only when the repository is encrypted).
    enum Origin: Equatable {
        case option(String), environmentFile(String), command(String), settings(file: String, settings: String)
        case defaultFile(String), prompt
        var description: String {
            switch self {
            case .option(let f): return "--password-file \(f)"
            case .environmentFile(let f): return "$\(fileVariable) (\(f))"
            case .command: return "$\(commandVariable)"
            case .settings(let f, let s): return "repository.password-file \(f) in \(s)"
            case .defaultFile(let f): return "the default key file \(f)"
            case .prompt: return "a prompt on the terminal"
            }
        }
    }

    /// The first configured source. The node's default key file counts for
    /// every command when it exists (a DR node keeps the production key there,
    /// so `check`, `restore`, `ls` open with it from cron too), and for the AE5
    /// flows even when missing: an AE5 backup that creates the repository
    /// creates it (`RepositoryOptions.open` treats a missing one as no source).
    static func origin(option: String?, ae5: Bool, settings: () throws -> Settings) throws -> Origin {
        if let f = option { return .option(try checkedPath(f, "--password-file")) }
        if let f = Sys.environment(fileVariable), !f.isEmpty { return .environmentFile(f) }
        if let c = Sys.environment(commandVariable), !c.isEmpty { return .command(c) }
        let s = try settings()
        if let f = s.repository.passwordFile { return .settings(file: f, settings: s.path ?? Settings.path) }
        if ae5 || pathExists(defaultKeyFile) { return .defaultFile(defaultKeyFile) }
        return .prompt
    }

    /// The settings file; one this user may not read (root's, 0600) is skipped
    /// unless running as root: a password file it named would be root's too.
    static func settings() throws -> Settings {
        if !Sys.isRoot, pathExists(Settings.path), access(Settings.path, R_OK) != 0 { return Settings() }
        return try Settings.load()
    }

    static func checkedPath(_ f: String, _ what: String) throws -> String {
        guard !f.isEmpty, !f.contains("\0") else { throw ValidationError("\(what) needs a file name") }
        return f
    }

    /// The key source for the core. `confirm`: a new passphrase, typed twice at a prompt.
    /// `repository` only names the repository in the message of a missing source.
    static func source(_ origin: Origin, repository: String, confirm: Bool = false) -> KeySource {
        let fetch: @Sendable () throws -> [UInt8]
        switch origin {
        case .option(let f), .environmentFile(let f):
            let what = origin.description
            fetch = { try readFile(f, what: what) }
        case .settings(let f, _), .defaultFile(let f):
            // The node's key file is missing where it was never copied to: the DR node.
            let what = origin.description
            fetch = {
                do { return try readFile(f, what: what) } catch let e as PassphraseError where !pathExists(f) {
                    throw PassphraseError.noSource("\(e): copy it from the node where the first backup created it, "
                                                   + "or give the repository a passphrase from its paper key (`accord key import`)")
                }
            }
        case .command(let c):
            fetch = { try runCommand(c) }
        case .prompt:
            fetch = {
                try prompt(confirm ? "New passphrase for \(repository): " : "Passphrase for \(repository): ", confirm: confirm,
                           otherwise: missingSourceMessage(repository))
            }
        }
        return KeySource(description: origin.description, explicit: origin != .prompt, passphrase: fetch)
    }

    static func missingSourceMessage(_ repository: String) -> String {
        "no passphrase for the repository \(repository), and standard input is not a terminal to ask on: "
            + "give --password-file FILE, or set $\(fileVariable) or $\(commandVariable), or `repository: password-file: FILE` in "
            + "\(Settings.path), or put the key in \(defaultKeyFile) (`accord check --without-key` checks without it)"
    }

    // MARK: Reading a source

    /// A password file: a regular file of at most 64 KiB, one trailing "\n" (or
    /// "\r\n") stripped, not empty. As root it must be root's and 0600 or
    /// stricter: it unlocks everything, and whoever can write it chooses the key of
    /// a repository created with it.
    static func readFile(_ path: String, what: String) throws -> [UInt8] {
        let fd: Int32
        // O_NONBLOCK: a FIFO named by mistake must not hang the open (it is refused below).
        do { fd = try Sys.open(path, Sys.O_RDONLY | O_CLOEXEC | O_NONBLOCK) } catch {
            throw PassphraseError.unusable(what, "cannot open it (\(error))")
        }
        defer { Sys.close(fd) }
        let st = try Sys.fstat(fd, path: path)
        guard st.isRegular else { throw PassphraseError.unusable(what, "it is not a regular file") }
        guard st.size <= UInt64(maxFileSize) else { throw PassphraseError.unusable(what, "it is \(st.size) bytes; a password file holds at most \(maxFileSize)") }
        if Sys.isRoot {
            guard st.uid == 0 else { throw PassphraseError.unusable(what, "it is owned by uid \(st.uid), not root (chown root \(path))") }
            guard st.permissions & 0o077 == 0 else {
                throw PassphraseError.unusable(what, "group or others may use it (mode \(String(st.permissions, radix: 8))): chmod 600 \(path)")
            }
        }
        var bytes = [UInt8](repeating: 0, count: maxFileSize + 1)
        var n = 0
        while n < bytes.count {
            let got = try bytes.withUnsafeMutableBytes { try Sys.read(fd, $0.baseAddress! + n, $0.count - n, path: path) }
            if got == 0 { break }
            n += got
        }
        guard n <= maxFileSize else { throw PassphraseError.unusable(what, "it grew past \(maxFileSize) bytes while read") }
        let passphrase = stripNewline(Array(bytes[0..<n]))
        bytes.withUnsafeMutableBytes { _ = memset($0.baseAddress!, 0, $0.count) }
        guard !passphrase.isEmpty else { throw PassphraseError.unusable(what, "it is empty: write the passphrase on its first line") }
        return passphrase
    }

    /// One trailing "\n" or "\r\n" off (an editor's or `echo`'s), no more: the rest is the passphrase.
    static func stripNewline(_ b: [UInt8]) -> [UInt8] {
        if b.last == 0x0a { return Array(b.dropLast(b.dropLast().last == 0x0d ? 2 : 1)) }
        return b
    }

    /// `$ACCORD_PASSWORD_COMMAND`'s stdout. A failure names the variable and the
    /// exit status (and the command's stderr), never what it printed on stdout.
    static func runCommand(_ command: String) throws -> [UInt8] {
        let runner = CommandRunner(command: command)
        runner.keepsCloudCredentials = true   // e.g. a secret store read with the AWS CLI
        let fd: Int32
        do { fd = try runner.start() } catch { throw PassphraseError.command("cannot be started (\(error))") }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var tooLong = false
        while true {
            let n = (try? buffer.withUnsafeMutableBytes { try Sys.read(fd, $0.baseAddress!, $0.count) }) ?? 0
            if n <= 0 { break }
            if out.count + n > maxFileSize { tooLong = true; continue }   // drain, so the command is not stuck on a full pipe
            out += buffer[0..<n]
        }
        let status = runner.wait()
        let stderr = runner.stderrTail
        guard status.succeeded else { throw PassphraseError.command("failed (\(status))" + (stderr.isEmpty ? "" : "; its stderr: \(stderr)")) }
        guard !tooLong else { throw PassphraseError.command("printed more than \(maxFileSize) bytes; a passphrase is one line") }
        let passphrase = stripNewline(out)
        guard !passphrase.isEmpty else { throw PassphraseError.command("printed nothing on its standard output") }
        return passphrase
    }

    // MARK: The terminal

    /// Asks on /dev/tty with echo off (twice when `confirm`); only when standard
    /// input is a terminal, else throws `otherwise`.
    static func prompt(_ question: String, confirm: Bool, otherwise: String) throws -> [UInt8] {
        guard Sys.isTerminal(0) else { throw PassphraseError.noSource(otherwise) }
        let tty = open("/dev/tty", O_RDWR | O_CLOEXEC)
        guard tty >= 0 else { throw PassphraseError.noSource(otherwise) }
        defer { close(tty) }
        let first = try readHidden(tty, question)
        guard !first.isEmpty else { throw PassphraseError.empty }
        if confirm {
            let again = try readHidden(tty, "Again, to confirm: ")
            guard again == first else { throw PassphraseError.mismatch }
        }
        return first
    }

    /// One line from the terminal with echo off; echo comes back even if the read fails.
    static func readHidden(_ tty: Int32, _ question: String) throws -> [UInt8] {
        var saved = termios()
        guard tcgetattr(tty, &saved) == 0 else { throw SystemError(errno: errno, operation: "tcgetattr", path: "/dev/tty") }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        // Ctrl-C at the prompt must not leave the terminal without echo.
        promptTerminal = (tty, saved)
        let signals = [SIGINT, SIGTERM, SIGHUP]
        let previous = signals.map { signal($0, restoreTerminalAndDie) }
        _ = tcsetattr(tty, TCSAFLUSH, &quiet)
        defer {
            _ = tcsetattr(tty, TCSAFLUSH, &saved)
            _ = write(tty, "\n", 1)
            for (sig, handler) in zip(signals, previous) { signal(sig, handler) }
            promptTerminal = nil
        }
        _ = question.withCString { write(tty, $0, strlen($0)) }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n = read(tty, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 || byte == 0x0a { break }
            guard line.count < maxFileSize else { throw PassphraseError.unusable("the passphrase typed", "it is longer than \(maxFileSize) bytes") }
            line.append(byte)
        }
        if line.last == 0x0d { line.removeLast() }
        return line
    }

    // MARK: The AE5 default key file

    /// Creates `path` (0600; its directory 0700 when created) holding a random
    /// passphrase (32 random bytes as hex), and says loudly on stderr where it is
    /// and that a copy must leave this node: without it the backups are unreadable.
    static func createKeyFile(_ path: String, repository: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty, (try? Sys.stat(Array(dir.utf8))) == nil {
            do { try Sys.mkdirs(Array(dir.utf8), mode: 0o700) } catch { throw cannotCreate(path, error) }
        }
        // Written whole under a temporary name, then linked into place (never
        // over an existing file): a crash leaves no half-written key file.
        let tmp = path + ".tmp-" + hexString(Sys.randomBytes(6))
        do {
            let fd = try Sys.open(tmp, Sys.O_WRONLY | Sys.O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o600)
            defer { Sys.close(fd) }
            try Sys.fchmod(fd, mode: 0o600, path: tmp)
            try Sys.writeAll(fd, Array(hexString(Sys.randomBytes(32)).utf8) + [0x0a], path: tmp)
            try Sys.fsync(fd, path: tmp)
        } catch {
            try? Sys.unlink(tmp)
            throw cannotCreate(path, error)
        }
        defer { try? Sys.unlink(tmp) }
        do { try Sys.link(existing: Array(tmp.utf8), new: Array(path.utf8)) } catch let e as SystemError where e.errno == EEXIST {
            return   // a concurrent first backup made it a moment ago: its secret is the one
        } catch { throw cannotCreate(path, error) }
        try? Sys.fsyncDirectory(dir.isEmpty ? "." : dir)
        Sys.writeStderr("""

        ************************************************************************
        accord: created the key file \(path) (mode 0600): the passphrase of
        the encrypted repository \(repository).
        WITHOUT THIS FILE THE BACKUPS CANNOT BE READ. Keep a copy OFF this node
        now, and put one on the DR node (same path) before you need to restore
        there. `accord key export -d \(repository)` prints a paper backup.
        ************************************************************************


        """)
    }
}

/// The terminal to put back if a signal ends accord at the prompt.
/// nonisolated(unsafe): only the main thread's `readHidden` writes it, before it
/// installs `restoreTerminalAndDie` and after it removes it; the handler only reads it.
nonisolated(unsafe) private var promptTerminal: (fd: Int32, state: termios)?

/// Restores the terminal (echo back on), then dies of `sig` as without the handler.
private func restoreTerminalAndDie(_ sig: Int32) {
    if var t = promptTerminal {
        _ = tcsetattr(t.fd, TCSANOW, &t.state)
        _ = write(t.fd, "\n", 1)
    }
    signal(sig, SIG_DFL)
    raise(sig)
}

/// Why the AE5 key file could not be made, and how to make it (a service with
/// a read-only /etc, say).
private func cannotCreate(_ path: String, _ error: Error) -> PassphraseError {
    .noSource("cannot create the key file \(path) (\(error)): run the first backup where \((path as NSString).deletingLastPathComponent) "
              + "is writable, or create it yourself, mode 0600, holding a random secret: (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > \(path))")
}

enum PassphraseError: Error, CustomStringConvertible {
    case unusable(String, String)
    case command(String)
    /// No passphrase can be had; the message says what to set or do.
    case noSource(String)
    case empty, mismatch

    var description: String {
        switch self {
        case .unusable(let what, let why): return "cannot use \(what) as the passphrase: \(why)"
        case .command(let why): return "$\(Passphrase.commandVariable) \(why)"
        case .noSource(let m): return m
        case .empty: return "the passphrase typed is empty"
        case .mismatch: return "the two passphrases typed differ; nothing was changed"
        }
    }
}
