import AccordRuntime

/// Where a passphrase comes from: a file, an environment variable, a
/// command, a prompt. `passphrase` is called at most once, and only for an
/// encrypted repository. `explicit` is true for a configured source (not a
/// prompt): with one, a plain repository is refused (no downgrade).
public struct KeySource: Sendable {
    public var description: String
    public var explicit: Bool
    public var passphrase: @Sendable () throws -> [UInt8]

    public init(description: String, explicit: Bool, passphrase: @escaping @Sendable () throws -> [UInt8]) {
        self.description = description
        self.explicit = explicit
        self.passphrase = passphrase
    }

    /// A fixed passphrase (tests, and a passphrase read once and used twice).
    public static func fixed(_ p: [UInt8], description: String = "a given passphrase", explicit: Bool = true) -> KeySource {
        KeySource(description: description, explicit: explicit) { p }
    }
}

/// Key files: unlocking an encrypted repository, and `accord key`.
extension Repository {
    /// A repository holds at most this many key files: `key add` and a sync
    /// server refuse more, so a hostile sync client cannot bury the real ones.
    public static let maxKeyFiles = 32
    /// The scrypt work an open may spend, in units of N·r·p: 32 key files
    /// of the default cost (2^17 · 8). Key files are tried cheapest first, so
    /// a file of the default cost is reached even behind 31 others.
    public static let unlockWorkBudget: UInt64 = 32 << 20

    /// Reads the key files and unwraps the master key with `key`'s passphrase,
    /// then checks the config's MAC under it. Key files are tried cheapest
    /// first (a machine secret's HKDF files before any scrypt), never by their
    /// self-declared `created`, within `unlockWorkBudget`; a file that is
    /// damaged, or unwraps a master key the config's MAC rejects (a key of
    /// another master planted by whoever knows the passphrase), is named and
    /// skipped, not the end of the open.
    static func unlock(backend: any Backend, layout: RepositoryLayout, config: RepositoryConfig, key: KeySource) throws -> (RepositoryCrypto, KeyID) {
        var damaged: [String] = []
        let files = try readKeyFiles(backend) { name, e in damaged.append("\(name.prefix(8)): \(e)") }
            .filter { $0.file.repository == config.id }
            .sorted { (cost($0.file), $0.id.hex) < (cost($1.file), $1.id.hex) }
        guard !files.isEmpty else { throw KeyError.noKeyFiles(layout.root) }
        let passphrase = try key.passphrase()
        var tried = 0, spent: UInt64 = 0, macRejected: [String] = []
        for (id, file) in files {
            spent += cost(file)
            guard spent <= unlockWorkBudget || tried == 0 else { break }
            tried += 1
            let master: [UInt8]
            do { master = try file.unwrap(passphrase: passphrase) } catch KeyError.wrongPassphrase { continue } catch {
                damaged.append("\(id.short): \(error)")
                continue
            }
            let crypto = RepositoryCrypto(master: master, repositoryID: ID(hex: config.id)?.bytes ?? [])
            guard let mac = config.mac, Crypto.constantTimeEqual(Array(mac.utf8), Array(crypto.configMAC(config).utf8)) else {
                macRejected.append(id.short)
                continue
            }
            return (crypto, id)
        }
        if !macRejected.isEmpty { throw KeyError.configMAC(layout.configPath + " (under the key of key file(s) " + macRejected.joined(separator: ", ") + ")") }
        if !damaged.isEmpty {
            throw KeyError.noKeyOpens(layout.root, tried: tried, source: key.description + "; damaged key files: " + damaged.joined(separator: "; "))
        }
        throw KeyError.noKeyOpens(layout.root, tried: tried, source: key.description)
    }

    /// What trying a key file costs, in units of N·r·p (an HKDF file: 0).
    static func cost(_ f: KeyFile) -> UInt64 { f.kdf.algorithm == KeyFile.machineKDF ? 0 : f.kdf.N &* f.kdf.r &* f.kdf.p }

