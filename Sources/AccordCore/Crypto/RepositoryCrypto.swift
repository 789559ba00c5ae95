import Foundation

/// The keys of an encrypted repository (format version 3), derived from its
/// master key, and the one place objects are sealed and opened (FORMAT.md,
/// "Encryption"). Every subkey is HKDF-SHA256 of the master key, salted
/// with the repository id, under its own label, so no key serves two purposes.
public final class RepositoryCrypto: Sendable {
    /// Labels of the subkeys (HKDF `info`); FORMAT.md lists them.
    public enum Label {
        public static let blobID = "accord v3 blob id"
        public static let blobSeal = "accord v3 blob seal"
        public static let snapshotSeal = "accord v3 snapshot seal"
        public static let configMAC = "accord v3 config mac"
        public static let gear = "accord v3 gear"
    }
    /// Domain tags at the start of each kind of object's associated data.
    public static let blobDomain = Array("ACCORD3B".utf8)
    public static let snapshotMagic = Array("ACCSNAP3".utf8)
    public static let masterKeySize = 32

    public let master: [UInt8]
    public let repositoryID: [UInt8]
    public let idKey: HMACKey
    public let blobKey: AESGCMKey
    public let snapshotKey: AESGCMKey
    let configKey: HMACKey
    /// The 256 words of the chunker's gear table (replacing `chunkerSeed`'s).
    public let gearWords: [UInt64]

    public init(master: [UInt8], repositoryID: [UInt8]) {
        precondition(master.count == Self.masterKeySize && repositoryID.count == 32)
        self.master = master
        self.repositoryID = repositoryID
        func sub(_ label: String, _ n: Int = 32) -> [UInt8] { Crypto.hkdf(key: master, salt: repositoryID, info: Array(label.utf8), length: n) }
        idKey = HMACKey(sub(Label.blobID))
        blobKey = AESGCMKey(sub(Label.blobSeal))
        snapshotKey = AESGCMKey(sub(Label.snapshotSeal))
        configKey = HMACKey(sub(Label.configMAC))
        let g = sub(Label.gear, 2048)
        gearWords = (0..<256).map { i in (0..<8).reduce(UInt64(0)) { $0 | UInt64(g[i * 8 + $1]) << (8 * $1) } }
    }

    /// A blob's id: HMAC-SHA256 of its bytes under the id key.
    @inline(__always)
    public func blobID(_ data: UnsafeRawBufferPointer) -> BlobID { BlobID(digest: idKey.mac(data)) }

    // MARK: Blobs

    /// The associated data of a sealed blob: domain, compression, raw length,
    /// id, and for a delta its base; a stored blob moved to another id, or its
    /// header entry changed, no longer opens.
    static func blobAAD(id: BlobID, compression: BlobCompression, rawLength: Int, base: BlobID?) -> [UInt8] {
        var a = blobDomain
        a.reserveCapacity(78)
        a.append(compression.rawValue)
        a.append(contentsOf: withUnsafeBytes(of: UInt32(truncatingIfNeeded: rawLength).littleEndian, Array.init))
        a.append(contentsOf: id.bytes)
        if let base { a.append(contentsOf: base.bytes) }
        return a
    }

