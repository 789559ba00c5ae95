import AccordCore

/// The sync protocol's messages (FORMAT.md, "Sync protocol").
///
///     Frame = Length(4, little-endian: bytes after this field) || Kind(1) || Payload
///
/// The client speaks first (`hello`); every request has one reply except
/// `blob`, which is pipelined and answered only by the `flushed` that
/// follows a `flush`. Either side may send `error` and close.
public enum Frame: Equatable, Sendable {
    case hello(version: UInt16, flags: UInt16, config: [UInt8])
    case helloOK(version: UInt16, config: [UInt8])
    /// The first 8 bytes (most significant first: `BlobID.w0`) of each id the client may send.
    case have([UInt64])
    /// One bit per id of the `have` it answers (bit i of byte i/8, least significant first): 1 = send it.
    case missing(count: UInt32, bitmap: [UInt8])
    /// Blobs as stored, several to a frame. Each names its position in the last
    /// `have`; ids are not sent: the server hashes the content and checks the prefix.
    case blobs([SyncBlob])
    /// An encrypted repository's blobs (protocol 2): sealed bytes as stored, each
    /// with its full id (an HMAC a keyless server cannot compute) and the
    /// SHA-256 of those bytes, which the server checks on receipt.
    case sealedBlobs([SealedSyncBlob])
    /// One key file's bytes (encrypted repositories), answered by `keyOK`.
    case keyFile([UInt8])
    case keyOK(KeyID)
    /// Full ids of the bases of delta blobs about to be sent (encrypted
    /// repositories), answered by `missing`: bit i set = base i is not stored
    /// whole on the server, so the delta must travel whole.
    case haveBases([BlobID])
    case flush
    case flushed(packs: UInt32, blobs: UInt32)
    case snapshot([UInt8])
    case snapshotOK(SnapshotID)
    case listSnapshots
    case snapshotList([SnapshotID])
    case placeMarker
    case markerOK
    case bye
    case error(code: UInt16, message: String)

    public static let protocolVersion: UInt16 = 2
    /// Largest frame accepted: a 64 MiB sealed blob (stored raw: + 28 bytes of
    /// nonce and tag) plus its entry header of up to 79 bytes.
    public static let maxLength = (64 << 20) + 256
    /// Largest `blobs` frame: a 64 MiB blob plus its header.
    public static let maxPlainBlobsLength = (64 << 20) + 64
    /// Key files a session may send (a repository has a few; each is stored).
    public static let maxKeyFilesPerSession = 64
    /// Ids per `have`/`missing` frame.
    public static let maxBatch = 8192
    /// Largest raw (uncompressed) length of a blob: no chunk the format permits is larger
    /// (FORMAT.md, chunker profiles: `max` ≤ 64 MiB), so no claim above it is allocated.
    public static let maxBlobLength = 64 << 20
    /// Largest snapshot file a `snapshot` frame may carry. A snapshot names its
    /// manifest blobs (~72 bytes each as written: 16 MiB holds ~230,000 of them,
    /// a manifest stream of ~3.7 GB, tens of millions of files) and the paths
    /// a backup could not read; real ones are a few KiB to a few MiB.
    public static let maxSnapshotLength = Snapshot.maxFileSize
    /// Largest `config` in hello/helloOK (real ones are ~300 bytes) and `error` message.
    public static let maxSmallPayload = 64 << 10

    /// The largest `Length` (Kind + Payload) a frame of this kind may have: checked
    /// as soon as the kind byte has arrived, before the rest is buffered.
    public static func maxLength(of kind: Kind) -> Int {
        switch kind {
        case .blob, .snapshotList: return maxPlainBlobsLength
        case .sealedBlob: return maxLength
        case .keyFile: return 1 + KeyFile.maxFileSize
        case .snapshot: return 1 + maxSnapshotLength
        case .hello: return 5 + maxSmallPayload
        case .helloOK: return 3 + maxSmallPayload
        case .error: return 3 + maxSmallPayload
        case .have: return 5 + 8 * maxBatch
        case .haveBases: return 5 + 32 * maxBatch
        case .missing: return 5 + (maxBatch + 7) / 8
        // Fixed-size kinds: a little room, so that extra bytes read as "trailing bytes".
        case .flushed, .snapshotOK, .keyOK, .flush, .listSnapshots, .placeMarker, .markerOK, .bye: return 64
        }
    }

