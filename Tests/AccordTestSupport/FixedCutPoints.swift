import AccordCore

/// New repositories that cut the tests' seeded data at the same points on
/// every run, so that bounds on chunk counts and deltas cannot be crossed by
/// the luck of a random seed (a CI rehearsal once had a 1 MiB CSV's 3 KB
/// insert cost 162 KB: a cut point moved). Plain: a fixed chunker seed.
/// Encrypted (whose gear table comes from its master key and id): a fixed id
/// and master key, its key file wrapping it with `key`'s passphrase as `init`
/// does. Tests only: a real repository's master key is random. Every such
/// repository has the same id, so two of them pass sync's same-repository
/// checks against each other: give a test's second repository a config of its own.
public enum FixedCutPoints {
    public static let chunkerSeed = "00000000005eed21"

    public static func initialize(at path: String, key: KeySource?) throws {
        var config = RepositoryConfig.new(encrypted: key != nil)
        config.id = String(repeating: "5eed", count: 16)
        guard let key else {
            config.chunkerSeed = chunkerSeed
            _ = try Repository.initialize(at: path, config: config)
            return
        }
        let master = (0..<RepositoryCrypto.masterKeySize).map { UInt8(truncatingIfNeeded: 0x5e &+ $0 &* 37) }
        config.mac = RepositoryCrypto(master: master, repositoryID: ID(hex: config.id)!.bytes).configMAC(config)
        _ = try Repository.initialize(at: path, config: config)   // a config with its mac: made without a key file...
        // The tests' scrypt cost (`ACCORD_SCRYPT_N` = 16384), not the default: every command that opens it pays it.
        let file = try KeyFile.create(master: master, passphrase: try key.passphrase(), repository: config.id, n: 16384).encode()
        try file.withUnsafeBytes { try LocalBackend(layout: RepositoryLayout(root: path)).write(.key, KeyID(hashing: file).hex, $0) }
        _ = try Repository.open(at: path, key: key)   // ...which it has now
    }
}