    /// Seals a blob's version 2 stored bytes (`plain`: raw, a zlib stream, or
    /// `BaseID || program`) into its version 3 stored bytes, appended to `out`:
    /// `Nonce || ciphertext || Tag`, a delta's `BaseID` kept in front, in clear.
    public func sealBlob(_ plain: UnsafeRawBufferPointer, id: BlobID, compression: BlobCompression, rawLength: Int,
                         appendingTo out: inout [UInt8]) throws {
        var body = plain
        var base: BlobID?
        if compression == .delta {
            precondition(plain.count > 32)
            base = BlobID(bytes: plain.baseAddress!)
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: plain[0..<32]))
            body = UnsafeRawBufferPointer(rebasing: plain[32...])
        }
        let aad = Self.blobAAD(id: id, compression: compression, rawLength: rawLength, base: base)
        try aad.withUnsafeBytes { try blobKey.seal(body, aad: $0, appendingTo: &out) }
    }

    /// Opens version 3 stored bytes into the version 2 stored bytes they seal
    /// (`out`, replaced). Throws `BlobError.corrupt` naming the blob when they
    /// do not authenticate under this key, id, compression and raw length.
    public func openBlob(_ stored: UnsafeRawBufferPointer, id: BlobID, compression: BlobCompression, rawLength: Int,
                         into out: inout [UInt8]) throws {
        var body = stored
        var base: BlobID?
        if compression == .delta {
            guard stored.count > 32 + AESGCMKey.overhead else {
                throw BlobError.corrupt(id, reason: "sealed delta blob of \(stored.count) bytes is too short")
            }
            base = BlobID(bytes: stored.baseAddress!)
            body = UnsafeRawBufferPointer(rebasing: stored[32...])
        }
        let aad = Self.blobAAD(id: id, compression: compression, rawLength: rawLength, base: base)
        out.removeAll(keepingCapacity: true)
        if let base { out.append(contentsOf: base.bytes) }
        do { try aad.withUnsafeBytes { try blobKey.open(body, aad: $0, into: &out, keeping: out.count) } } catch {
            throw BlobError.corrupt(id, reason: "its sealed bytes do not authenticate (\(error))")
        }
    }

    /// `openBlob` where the stored bytes lie (a mutable copy the caller owns):
    /// returns the version 2 stored bytes, a range of `stored` (a delta's
    /// `BaseID` is moved up against its opened program). On a throw `stored`
    /// is partly overwritten and must not be opened again.
    public func openBlobInPlace(_ stored: UnsafeMutableRawBufferPointer, id: BlobID, compression: BlobCompression,
                                rawLength: Int) throws -> UnsafeRawBufferPointer {
        var body = stored
        var base: BlobID?
        if compression == .delta {
            guard stored.count > 32 + AESGCMKey.overhead else {
                throw BlobError.corrupt(id, reason: "sealed delta blob of \(stored.count) bytes is too short")
            }
            base = BlobID(bytes: UnsafeRawPointer(stored.baseAddress!))
            body = UnsafeMutableRawBufferPointer(rebasing: stored[32...])
        }
        let aad = Self.blobAAD(id: id, compression: compression, rawLength: rawLength, base: base)
        let n: Int
        do { n = try aad.withUnsafeBytes { try blobKey.openInPlace(body, aad: $0) } } catch {
            throw BlobError.corrupt(id, reason: "its sealed bytes do not authenticate (\(error))")
        }
        // Plain: the program at [12, 12+n). Delta: at [44, 44+n), with the
        // BaseID moved from [0, 32) to [12, 44), overlapping (memmove).
        let nonce = AESGCMKey.nonceSize
        guard base != nil else { return UnsafeRawBufferPointer(rebasing: stored[nonce ..< nonce + n]) }
        memmove(stored.baseAddress! + nonce, stored.baseAddress!, 32)
        return UnsafeRawBufferPointer(rebasing: stored[nonce ..< nonce + 32 + n])
    }

    // MARK: Scratch buffers

    private let buffers = BufferPool()

    /// Runs `body` with a buffer of this pool (reused across calls and
    /// threads, so opening a blob allocates nothing once warm).
    @inline(__always)
    public func withBuffer<R>(_ body: (inout [UInt8]) throws -> R) rethrows -> R {
        var b = buffers.take()
        defer { buffers.give(&b) }
        return try body(&b)
    }

    // MARK: Snapshots

    /// `ACCSNAP3 || Time || Nonce || ciphertext(json) || Tag` (FORMAT.md, "Snapshots").
    public func sealSnapshot(json: [UInt8], time: Int64) throws -> [UInt8] {
        var header = Self.snapshotMagic
        header.append(contentsOf: withUnsafeBytes(of: time.littleEndian, Array.init))
        var out = header
        try json.withUnsafeBytes { j in try header.withUnsafeBytes { try snapshotKey.seal(j, aad: $0, appendingTo: &out) } }
        return out
    }

    /// The readable time of a sealed snapshot file, without the key (serve's
    /// clock-skew check); nil when the file is not one.
    public static func sealedSnapshotTime(_ bytes: [UInt8]) -> Int64? {
        guard bytes.count >= 16 + AESGCMKey.overhead, Array(bytes[0..<8]) == snapshotMagic else { return nil }
        return bytes[8..<16].withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
    }

    /// Opens a sealed snapshot file: its header time and its JSON.
    public func openSnapshot(_ bytes: [UInt8]) throws -> (time: Int64, json: [UInt8]) {
        guard let time = Self.sealedSnapshotTime(bytes) else { throw CryptoError.tooShort(bytes.count) }
        let json = try bytes.withUnsafeBytes { b in
            var out: [UInt8] = []
            try snapshotKey.open(UnsafeRawBufferPointer(rebasing: b[16...]), aad: UnsafeRawBufferPointer(rebasing: b[0..<16]), into: &out)
            return out
        }
        return (time, json)
    }

    // MARK: Config

    /// The config's MAC: HMAC-SHA256 of its canonical text (FORMAT.md, "config").
    public func configMAC(_ c: RepositoryConfig) -> String {
        hexString(configKey.mac(Array(c.canonicalText.utf8)))
    }
}

/// A few reusable byte buffers. `@unchecked Sendable`: `free` is under `lock`.
final class BufferPool: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [[UInt8]] = []

    func take() -> [UInt8] { lock.withLock { free.popLast() } ?? [] }

    func give(_ b: inout [UInt8]) {
        // Keep at most 16 buffers, none above 8 MiB: a rare huge blob does not pin its memory.
        guard b.capacity <= 8 << 20 else { return }
        var mine: [UInt8] = []
        swap(&mine, &b)
        lock.withLock { if free.count < 16 { free.append(mine) } }
    }
}