    /// Every readable key file (verified against its name), sorted by creation time.
    static func readKeyFiles(_ backend: any Backend, onError: (String, Error) -> Void = { _, _ in }) throws -> [(id: KeyID, file: KeyFile)] {
        var out: [(KeyID, KeyFile)] = []
        for name in try backend.list(.key) {
            guard let id = KeyID(hex: name) else { continue }
            do {
                let bytes = try backend.read(.key, name, upTo: KeyFile.maxFileSize)
                guard bytes.count <= KeyFile.maxFileSize else {
                    throw KeyError.unreadable(name, "it is larger than a key file can be (\(KeyFile.maxFileSize) bytes)")
                }
                guard KeyID(hashing: bytes) == id else { throw KeyError.unreadable(name, "its content does not match its name") }
                out.append((id, try KeyFile.decode(bytes, name: backend.describe(.key, name))))
            } catch { onError(name, error) }
        }
        return out.sorted { ($0.1.created, $0.0.hex) < ($1.1.created, $1.0.hex) }   // for listing; unlock orders by cost
    }

    /// The repository's key files; unreadable ones go to `onError`.
    public func keyFiles(onError: (String, Error) -> Void = { _, _ in }) throws -> [(id: KeyID, file: KeyFile)] {
        try Self.readKeyFiles(backend, onError: onError)
    }

    private func requireKey() throws -> RepositoryCrypto {
        guard config.isEncrypted else { throw KeyError.corrupt("repository \(layout.root) is not encrypted: it has no keys") }
        guard let crypto else { throw KeyError.noPassphrase(layout.root) }
        return crypto
    }

    /// Adds a key file wrapping the master key under `passphrase`. Durable on return.
    @discardableResult
    public func addKey(passphrase: [UInt8]) throws -> KeyID {
        let crypto = try requireKey()
        let bytes = try KeyFile.create(master: crypto.master, passphrase: passphrase, repository: config.id).encode()
        let id = KeyID(hashing: bytes)
        try requireRoomForKey()
        if local != nil { try Sys.mkdir(layout.keyDirectory, mode: 0o700) }
        try bytes.withUnsafeBytes { try backend.write(.key, id.hex, $0) }
        return id
    }

    /// Refuses a new key file when `keys/` holds `maxKeyFiles` already.
    func requireRoomForKey() throws {
        let n = try backend.list(.key).count
        guard n < Self.maxKeyFiles else {
            throw KeyError.corrupt("repository \(layout.root) holds \(n) key files, the most a repository may (\(Self.maxKeyFiles)): remove unused ones first (`accord key remove`)")
        }
    }

    /// Resolves a key file id or unique prefix.
    public func resolveKey(_ spec: String) throws -> KeyID {
        let lower = spec.lowercased()
        let matches = try backend.list(.key).filter { !lower.isEmpty && $0.hasPrefix(lower) }.compactMap(KeyID.init(hex:))
        guard matches.count == 1 else { throw KeyError.keyNotFound(spec) }
        return matches[0]
    }

    /// Removes a key file; refuses to remove the last readable one of this
    /// repository (the data would be lost with it). Durable on return.
    public func removeKey(_ id: KeyID) throws {
        _ = try requireKey()
        let own = try keyFiles().filter { $0.file.repository == config.id }
        guard own.contains(where: { $0.id == id }) || (try? backend.size(.key, id.hex)) != nil else { throw KeyError.keyNotFound(id.hex) }
        guard own.contains(where: { $0.id != id }) else { throw KeyError.lastKey(id.short) }
        try backend.delete(.key, id.hex)
    }

    /// Writes a key file made elsewhere (sync carries them to a DR copy):
    /// its bytes must be a readable key file of this repository.
    public func storeKeyFile(_ bytes: [UInt8]) throws -> KeyID {
        let id = KeyID(hashing: bytes)
        let file = try KeyFile.decode(bytes, name: "key file \(id.short)")
        guard file.repository == config.id else { throw KeyError.unreadable(id.short, "it belongs to repository \(file.repository.prefix(8)), not \(config.id.prefix(8))") }
        if local != nil { try Sys.mkdir(layout.keyDirectory, mode: 0o700) }
        if (try? backend.size(.key, id.hex)) == nil {
            try requireRoomForKey()
            try bytes.withUnsafeBytes { try backend.write(.key, id.hex, $0) }
        }
        return id
    }

    /// The master key, for a paper backup (`accord key export`).
    public func exportMasterKey() throws -> [UInt8] { try requireKey().master }
}
