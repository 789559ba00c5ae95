// `accord key …`: the key files of an encrypted repository (issue 15). Each
// key file wraps the one master key under a passphrase; these commands add,
// remove and list them, and print the master key's paper backup.
import ArgumentParser
import Foundation
import AccordCore
import AccordRuntime

struct Key: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the passphrases (key files) of an encrypted repository.",
        discussion: """
        Every key file under keys/ wraps the repository's master key under one passphrase; any of \
        them opens the repository. The passphrase that opens it comes from, first match wins: \
        --password-file FILE, $ACCORD_PASSWORD_FILE, $ACCORD_PASSWORD_COMMAND (run with /bin/sh -c, \
        its stdout is the passphrase), `repository: password-file: FILE` in /etc/accord/accord.yaml, \
        for the AE5 flows (-a backup|restore, --plan) /etc/accord/repository.key, and last a prompt \
        when standard input is a terminal. Never on the command line. A password file holds one \
        line (a trailing newline is not part of the passphrase), at most 64 KiB; when accord runs as \
        root it must be owned by root and mode 0600 (no group or other permissions), else it is refused.

        A copy made by `accord sync` carries keys/ too; `key remove` changes only the repository \
        it runs on, so run it on each copy (serve never deletes).
        """,
        subcommands: [List.self, Add.self, Remove.self, Passwd.self, Export.self, Import.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the key files; * marks the one that opened the repository.")
        @OptionGroup var repo: RepositoryOptions
        @Flag(help: "Print JSON lines instead of a table.") var json = false

        func run() throws {
            let repository = try openEncrypted(repo)
            let keys = try repository.keyFiles { name, error in warn("key file \(name) is unusable: \(error)") }
            let used = repository.usedKey
            if !json { print("  ID       CREATED              HOST             USER       KDF") }
            for (id, f) in keys {
                if json {
                    let o: [String: Any] = ["id": id.hex, "inUse": id == used, "created": f.created, "host": f.host, "username": f.username,
                                            "kdf": ["algorithm": f.kdf.algorithm, "N": f.kdf.N, "r": f.kdf.r, "p": f.kdf.p]]
                    if let d = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) { print(String(decoding: d, as: UTF8.self)) }
                    continue
                }
                let cols = [id == used ? "*" : " ", id.short, pad(f.created.prefix(19).replacingOccurrences(of: "T", with: " "), 20), pad(f.host, 16), pad(f.username, 10),
                            f.kdf.algorithm == "scrypt" ? "scrypt N=\(f.kdf.N) r=\(f.kdf.r) p=\(f.kdf.p)" : f.kdf.algorithm]
                print(escapedText(cols.joined(separator: " ")))
            }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a key file for a new passphrase (the repository opened with a current one).")
        @OptionGroup var repo: RepositoryOptions
        @OptionGroup var new: NewPassphraseOptions

        func run() throws {
            let repository = try openEncrypted(repo)
            let passphrase = try new.read(repository: repo.path)
            let id = try withLock(repository, command: "key add") { try repository.addKey(passphrase: passphrase) }
            print("added key \(id.short)")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a key file (never the last one, nor the one that opened the repository).",
            discussion: "Open the repository with another passphrase to remove the one you used. On a synced copy run it there too.")
        @OptionGroup var repo: RepositoryOptions
        @Argument(help: ArgumentHelp("The key file's id or a unique prefix of it (see `accord key list`).", valueName: "ID"))
        var id: String

        func run() throws {
            let repository = try openEncrypted(repo)
            let target = try repository.resolveKey(id)
            if target == repository.usedKey {
                throw CommandFailure("key \(target.short) is the one that opened \(repo.path): open it with another passphrase to remove this one (or use `accord key passwd` to change it)")
            }
            try withLock(repository, exclusive: true, command: "key remove") { try repository.removeKey(target) }
            print("removed key \(target.short)")
        }
    }

    struct Passwd: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change the passphrase that opened the repository: add a key file for the new one, then remove the old one.")
        @OptionGroup var repo: RepositoryOptions
        @OptionGroup var new: NewPassphraseOptions

        func run() throws {
            let repository = try openEncrypted(repo)
            guard let old = repository.usedKey else { throw CommandFailure("\(repo.path): no key file opened it") }
            let passphrase = try new.read(repository: repo.path)
            let id = try withLock(repository, exclusive: true, command: "key passwd") { () -> KeyID in
                let id = try repository.addKey(passphrase: passphrase)
                try repository.removeKey(old)
                return id
            }
            print("changed the passphrase: added key \(id.short), removed key \(old.short)")
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a paper backup of the master key.",
            discussion: """
            With it and any repository copy the data can be read, with no key file and no passphrase: \
            print it, keep it locked away, and never store it beside the repository. Each line of the \
            key carries a checksum of its own (the first 2 bytes of SHA-256 over the repository id, the \
            line number and the line's bytes), so a mistyped line is found when it is typed back.
            """)
        @OptionGroup var repo: RepositoryOptions

        func run() throws {
            let repository = try openEncrypted(repo)
            let master = try repository.exportMasterKey()
            print(PaperKey.render(repositoryID: repository.config.id, masterKey: master), terminator: "")
        }
    }
}

