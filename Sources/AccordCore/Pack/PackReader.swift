import AccordRuntime
/// Reads headers and delta bases from pack bytes. The bytes come through a
/// reader (`Repository` passes its backend's ranged read), so nothing here
/// opens a file.
public enum PackReader {
    /// Reads up to `buffer.count` bytes at an offset of one pack; returns how many.
    public typealias RangeReader = (_ offset: Int64, _ buffer: UnsafeMutableRawBufferPointer) throws -> Int

    /// Reads and decodes the header at the end of a pack of `size` bytes.
    /// `sealOverhead`: bytes a stored blob carries beyond its version 2 form
    /// (28 in an encrypted repository: a raw blob's stored length is then RawLength + 28).
    public static func readHeader(size: Int, sealOverhead: Int = 0, read: RangeReader) throws -> [PackEntry] {
        guard size >= PackFormat.trailerSize + 8 else { throw PackError.truncatedPack(size: size) }
        var trailer = [UInt8](repeating: 0, count: PackFormat.trailerSize)
        let n = try trailer.withUnsafeMutableBytes { try read(Int64(size - PackFormat.trailerSize), $0) }
        guard n == PackFormat.trailerSize else { throw PackError.truncatedPack(size: size) }
        let headerLength = try trailer.withUnsafeBytes { try PackFormat.decodeTrailer($0, packSize: size) }
        var header = [UInt8](repeating: 0, count: headerLength)
        let start = size - PackFormat.trailerSize - headerLength
        let m = try header.withUnsafeMutableBytes { try read(Int64(start), $0) }
        guard m == headerLength else { throw PackError.truncatedPack(size: size) }
        return try header.withUnsafeBytes { try PackFormat.decodeHeader($0, packSize: size, sealOverhead: sealOverhead) }
    }

    /// Decodes the header of a pack read whole (check's `--read-data`).
    public static func decodeHeader(whole buf: UnsafeRawBufferPointer, sealOverhead: Int = 0) throws -> [PackEntry] {
        guard buf.count >= PackFormat.trailerSize + 8 else { throw PackError.truncatedPack(size: buf.count) }
        let hl = try PackFormat.decodeTrailer(UnsafeRawBufferPointer(rebasing: buf[(buf.count - PackFormat.trailerSize)...]), packSize: buf.count)
        return try PackFormat.decodeHeader(UnsafeRawBufferPointer(rebasing: buf[(buf.count - PackFormat.trailerSize - hl)..<(buf.count - PackFormat.trailerSize)]), packSize: buf.count, sealOverhead: sealOverhead)
    }

    /// The base id a delta blob names: the first 32 of its stored bytes, read
    /// at `offset`. Nil if the pack ends before them.
    public static func readDeltaBase(offset: UInt32, read: RangeReader) throws -> BlobID? {
        var idBytes = [UInt8](repeating: 0, count: 32)
        let n = try idBytes.withUnsafeMutableBytes { try read(Int64(offset), $0) }
        return n == 32 ? idBytes.withUnsafeBytes { BlobID(bytes: $0.baseAddress!) } : nil
    }

    /// The header of a loose pack file (tests and tools; a repository's packs
    /// are read through `Repository.readPackHeader`, over its backend).
    public static func readHeader(path: String) throws -> [PackEntry] {
        let fd = try Sys.open(path, Sys.O_RDONLY)
        defer { Sys.close(fd) }
        let st = try Sys.fstat(fd, path: path)
        return try readHeader(size: Int(st.size)) { try Sys.preadFully(fd, $1.baseAddress!, $1.count, $0, path: path) }
    }
}