    public enum Kind: UInt8, Sendable {
        case hello = 1, helloOK, have, missing, blob, flush, flushed, snapshot, snapshotOK
        case listSnapshots, snapshotList, placeMarker, markerOK, bye, sealedBlob, keyFile, keyOK, haveBases
        case error = 0x7f
    }

    /// Hello flag: accept a destination repository with a different id.
    public static let flagAllowOtherRepository: UInt16 = 1
    /// Every flag bit this version defines; the others are reserved and must be 0.
    public static let knownFlags: UInt16 = flagAllowOtherRepository

    public var kind: Kind {
        switch self {
        case .hello: return .hello
        case .helloOK: return .helloOK
        case .have: return .have
        case .missing: return .missing
        case .blobs: return .blob
        case .sealedBlobs: return .sealedBlob
        case .keyFile: return .keyFile
        case .keyOK: return .keyOK
        case .haveBases: return .haveBases
        case .flush: return .flush
        case .flushed: return .flushed
        case .snapshot: return .snapshot
        case .snapshotOK: return .snapshotOK
        case .listSnapshots: return .listSnapshots
        case .snapshotList: return .snapshotList
        case .placeMarker: return .placeMarker
        case .markerOK: return .markerOK
        case .bye: return .bye
        case .error: return .error
        }
    }

    /// The frame's bytes, length prefix included.
    public func encode() -> [UInt8] {
        var w = ByteWriter()
        w.u32(0)
        w.u8(kind.rawValue)
        switch self {
        case .hello(let v, let f, let c): w.u16(v); w.u16(f); w.raw(c)
        case .helloOK(let v, let c): w.u16(v); w.raw(c)
        case .missing(let n, let bits): w.u32(n); w.raw(bits)
        case .have(let prefixes):
            w.u32(UInt32(prefixes.count)); for p in prefixes { w.u64(p.byteSwapped) }   // the id's first 8 bytes, in order
        case .snapshotList(let ids):
            w.u32(UInt32(ids.count)); for i in ids { w.id(i) }
        case .blobs(let list):
            w.u16(UInt16(list.count))
            for b in list {
                w.u16(b.index); w.u8(b.type.rawValue << 4 | b.compression.rawValue)
                w.varint(UInt64(b.rawLength)); w.varint(UInt64(b.stored.count)); w.raw(b.stored)
            }
        case .sealedBlobs(let list):
            w.u16(UInt16(list.count))
            for b in list {
                w.u16(b.index); w.u8(b.type.rawValue << 4 | b.compression.rawValue); w.varint(UInt64(b.rawLength))
                w.id(b.id); w.raw(b.storedHash.bytes); w.varint(UInt64(b.stored.count)); w.raw(b.stored)
            }
        case .keyFile(let bytes): w.raw(bytes)
        case .keyOK(let id): w.id(id)
        case .haveBases(let ids): w.u32(UInt32(ids.count)); for i in ids { w.id(i) }
        case .flushed(let p, let b): w.u32(p); w.u32(b)
        case .snapshot(let json): w.raw(json)
        case .snapshotOK(let id): w.id(id)
        case .error(let code, let m): w.u16(code); w.raw(Array(m.utf8))
        case .flush, .listSnapshots, .placeMarker, .markerOK, .bye: break
        }
        let length = UInt32(w.bytes.count - 4).littleEndian
        withUnsafeBytes(of: length) { for i in 0..<4 { w.bytes[i] = $0[i] } }
        return w.bytes
    }