extension Key {
    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a key file from a paper backup (`accord key export`), for when no passphrase opens the repository any more.",
            discussion: "Type the paper backup back into a file (the header line may be left out). Each line's checksum finds a mistyped line; the key must then match the config's MAC.")
        @OptionGroup var repo: RepositoryOptions
        @Option(help: ArgumentHelp("The paper backup typed back in (- for standard input).", valueName: "FILE"))
        var paperFile: String
        @OptionGroup var new: NewPassphraseOptions

        func run() throws {
            Sys.umask(0o077)
            let repository = try repo.openRepository(key: nil, withoutKey: true)
            let config = repository.config
            guard config.isEncrypted, let mac = config.mac, let rid = ID(hex: config.id) else {
                throw CommandFailure("\(repo.path) is a plain repository (format version \(config.version)): it has no keys")
            }
            let master = try PaperKey.parse(try readPaper(), repositoryID: config.id)
            let crypto = RepositoryCrypto(master: master, repositoryID: rid.bytes)
            guard Crypto.constantTimeEqual(Array(mac.utf8), Array(crypto.configMAC(config).utf8)) else {
                throw CommandFailure("the key in \(paperFile) is not the key of \(repo.path): its config's MAC does not match under it")
            }
            let passphrase = try new.read(repository: repo.path)
            let bytes = try KeyFile.create(master: master, passphrase: passphrase, repository: config.id).encode()
            let id = try withLock(repository, command: "key import") { try repository.storeKeyFile(bytes) }
            print("imported the paper key as key \(id.short)")
        }

        func readPaper() throws -> String {
            let fd = paperFile == "-" ? 0 : try Sys.open(paperFile, Sys.O_RDONLY)
            defer { if fd != 0 { Sys.close(fd) } }
            var bytes = [UInt8](repeating: 0, count: PaperKey.maxText + 1), n = 0
            while n < bytes.count {
                let got = try bytes.withUnsafeMutableBytes { try Sys.read(fd, $0.baseAddress! + n, $0.count - n, path: paperFile) }
                if got == 0 { break }
                n += got
            }
            guard n <= PaperKey.maxText else { throw CommandFailure("\(paperFile) is longer than a paper key (\(PaperKey.maxText) bytes)") }
            return String(decoding: bytes[0..<n], as: UTF8.self)
        }
    }
}

/// Where a new passphrase comes from: `--new-password-file` or a prompt typed twice.
struct NewPassphraseOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Read the new passphrase from FILE (as --password-file); else it is asked twice on the terminal.", valueName: "FILE"))
    var newPasswordFile: String?

    func read(repository: String) throws -> [UInt8] {
        if let f = newPasswordFile {
            return try Passphrase.readFile(try Passphrase.checkedPath(f, "--new-password-file"), what: "--new-password-file \(f)")
        }
        return try Passphrase.prompt("New passphrase for \(repository): ", confirm: true,
                                     otherwise: "no new passphrase: give --new-password-file FILE (standard input is not a terminal to ask on)")
    }
}

