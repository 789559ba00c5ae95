import Foundation
import AccordCore
import AccordRuntime

/// serve's side of an encrypted repository (format version 3), which it holds
/// without the key (FORMAT.md, "Sync protocol", "Encrypted repositories").
///
/// What it checks on receipt: each blob's stored bytes against the SHA-256
/// sent with them, its id against the prefix of the `have`, its lengths
/// against the sealed layout, a delta's base being stored whole here; a
/// snapshot file's size, header and readable time; a key file's form and
/// repository. What it cannot: that a blob's sealed bytes open, that its
/// plaintext has its id, that a snapshot's manifest is valid or its blobs
/// all here. Those are checked with the key on the DR node (`check
/// --read-data`, and every restore, through the validating readers).
extension SyncServer {
    /// When either side is encrypted, both must be the one repository: the same
    /// id and the same config MAC (made with the master key), whatever the flags
    /// say. Blobs sealed under one key are of no use in another repository.
    static func checkSameEncryption(_ path: String, ours: RepositoryConfig, client: RepositoryConfig) throws {
        guard ours.isEncrypted || client.isEncrypted else { return }
        guard ours.isEncrypted == client.isEncrypted else {
            throw SyncError.encryptionMismatch(path, reason: ours.isEncrypted ? "it holds an encrypted repository and the client's is plain"
                                                   : "it holds a plain repository and the client's is encrypted")
        }
        guard ours.id == client.id else {
            throw SyncError.encryptionMismatch(path, reason: "it holds another encrypted repository (\(ours.id.prefix(8)), the client's is \(client.id.prefix(8))), whose blobs are sealed under another key")
        }
        guard ours.mac == client.mac else {
            throw SyncError.encryptionMismatch(path, reason: "its config has the same id (\(ours.id.prefix(8))) but another MAC, so another master key or an edited config")
        }
    }

    /// Checks a sealed blob as far as bytes can be checked without the key, and
    /// appends it, as it came, to the current pack under the id it came with.
    func acceptSealed(prefix: UInt64, _ b: SealedSyncBlob) throws {
        let r = try repo()
        let id = b.id
        func refuse(_ why: String) -> Error { SyncError.blobRefused(id, reason: why) }
        guard id.w0 == prefix else {
            throw refuse("its id does not start with the prefix \(String(prefix, radix: 16)) announced at its index in the last have")
        }
        let hash = b.stored.withUnsafeBytes { SHA256Hasher.hash($0) }
        guard hash == b.storedHash else {
            throw refuse("the SHA-256 of its \(b.stored.count) stored bytes is \(hash.short)…, not the \(b.storedHash.short)… sent with them")
        }
        let overhead = r.sealOverhead
        let n = b.stored.count
        guard n <= Int(PackFormat.maxStoredLength) else { throw refuse("its \(n) stored bytes exceed the \(PackFormat.maxStoredLength)-byte limit") }
        switch b.compression {
        case .none:
            guard n == Int(b.rawLength) + overhead else {
                throw refuse("stored raw, it must be its raw length \(b.rawLength) + \(overhead) bytes of nonce and tag, not \(n) bytes")
            }
        case .zlib:
            guard n >= overhead else { throw refuse("its \(n) stored bytes are fewer than a seal's \(overhead)") }
        case .delta:
            guard r.config.allowsDeltaBlobs else { throw refuse("it is a delta blob, which this format version \(r.config.version) repository cannot hold") }
            guard n > 32 + overhead else { throw refuse("a sealed delta blob is more than \(32 + overhead) bytes (base id, nonce, tag), not \(n)") }
            let base = b.stored.withUnsafeBytes { BlobID(bytes: $0.baseAddress!) }
            guard let l = r.index.lookup(base) else { throw refuse("its base \(base.short)… is not stored on this node") }
            guard l.compression != .delta else {
                throw refuse("its base \(base.short)… is stored on this node only as a delta itself, and a delta's base must be stored whole")
            }
        }
        if r.index.contains(id) || pending.contains(id) { return }
        if assembler == nil { assembler = r.makePackAssembler() }
        let full = try b.stored.withUnsafeBytes {
            try assembler!.add(id: id, type: b.type, compression: b.compression, rawLength: Int(b.rawLength), stored: $0)
        }
        pending.insert(id)
        pendingPrefixes.insert(prefix)
        accepted += 1
        if let w = full, let sealed = try PackAssembler.seal(w) { pendingPacks.append(sealed.pack) }
        if pending.count >= Self.maxPendingBlobs { _ = try flushPacks() }
    }

    /// Writes a sealed snapshot file after the checks its readable header
    /// allows: at most `Frame.maxSnapshotLength` bytes, `ACCSNAP3` and room for
    /// a seal, a time not more than `maxClockSkew` ahead of this node's clock.
    /// Its JSON, its manifest and the presence of its blobs cannot be checked
    /// without the key (FORMAT.md says who checks them).
    func storeSealedSnapshot(_ bytes: [UInt8]) throws -> SnapshotID {
        let r = try repo()
        let id = SnapshotID(hashing: bytes)
        guard bytes.count <= Frame.maxSnapshotLength else { throw SyncError.snapshotRejected(id, reason: "it is \(bytes.count) bytes, above the \(Frame.maxSnapshotLength)-byte limit") }
        guard let time = RepositoryCrypto.sealedSnapshotTime(bytes) else {
            throw SyncError.snapshotRejected(id, reason: "it is not a sealed snapshot file (one starts with ACCSNAP3 and is at least \(16 + r.sealOverhead) bytes; this is \(bytes.count))")
        }
        let now = Timestamp.now()
        if time > now.seconds &+ options.maxClockSkew {
            // A hostile time may lie past what a calendar date can show.
            let shown = time < 253_402_300_800 ? Timestamp(seconds: time, nanoseconds: 0).rfc3339 : "\(time) s after 1970"
            throw SyncError.snapshotInFuture(id, time: shown, now: now.rfc3339, skew: options.maxClockSkew)
        }
        try bytes.withUnsafeBytes { try r.backend.write(.snapshot, id.hex, $0) }
        log("stored snapshot \(id.short)")
        return id
    }

    /// Stores one key file sent by the client: a key file of this repository
    /// (`Repository.storeKeyFile` checks its form, KDF bounds and repository id)
    /// of at most 64 KiB (the frame's limit), at most `Frame.maxKeyFilesPerSession`
    /// a session. Key files are only added: `key remove` runs on each copy.
    func storeKey(_ bytes: [UInt8]) throws -> KeyID {
        let r = try repo()
        let id = KeyID(hashing: bytes)
        guard r.config.isEncrypted else { throw SyncError.keyRejected(id, reason: "the destination repository is plain: it holds no key files") }
        keyFilesReceived += 1
        guard keyFilesReceived <= Frame.maxKeyFilesPerSession else {
            throw SyncError.keyRejected(id, reason: "a session may send at most \(Frame.maxKeyFilesPerSession) key files")
        }
        do { return try r.storeKeyFile(bytes) } catch { throw SyncError.keyRejected(id, reason: "\(error)") }
    }
}
