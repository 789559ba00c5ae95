// TEMPORARY: the core API of s21-crypto-design.md until s21-core lands; removed at the merge.
import AccordCore

struct KeySource: Sendable {
    var description: String
    var explicit: Bool
    var passphrase: @Sendable () throws -> [UInt8]
}

extension Repository {
    static func open(at path: String, create: Bool = false, key: KeySource?) throws -> Repository { try open(at: path, create: create) }
    static func initialize(at path: String, config: RepositoryConfig, key: KeySource?) throws -> Repository { try initialize(at: path, config: config) }
}

extension RepositoryConfig {
    static func new(compression: CompressionLevel, encrypted: Bool) -> RepositoryConfig { new(compression: compression) }
}

extension RepositoryConfig { var isEncrypted: Bool { false } }

struct KeyID: Hashable, Sendable { var hex: String; var short: String { String(hex.prefix(8)) } }
struct KeyFile: Sendable {
    struct KDF: Sendable { var algorithm: String; var N: Int; var r: Int; var p: Int }
    var created: String; var host: String; var username: String; var kdf: KDF
}
extension Repository {
    func keyFiles() throws -> [(id: KeyID, file: KeyFile)] { [] }
    func addKey(passphrase: [UInt8]) throws -> KeyID { KeyID(hex: "") }
    func removeKey(_ id: KeyID) throws {}
    var usedKey: KeyID? { nil }
    func exportMasterKey() throws -> [UInt8] { [] }
}
