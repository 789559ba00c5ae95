import AccordRuntime
/// Reads blobs and headers from pack files.
public enum PackReader {
    /// Reads and decodes the header at the end of an open pack.
    public static func readHeader(fd: Int32, size: Int, path: String) throws -> [PackEntry] {
        guard size >= PackFormat.trailerSize + 8 else { throw PackError.truncatedPack(size: size) }
        var trailer = [UInt8](repeating: 0, count: PackFormat.trailerSize)
        let n = try trailer.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, $0.count, Int64(size - PackFormat.trailerSize), path: path) }
        guard n == PackFormat.trailerSize else { throw PackError.truncatedPack(size: size) }
        let headerLength = try trailer.withUnsafeBytes { try PackFormat.decodeTrailer($0, packSize: size) }
        var header = [UInt8](repeating: 0, count: headerLength)
        let start = size - PackFormat.trailerSize - headerLength
        let m = try header.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, $0.count, Int64(start), path: path) }
        guard m == headerLength else { throw PackError.truncatedPack(size: size) }
        return try header.withUnsafeBytes { try PackFormat.decodeHeader($0, packSize: size) }
    }

    /// The base id a delta blob names: the first 32 of its stored bytes, read
    /// at `offset` from an open pack. Nil if the pack ends before them.
    public static func readDeltaBase(fd: Int32, offset: UInt32, path: String) throws -> BlobID? {
        var idBytes = [UInt8](repeating: 0, count: 32)
        let n = try idBytes.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, 32, Int64(offset), path: path) }
        return n == 32 ? idBytes.withUnsafeBytes { ID(bytes: $0.baseAddress!) } : nil
    }

    public static func readHeader(path: String) throws -> [PackEntry] {
        let fd = try Sys.open(path, Sys.O_RDONLY)
        defer { Sys.close(fd) }
        let st = try Sys.fstat(fd, path: path)
        return try readHeader(fd: fd, size: Int(st.size), path: path)
    }
}

/// Turns stored bytes back into a blob's bytes and verifies the id.
public enum BlobDecoder {
    /// Gives the bytes of a delta blob's base (a blob stored whole), verified.
    public typealias BaseReader = (BlobID) throws -> [UInt8]

    /// Inflates (if compressed) or applies the delta, and checks SHA-256 == id.
    /// With `id` nil the hash is left to the caller. A delta blob needs `base`.
    public static func decode(stored: UnsafeRawBufferPointer, id: BlobID?, compression: BlobCompression, rawLength: Int,
                              inflater: Inflater, into output: inout [UInt8], base: BaseReader? = nil) throws {
        let shown = id ?? ID.zero
        // No chunk exceeds 64 MiB: a larger length is a damaged header, not a reason to allocate it.
        guard rawLength <= 64 << 20 else { throw BlobError.corrupt(shown, reason: "raw length \(rawLength) exceeds the 64 MiB chunk limit") }
        switch compression {
        case .none:
            guard stored.count == rawLength else { throw BlobError.corrupt(shown, reason: "stored length \(stored.count) ≠ \(rawLength)") }
            output.removeAll(keepingCapacity: true)
            output.append(contentsOf: stored)
        case .zlib:
            do { try inflater.inflate(stored, rawLength: rawLength, into: &output) } catch {
                throw BlobError.corrupt(shown, reason: "\(error)")
            }
        case .delta:
            guard stored.count > 32 else { throw BlobError.corrupt(shown, reason: "delta blob of \(stored.count) bytes has no program") }
            guard let base else { throw BlobError.corrupt(shown, reason: "\(DeltaError.noBase)") }
            let baseID = ID(bytes: stored.baseAddress!)
            let baseBytes: [UInt8]
            do { baseBytes = try base(baseID) } catch {
                throw BlobError.baseUnreadable(shown, base: baseID, underlying: error)
            }
            do {
                try baseBytes.withUnsafeBytes {
                    try DeltaCodec.apply(program: UnsafeRawBufferPointer(rebasing: stored[32...]), base: $0, rawLength: rawLength, into: &output)
                }
            } catch {
                throw BlobError.corrupt(shown, reason: "\(error)")
            }
        }
        guard let id else { return }
        let actual = output.withUnsafeBytes { SHA256Hasher.hash($0) }
        guard actual == id else { throw BlobError.corrupt(id, reason: "content hashes to \(actual.short)") }
    }

    /// The base id a delta blob's stored bytes name.
    public static func deltaBase(stored: UnsafeRawBufferPointer) -> BlobID? {
        stored.count > 32 ? ID(bytes: stored.baseAddress!) : nil
    }
}

public enum BlobError: Error, CustomStringConvertible {
    case corrupt(BlobID, reason: String)
    case notInIndex(BlobID)
    case inPack(BlobID, pack: PackID, offset: UInt32, underlying: Error)
    case baseUnreadable(BlobID, base: BlobID, underlying: Error)

    public var description: String {
        switch self {
        case .corrupt(let id, let reason): return "blob \(id) is corrupt (\(reason))"
        case .notInIndex(let id): return "blob \(id) is not in the index: the repository is missing data; run `accord check`"
        case .inPack(let id, let pack, let offset, let e): return "blob \(id) in pack \(pack) at offset \(offset): \(e); run `accord check --read-data`"
        case .baseUnreadable(let id, let base, let e): return "blob \(id.short) is stored as a delta on blob \(base.short), which cannot be read (\(e))"
        }
    }
}