    /// Decodes one frame's kind and payload (without the length prefix).
    public static func decode(kind rawKind: UInt8, payload: UnsafeRawBufferPointer) throws -> Frame {
        guard let kind = Kind(rawValue: rawKind) else { throw ProtocolError.unknownFrame(rawKind) }
        guard 1 + payload.count <= maxLength(of: kind) else { throw ProtocolError.frameTooLargeForKind(kind, 1 + payload.count, limit: maxLength(of: kind)) }
        var r = ByteReader(payload)
        func snapshotIDs() throws -> [SnapshotID] {
            // Bounded by the frame (≤ 2 million ids), not by maxBatch: a repository may hold more snapshots than a batch.
            let n = Int(try r.u32())
            guard n * 32 == r.remaining else { throw ProtocolError.malformed(kind, "id count \(n) does not match the payload") }
            return try (0..<n).map { _ in try r.id() }
        }
        func rest() throws -> [UInt8] { try r.raw(r.remaining) }
        func end(_ f: Frame) throws -> Frame {
            guard r.isAtEnd else { throw ProtocolError.malformed(kind, "trailing bytes") }
            return f
        }
        do {
            switch kind {
            case .hello: return .hello(version: try r.u16(), flags: try r.u16(), config: try rest())
            case .helloOK: return .helloOK(version: try r.u16(), config: try rest())
            case .have:
                let n = Int(try r.u32())
                guard n <= maxBatch, n * 8 == r.remaining else { throw ProtocolError.malformed(kind, "prefix count \(n) does not match the payload") }
                return .have(try (0..<n).map { _ in try r.u64().byteSwapped })
            case .missing:
                let n = Int(try r.u32())
                guard n <= maxBatch, (n + 7) / 8 == r.remaining else { throw ProtocolError.malformed(kind, "bitmap length does not match \(n) ids") }
                return .missing(count: UInt32(n), bitmap: try rest())
            case .snapshotList: return .snapshotList(try snapshotIDs())
            case .blob:
                let n = Int(try r.u16())
                var list: [SyncBlob] = []
                for i in 0..<n {
                    let (index, t, c, raw) = try entryHeader(&r, kind, i)
                    let stored = try r.count(max: r.remaining)
                    list.append(SyncBlob(index: index, type: t, compression: c, rawLength: raw, stored: try r.raw(stored)))
                }
                return try end(.blobs(list))
            case .sealedBlob:
                let n = Int(try r.u16())
                var list: [SealedSyncBlob] = []
                for i in 0..<n {
                    let (index, t, c, raw) = try entryHeader(&r, kind, i)
                    let id: BlobID = try r.id()
                    let hash = try r.rawID()
                    let stored = try r.count(max: r.remaining)
                    list.append(SealedSyncBlob(index: index, type: t, compression: c, rawLength: raw, id: id, storedHash: hash, stored: try r.raw(stored)))
                }
                return try end(.sealedBlobs(list))
            case .keyFile: return .keyFile(try rest())
            case .keyOK: return try end(.keyOK(try r.id()))
            case .haveBases:
                let n = Int(try r.u32())
                guard n <= maxBatch, n * 32 == r.remaining else { throw ProtocolError.malformed(kind, "id count \(n) does not match the payload") }
                return .haveBases(try (0..<n).map { _ in try r.id() })
            case .flush: return try end(.flush)
            case .flushed: return try end(.flushed(packs: try r.u32(), blobs: try r.u32()))
            case .snapshot: return .snapshot(try rest())
            case .snapshotOK: return try end(.snapshotOK(try r.id()))
            case .listSnapshots: return try end(.listSnapshots)
            case .placeMarker: return try end(.placeMarker)
            case .markerOK: return try end(.markerOK)
            case .bye: return try end(.bye)
            case .error: return .error(code: try r.u16(), message: String(decoding: try rest(), as: UTF8.self))
            }
        } catch let e as DecodeError {
            throw ProtocolError.malformed(kind, "\(e)")
        }
    }

    /// A `blobs`/`sealedBlobs` entry's Index, Type·16 + Compression and RawLength
    /// (at most `maxBlobLength`, checked before anything is allocated).
    static func entryHeader(_ r: inout ByteReader, _ kind: Kind, _ i: Int) throws -> (UInt16, BlobType, BlobCompression, UInt32) {
        let index = try r.u16()
        let tc = try r.u8()
        guard let t = BlobType(rawValue: tc >> 4) else { throw ProtocolError.malformed(kind, "unknown blob type") }
        guard let c = BlobCompression(rawValue: tc & 0xf) else { throw ProtocolError.malformed(kind, "unknown compression") }
        let raw = try r.varint()
        guard raw <= UInt64(maxBlobLength) else { throw ProtocolError.malformed(kind, "blob \(i) claims a raw length of \(raw) bytes, above the \(maxBlobLength)-byte chunk limit") }
        return (index, t, c, UInt32(raw))
    }
}

extension Frame {
    /// An `error` frame saying `error`, cut to 8 KiB (at a character boundary) so
    /// that it stays far below the kind's limit even when it quotes a hostile path.
    public static func error(for error: Error) -> Frame {
        let text = "\(error)"
        let limit = 8 << 10
        guard text.utf8.count > limit else { return .error(code: 1, message: text) }
        var cut = ""
        for c in text {
            if cut.utf8.count + c.utf8.count > limit - 3 { break }
            cut.append(c)
        }
        return .error(code: 1, message: cut + "…")
    }
}

