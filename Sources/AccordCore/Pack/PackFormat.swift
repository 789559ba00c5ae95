import CZlib

/// What a blob holds (FORMAT.md, "Blob types").
public enum BlobType: UInt8, Sendable {
    /// File or stream content.
    case data = 0
    /// A piece of a manifest stream.
    case tree = 1
}

/// One blob as listed in a pack header. This mirrors FORMAT.md byte for byte
/// (44 bytes on disk); offsets are not stored: they are the running sum of
/// `storedLength` of the entries before it.
public struct PackEntry: Equatable, Sendable {
    public var id: BlobID
    public var type: BlobType
    public var compression: BlobCompression
    public var rawLength: UInt32
    public var storedLength: UInt32
    /// Offset of the stored bytes in the pack (derived, not stored).
    public var offset: UInt32

    public init(id: BlobID, type: BlobType, compression: BlobCompression, rawLength: UInt32, storedLength: UInt32, offset: UInt32) {
        self.id = id; self.type = type; self.compression = compression
        self.rawLength = rawLength; self.storedLength = storedLength; self.offset = offset
    }
}

/// The pack layout (FORMAT.md, "Pack files"):
///
///     Pack    = Blob_1 || … || Blob_n || Header || HeaderLength || Magic
///     Header  = Count || Entry_1 || … || Entry_n || CRC32
///     Entry   = Type(1) || Compression(1) || Reserved(2) || RawLength(4) || StoredLength(4) || ID(32)
///     HeaderLength = four-byte little-endian length of Header
///     Magic   = "ACCORDPK" (8 bytes)
public enum PackFormat {
    public static let magic: [UInt8] = Array("ACCORDPK".utf8)
    public static let entrySize = 44
    public static let trailerSize = 12  // HeaderLength + Magic
    /// Largest header a reader accepts (about 1.5 million entries).
    public static let maxHeaderLength = 64 << 20
    /// No chunk is larger than 64 MiB (`maxRawLength`), and no stored form of
    /// one is larger than 64 MiB + 64 KiB (`maxStoredLength`: zlib's worst-case
    /// growth of 64 MiB is under 21 KiB, a delta's at most its 32-byte base id
    /// and op headers). Every pack-header and index entry is held to both
    /// before any reader allocates a blob's stored bytes.
    public static let maxRawLength: UInt32 = 64 << 20
    public static let maxStoredLength: UInt32 = (64 << 20) + (64 << 10)

    public static func encodeHeader(_ entries: [PackEntry]) -> [UInt8] {
        var w = ByteWriter(capacity: 8 + entries.count * entrySize)
        w.u32(UInt32(entries.count))
        for e in entries {
            w.u8(e.type.rawValue)
            w.u8(e.compression.rawValue)
            w.u16(0)
            w.u32(e.rawLength)
            w.u32(e.storedLength)
            w.id(e.id)
        }
        w.u32(crc(w.bytes))
        return w.bytes
    }

    /// The header plus trailer to append after the blobs.
    public static func encodeTail(_ entries: [PackEntry]) -> [UInt8] {
        var tail = encodeHeader(entries)
        var w = ByteWriter()
        w.u32(UInt32(tail.count))
        w.raw(magic)
        tail.append(contentsOf: w.bytes)
        return tail
    }

    /// Reads the header length from the last 12 bytes of a pack.
    public static func decodeTrailer(_ trailer: UnsafeRawBufferPointer, packSize: Int) throws -> Int {
        guard trailer.count == trailerSize else { throw PackError.truncatedPack(size: packSize) }
        var r = ByteReader(trailer)
        let headerLength = Int(try r.u32())
        let m = try r.raw(8)
        guard m == magic else { throw PackError.badMagic }
        guard headerLength >= 8, headerLength <= maxHeaderLength, headerLength + trailerSize <= packSize else {
            throw PackError.badHeaderLength(headerLength, packSize: packSize)
        }
        return headerLength
    }

    /// Decodes a header and checks it against the pack size.
    /// `sealOverhead` is 28 in an encrypted repository (version 3), whose
    /// stored blobs carry a nonce and a tag, else 0.
    public static func decodeHeader(_ header: UnsafeRawBufferPointer, packSize: Int, sealOverhead: Int = 0) throws -> [PackEntry] {
        guard header.count >= 8, header.count + trailerSize <= packSize else { throw PackError.badHeaderLength(header.count, packSize: packSize) }
        let body = UnsafeRawBufferPointer(rebasing: header[0..<header.count - 4])
        var r = ByteReader(header, offset: header.count - 4)
        let stored = try r.u32()
        guard crc(body) == stored else { throw PackError.headerChecksum }
        r = ByteReader(body)
        let count = Int(try r.u32())
        guard count * entrySize == body.count - 4 else { throw PackError.badHeaderLength(header.count, packSize: packSize) }
        var entries: [PackEntry] = []
        entries.reserveCapacity(count)
        var offset: UInt64 = 0
        let dataEnd = UInt64(packSize - header.count - trailerSize)
        for _ in 0..<count {
            guard let type = BlobType(rawValue: try r.u8()) else { throw PackError.unknownBlobType }
            guard let comp = BlobCompression(rawValue: try r.u8()) else { throw PackError.unknownCompression }
            _ = try r.u16()
            let raw = try r.u32()
            let storedLength = try r.u32()
            let id = try r.id(BlobID.self)
            if comp == .none && UInt64(raw) + UInt64(sealOverhead) != UInt64(storedLength) { throw PackError.lengthMismatch(id) }
            if comp == .delta && Int(storedLength) <= 32 + sealOverhead { throw PackError.lengthMismatch(id) }
            if comp == .zlib && Int(storedLength) < sealOverhead { throw PackError.lengthMismatch(id) }
            if raw > maxRawLength || storedLength > maxStoredLength { throw PackError.lengthMismatch(id) }   // no chunk is larger
            entries.append(PackEntry(id: id, type: type, compression: comp, rawLength: raw, storedLength: storedLength, offset: UInt32(offset)))
            offset += UInt64(storedLength)
            if offset > dataEnd { throw PackError.blobsExceedPack }
        }
        guard offset == dataEnd else { throw PackError.blobsExceedPack }
        return entries
    }

    static func crc(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { crc($0) } }
    static func crc(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        UInt32(crc32(0, bytes.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt(bytes.count)))
    }
}

public enum PackError: Error, CustomStringConvertible, Equatable {
    case truncatedPack(size: Int)
    case badMagic
    case badHeaderLength(Int, packSize: Int)
    case headerChecksum
    case unknownBlobType
    case unknownCompression
    case lengthMismatch(BlobID)
    case blobsExceedPack

    public var description: String {
        switch self {
        case .truncatedPack(let s): return "pack is truncated (\(s) bytes, no trailer)"
        case .badMagic: return "pack trailer has no ACCORDPK magic (truncated or not a pack)"
        case .badHeaderLength(let l, let s): return "pack header length \(l) does not fit pack size \(s)"
        case .headerChecksum: return "pack header checksum mismatch"
        case .unknownBlobType: return "pack header names an unknown blob type"
        case .unknownCompression: return "pack header names an unknown compression"
        case .lengthMismatch(let id): return "blob \(id.short) has impossible lengths (stored raw with lengths that differ, or a delta with no program)"
        case .blobsExceedPack: return "pack header lengths do not add up to the pack size"
        }
    }
}
