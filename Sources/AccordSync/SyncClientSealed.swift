import Foundation
import AccordCore
import AccordRuntime

/// The client's side of an encrypted repository (format version 3): it holds
/// the key, the destination does not (FORMAT.md, "Sync protocol").
extension SyncClient {
    /// Both sides must be the one repository when either is encrypted: the same
    /// id and the same config MAC (serve checks the same; this says it here too,
    /// and guards against a destination that did not).
    func checkEncryption(remote: RepositoryConfig?) throws {
        let ours = repository.config
        let where_ = repository.layout.root
        guard ours.isEncrypted || remote?.isEncrypted == true else { return }
        guard let remote else {
            throw SyncError.encryptionMismatch("the destination", reason: "its helloOK config does not decode, and \(where_) is encrypted")
        }
        guard ours.isEncrypted, remote.isEncrypted else {
            throw SyncError.encryptionMismatch("the destination", reason: ours.isEncrypted ? "it holds a plain repository and \(where_) is encrypted"
                                                : "it holds an encrypted repository and \(where_) is plain")
        }
        guard remote.id == ours.id, remote.mac == ours.mac else {
            throw SyncError.encryptionMismatch("the destination", reason: "it holds another encrypted repository (\(remote.id.prefix(8)), \(where_) is \(ours.id.prefix(8)))")
        }
        guard repository.crypto != nil else { throw RepositoryError.encryptedWithoutKey(where_) }
    }

    /// Sends every key file of this repository (the destination stores those
    /// it lacks and never deletes one), pipelined, then reads the `keyOK`s.
    /// A key file that is damaged or of another repository stays here (`key
    /// list` names it).
    func sendKeyFiles() throws {
        var sent: [KeyID] = []
        for (id, file) in try repository.keyFiles() where file.repository == repository.config.id {
            let bytes = try repository.backend.read(.key, id.hex)
            // Changed since it was listed (`key passwd` meanwhile): its new name is sent next time.
            guard KeyID(hashing: bytes) == id, bytes.count <= KeyFile.maxFileSize else { continue }
            try connection.send(.keyFile(bytes))
            sent.append(id)
        }
        for id in sent {
            let reply = try connection.expect("the reply to keyFile")
            guard case .keyOK(let rid) = reply, rid == id else { throw ProtocolError.unexpected(reply.kind, expecting: "keyOK \(id.short)") }
        }
        stats.keyFiles += sent.count
    }

    /// The bases of the delta blobs in `wanted` that the destination stores
    /// whole (one `haveBases` → `missing` round trip; none without deltas).
    /// serve refuses a sealed delta whose base it lacks or holds only as a delta
    /// (it cannot decode one to check), which a backup into the copy itself may
    /// have stored: asking, rather than assuming from what was sent, keeps such
    /// a copy syncing (those deltas travel whole).
    func basesStoredWhole(_ wanted: [(Int, BlobID, BlobLocation)]) throws -> Set<BlobID> {
        var bases: [BlobID] = []
        var seen = Set<BlobID>()
        for (_, b, l) in wanted where l.compression == .delta {
            let base = try repository.deltaBase(of: b, location: l)
            if seen.insert(base).inserted { bases.append(base) }
        }
        guard !bases.isEmpty else { return [] }
        try connection.send(.haveBases(bases))
        let reply = try connection.expect("the reply to haveBases")
        guard case .missing(let n, let bits) = reply, Int(n) == bases.count else {
            throw ProtocolError.unexpected(reply.kind, expecting: "missing for \(bases.count) bases")
        }
        var whole = Set<BlobID>()
        for (i, b) in bases.enumerated() where bits[i >> 3] & (1 << UInt8(i & 7)) == 0 { whole.insert(b) }
        return whole
    }

    /// Checks that sealed bytes about to be sent open under the key as blob
    /// `id` (the destination cannot): a damaged source blob is named here,
    /// not stored on the DR node to be found by its next `check`.
    func authenticate(_ id: BlobID, location l: BlobLocation, stored: [UInt8]) throws {
        guard let crypto = repository.crypto else { throw RepositoryError.encryptedWithoutKey(repository.layout.root) }
        do {
            try stored.withUnsafeBytes { try crypto.openBlob($0, id: id, compression: l.compression, rawLength: Int(l.rawLength), into: &opened) }
        } catch {
            throw BlobError.inPack(id, pack: repository.index.pack(of: l), offset: l.offset, underlying: error)
        }
    }

    /// A sealed delta blob re-encoded whole for a destination that lacks its
    /// base: opened and decoded with the key, compressed, and sealed again
    /// (a new nonce, as every seal).
    func expandSealed(_ id: BlobID, location l: BlobLocation, stored: [UInt8]) throws -> (BlobCompression, [UInt8]) {
        let (c, plain) = try expand(id, location: l, stored: stored)
        var out: [UInt8] = []
        try plain.withUnsafeBytes { try repository.sealStored($0, id: id, compression: c, rawLength: Int(l.rawLength), scratch: &out) { _ in } }
        return (c, out)
    }
}