/// One blob inside a `blobs` frame.
public struct SyncBlob: Equatable, Sendable {
    public var index: UInt16
    public var type: BlobType
    public var compression: BlobCompression
    public var rawLength: UInt32
    public var stored: [UInt8]
    public init(index: UInt16, type: BlobType, compression: BlobCompression, rawLength: UInt32, stored: [UInt8]) {
        self.index = index; self.type = type; self.compression = compression; self.rawLength = rawLength; self.stored = stored
    }
}

/// One blob inside a `sealedBlobs` frame: its full id and the SHA-256 of its stored bytes travel with it.
public struct SealedSyncBlob: Equatable, Sendable {
    public var index: UInt16
    public var type: BlobType
    public var compression: BlobCompression
    public var rawLength: UInt32
    public var id: BlobID
    /// SHA-256 of `stored`.
    public var storedHash: ID
    public var stored: [UInt8]
    public init(index: UInt16, type: BlobType, compression: BlobCompression, rawLength: UInt32, id: BlobID, storedHash: ID, stored: [UInt8]) {
        self.index = index; self.type = type; self.compression = compression; self.rawLength = rawLength
        self.id = id; self.storedHash = storedHash; self.stored = stored
    }
}

/// Splits a byte stream into frames; `next()` returns nil until a whole frame
/// has arrived (like NIO's single-step decoders), so any split of the input
/// decodes the same. The length is checked before anything is allocated.
public struct FrameDecoder {
    private var buffer: [UInt8] = []
    private var start = 0
    public init() {}

    public mutating func feed<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if start > 0 && start == buffer.count { buffer.removeAll(keepingCapacity: true); start = 0 }
        buffer.append(contentsOf: bytes)
    }

    public var buffered: Int { buffer.count - start }

    public mutating func next() throws -> Frame? {
        guard buffered >= 5 else { return nil }
        let length = buffer.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: start, as: UInt32.self))) }
        guard length >= 1 else { throw ProtocolError.malformed(.error, "frame of length 0 (no kind byte)") }
        guard length <= Frame.maxLength else { throw ProtocolError.frameTooLarge(length) }
        // The kind's own limit, before the rest of the frame is buffered.
        let kind = buffer[start + 4]
        guard let k = Frame.Kind(rawValue: kind) else { throw ProtocolError.unknownFrame(kind) }
        guard length <= Frame.maxLength(of: k) else { throw ProtocolError.frameTooLargeForKind(k, length, limit: Frame.maxLength(of: k)) }
        guard buffered >= 4 + length else { return nil }
        let frame = try buffer.withUnsafeBytes { try Frame.decode(kind: kind, payload: UnsafeRawBufferPointer(rebasing: $0[(start + 5)..<(start + 4 + length)])) }
        start += 4 + length
        if start > 1 << 20 { buffer.removeFirst(start); start = 0 }
        return frame
    }
}

public enum ProtocolError: Error, CustomStringConvertible {
    case unknownFrame(UInt8)
    case malformed(Frame.Kind, String)
    case frameTooLarge(Int)
    case frameTooLargeForKind(Frame.Kind, Int, limit: Int)
    case reservedFlags(UInt16)
    case unexpected(Frame.Kind, expecting: String)
    case versionMismatch(UInt16)
    case connectionClosed(String)
    case remote(code: UInt16, message: String)

    public var description: String {
        switch self {
        case .unknownFrame(let k): return "protocol error: unknown frame kind \(k) (is the other side a different accord version?)"
        case .malformed(let k, let why): return "protocol error: malformed \(k) frame: \(why)"
        case .frameTooLarge(let n): return "protocol error: frame of \(n) bytes exceeds the \(Frame.maxLength)-byte limit"
        case .frameTooLargeForKind(let k, let n, let limit):
            return "protocol error: \(k) frame of \(n) bytes exceeds the \(limit)-byte limit for that kind" + (k == .snapshot ? " (a snapshot file may be at most \(Frame.maxSnapshotLength) bytes)" : "")
        case .reservedFlags(let f):
            return "protocol error: hello sets reserved flag bits 0x\(String(f, radix: 16, uppercase: false)) (this accord defines only 0x0001, accept another repository, and the others must be 0): install the same accord on both nodes"
        case .unexpected(let k, let e): return "protocol error: got \(k) while expecting \(e)"
        case .versionMismatch(let v): return "the other side speaks sync protocol version \(v); this accord speaks \(Frame.protocolVersion): install the same accord on both nodes"
        case .connectionClosed(let why): return "connection closed \(why)"
        case .remote(_, let m): return "destination: \(m)"
        }
    }
}