/// A command's own failure (exit status 1, not the usage error 64 of `ValidationError`).
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Opens the repository, which must be encrypted (a plain one has no keys).
func openEncrypted(_ repo: RepositoryOptions) throws -> Repository {
    let repository = try repo.open()
    guard repository.config.isEncrypted else {
        throw CommandFailure("\(repo.path) is a plain repository (format version \(repository.config.version)): it has no keys; `accord init` creates an encrypted one")
    }
    return repository
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

/// The paper form of the master key: the repository id, then the key in lines
/// of 8 bytes (4-hex-digit groups), each with a checksum of its own so a
/// mistyped line is found, and a check of the whole key.
enum PaperKey {
    static let bytesPerLine = 8

    static func render(repositoryID: String, masterKey: [UInt8]) -> String {
        var out = "accord repository master key (paper backup) — anyone holding it can read every backup\n"
        out += "repository: \(repositoryID)\n"
        for start in stride(from: 0, to: masterKey.count, by: bytesPerLine) {
            let line = Array(masterKey[start..<min(start + bytesPerLine, masterKey.count)])
            let number = start / bytesPerLine + 1
            out += "\(number): " + groups(line) + " - " + checksum(repositoryID: repositoryID, line: number, line) + "\n"
        }
        out += "check: " + String(SHA256Hasher.hash(Array("accord paper key".utf8) + Array(repositoryID.utf8) + masterKey).hex.prefix(8)) + "\n"
        return out
    }

    static let maxText = 16 << 10

    /// The master key from a paper backup typed back in: every key line's
    /// checksum, the repository id and the whole-key check must match.
    static func parse(_ text: String, repositoryID: String) throws -> [UInt8] {
        var key: [UInt8] = [], sawRepository = false, check: String?
        for (i, raw) in text.split(whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("accord repository master key") { continue }
            let where_ = "line \(i + 1) of the paper key"
            guard let colon = line.firstIndex(of: ":") else { throw CommandFailure("\(where_) is not `repository: ID`, `N: hex - checksum` or `check: hex`") }
            let label = line[..<colon], rest = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces).lowercased()
            if label == "repository" {
                guard rest == repositoryID else { throw CommandFailure("the paper key is for repository \(rest.prefix(16)), not \(repositoryID.prefix(16))") }
                sawRepository = true
            } else if label == "check" {
                check = rest
            } else {
                guard let number = Int(label), number == key.count / bytesPerLine + 1, key.count % bytesPerLine == 0, key.count < 32 else {
                    throw CommandFailure("\(where_): expected key line \(key.count / bytesPerLine + 1), found \(label.prefix(8))")
                }
                let parts = rest.components(separatedBy: " - ")
                let hex = parts[0].filter { !$0.isWhitespace }
                guard parts.count == 2, hex.allSatisfy({ $0.isASCII && $0.isHexDigit }), hex.count % 2 == 0, hex.count <= 2 * bytesPerLine, let bytes = hexBytes(hex) else {
                    throw CommandFailure("\(where_) (key line \(number)) is not hex groups, ` - ` and a checksum")
                }
                guard checksum(repositoryID: repositoryID, line: number, bytes) == parts[1].trimmingCharacters(in: .whitespaces) else {
                    throw CommandFailure("key line \(number) does not match its checksum: it was mistyped; type it again")
                }
                key += bytes
            }
        }
        guard sawRepository else { throw CommandFailure("the paper key has no `repository:` line") }
        guard key.count == RepositoryCrypto.masterKeySize else { throw CommandFailure("the paper key holds \(key.count) bytes of key, not \(RepositoryCrypto.masterKeySize)") }
        let whole = String(SHA256Hasher.hash(Array("accord paper key".utf8) + Array(repositoryID.utf8) + key).hex.prefix(8))
        guard check == whole else { throw CommandFailure("the paper key's `check:` line \(check == nil ? "is missing" : "does not match the key")") }
        return key
    }

    static func hexBytes(_ hex: String) -> [UInt8]? {
        let u = Array(hex.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        for i in stride(from: 0, to: u.count, by: 2) {
            guard let b = UInt8(String(decoding: u[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
            out.append(b)
        }
        return out
    }

    static func groups(_ bytes: [UInt8]) -> String {
        stride(from: 0, to: bytes.count, by: 2).map { hexString(bytes[$0..<min($0 + 2, bytes.count)]) }.joined(separator: " ")
    }

    static func checksum(repositoryID: String, line: Int, _ bytes: [UInt8]) -> String {
        String(SHA256Hasher.hash(Array(repositoryID.utf8) + [UInt8(truncatingIfNeeded: line)] + bytes).hex.prefix(4))
    }
}
