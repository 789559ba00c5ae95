/// `<repo>/index/<id>`: which blob is in which pack at which offset
/// (FORMAT.md, "Index files"). The name is the SHA-256 of the file's bytes,
/// so a truncated or altered index is detected on load.
///
///     Index = Magic("ACCIDX01") || PackCount(4) || Pack_1 || … || Pack_n
///     Pack  = PackID(32) || BlobCount(4) || Blob_1 || … || Blob_m
///     Blob  = ID(32) || Type(1) || Compression(1) || Offset(4) || StoredLength(4) || RawLength(4)
///
/// Index files are only ever added (by backup, sync, repair) or replaced as
/// a whole (by prune, which writes the new one before deleting the old).
public struct IndexFile: Equatable, Sendable {
    public struct Pack: Equatable, Sendable {
        public var id: PackID
        public var blobs: [PackEntry]
        public init(id: PackID, blobs: [PackEntry]) { self.id = id; self.blobs = blobs }
    }

    public static let magic: [UInt8] = Array("ACCIDX01".utf8)
    static let blobRecordSize = 46
    /// The largest index file a reader accepts and a writer writes (FORMAT.md, "Index files"):
    /// 4 GiB, some 93 million blobs.
    public static let maxFileSize = 1 << 32

    public var packs: [Pack]
    public init(packs: [Pack]) { self.packs = packs }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 12 + packs.reduce(0) { $0 + 36 + $1.blobs.count * Self.blobRecordSize })
        w.raw(Self.magic)
        w.u32(UInt32(packs.count))
        for p in packs {
            w.id(p.id)
            w.u32(UInt32(p.blobs.count))
            for b in p.blobs {
                w.id(b.id)
                w.u8(b.type.rawValue)
                w.u8(b.compression.rawValue)
                w.u32(b.offset)
                w.u32(b.storedLength)
                w.u32(b.rawLength)
            }
        }
        return w.bytes
    }

    /// One `Blob` record (`blobRecordSize` bytes); `IndexLoader` reads them too.
    static func decodeBlob(_ r: inout ByteReader) throws -> PackEntry {
        let bid = try r.id(BlobID.self)
        guard let t = BlobType(rawValue: try r.u8()) else { throw DecodeError.invalid("unknown blob type", offset: r.offset) }
        guard let c = BlobCompression(rawValue: try r.u8()) else { throw DecodeError.invalid("unknown compression", offset: r.offset) }
        let off = try r.u32(), stored = try r.u32(), raw = try r.u32()
        // Bounded before any reader allocates `stored` bytes for the blob (FORMAT.md, "Packs").
        guard raw <= PackFormat.maxRawLength, stored <= PackFormat.maxStoredLength else {
            throw DecodeError.invalid("blob \(bid.short) has lengths out of bounds (stored \(stored), raw \(raw); at most \(PackFormat.maxStoredLength) and \(PackFormat.maxRawLength))", offset: r.offset - 8)
        }
        return PackEntry(id: bid, type: t, compression: c, rawLength: raw, storedLength: stored, offset: off)
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> IndexFile {
        var r = ByteReader(bytes)
        guard try r.raw(8) == magic else { throw DecodeError.invalid("not an Accord index file (bad magic)", offset: 0) }
        let packCount = Int(try r.u32())
        guard packCount <= r.remaining / 36 else { throw DecodeError.truncated(offset: r.offset) }
        var packs: [Pack] = []
        packs.reserveCapacity(packCount)
        for _ in 0..<packCount {
            let id = try r.id(PackID.self)
            let n = Int(try r.u32())
            guard n <= r.remaining / blobRecordSize else { throw DecodeError.truncated(offset: r.offset) }
            var blobs: [PackEntry] = []
            blobs.reserveCapacity(n)
            for _ in 0..<n { blobs.append(try decodeBlob(&r)) }
            packs.append(Pack(id: id, blobs: blobs))
        }
        guard r.isAtEnd else { throw DecodeError.invalid("trailing bytes after the last pack", offset: r.offset) }
        return IndexFile(packs: packs)
    }
}
