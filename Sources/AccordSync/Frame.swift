import AccordCore

/// The sync protocol's messages (FORMAT.md, "Sync protocol").
///
///     Frame = Length(4, little-endian: bytes after this field) || Kind(1) || Payload
///
/// The client speaks first (`hello`); every request has one reply except
/// `blob`, which is pipelined and answered only by the `flushed` that
/// follows a `flush`. Either side may send `error` and close.
public enum Frame: Equatable {
    case hello(version: UInt16, flags: UInt16, config: [UInt8])
    case helloOK(version: UInt16, config: [UInt8])
    /// The first 8 bytes (most significant first: `ID.w0`) of each id the client may send.
    case have([UInt64])
    /// One bit per id of the `have` it answers (bit i of byte i/8, least significant first): 1 = send it.
    case missing(count: UInt32, bitmap: [UInt8])
    /// Blobs as stored, several to a frame. Each names its position in the last
    /// `have`; ids are not sent: the server hashes the content and checks the prefix.
    case blobs([SyncBlob])
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

    public static let protocolVersion: UInt16 = 1
    /// Largest frame accepted: a 64 MiB blob plus its header.
    public static let maxLength = (64 << 20) + 64
    /// Ids per `have`/`missing` frame.
    public static let maxBatch = 8192

    public enum Kind: UInt8 {
        case hello = 1, helloOK, have, missing, blob, flush, flushed, snapshot, snapshotOK
        case listSnapshots, snapshotList, placeMarker, markerOK, bye
        case error = 0x7f
    }

    /// Hello flag: accept a destination repository with a different id.
    public static let flagAllowOtherRepository: UInt16 = 1

    public var kind: Kind {
        switch self {
        case .hello: return .hello
        case .helloOK: return .helloOK
        case .have: return .have
        case .missing: return .missing
        case .blobs: return .blob
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
        var r = ByteReader(payload)
        func ids() throws -> [BlobID] {
            let n = Int(try r.u32())
            guard n <= maxBatch, n * 32 == r.remaining else { throw ProtocolError.malformed(kind, "id count \(n) does not match the payload") }
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
            case .snapshotList: return .snapshotList(try ids())
            case .blob:
                let n = Int(try r.u16())
                var list: [SyncBlob] = []
                for _ in 0..<n {
                    let index = try r.u16()
                    let tc = try r.u8()
                    guard let t = BlobType(rawValue: tc >> 4) else { throw ProtocolError.malformed(kind, "unknown blob type") }
                    guard let c = BlobCompression(rawValue: tc & 0xf) else { throw ProtocolError.malformed(kind, "unknown compression") }
                    let raw = try r.varint()
                    guard raw <= UInt64(UInt32.max) else { throw ProtocolError.malformed(kind, "raw length too large") }
                    let stored = try r.count(max: r.remaining)
                    list.append(SyncBlob(index: index, type: t, compression: c, rawLength: UInt32(raw), stored: try r.raw(stored)))
                }
                return try end(.blobs(list))
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
}

/// One blob inside a `blobs` frame.
public struct SyncBlob: Equatable {
    public var index: UInt16
    public var type: BlobType
    public var compression: BlobCompression
    public var rawLength: UInt32
    public var stored: [UInt8]
    public init(index: UInt16, type: BlobType, compression: BlobCompression, rawLength: UInt32, stored: [UInt8]) {
        self.index = index; self.type = type; self.compression = compression; self.rawLength = rawLength; self.stored = stored
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
        guard buffered >= 4 + length else { return nil }
        let kind = buffer[start + 4]
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
    case unexpected(Frame.Kind, expecting: String)
    case versionMismatch(UInt16)
    case connectionClosed(String)
    case remote(code: UInt16, message: String)

    public var description: String {
        switch self {
        case .unknownFrame(let k): return "protocol error: unknown frame kind \(k) (is the other side a different accord version?)"
        case .malformed(let k, let why): return "protocol error: malformed \(k) frame: \(why)"
        case .frameTooLarge(let n): return "protocol error: frame of \(n) bytes exceeds the \(Frame.maxLength)-byte limit"
        case .unexpected(let k, let e): return "protocol error: got \(k) while expecting \(e)"
        case .versionMismatch(let v): return "the other side speaks sync protocol version \(v); this accord speaks \(Frame.protocolVersion): install the same accord on both nodes"
        case .connectionClosed(let why): return "connection closed \(why)"
        case .remote(_, let m): return "destination: \(m)"
        }
    }
}
