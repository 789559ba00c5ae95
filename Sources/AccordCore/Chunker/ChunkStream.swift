import AccordRuntime
/// Something bytes can be read from: a file, a pipe, a socket.
public protocol ByteSource {
    /// Reads up to `buffer.count` bytes; 0 means end of input.
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// Reads a file descriptor (file or pipe) sequentially.
public struct FileDescriptorSource: ByteSource {
    public let fd: Int32
    public let path: String
    public init(fd: Int32, path: String) { self.fd = fd; self.path = path }
    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try Sys.read(fd, buffer.baseAddress!, buffer.count, path: path)
    }
}

/// Reads from a source and cuts it into content-defined chunks, holding at
/// most one buffer (≥ 2 × max chunk) in memory however long the input is.
public final class ChunkStream {
    private var chunker: FastCDC
    private let buffer: UnsafeMutableRawBufferPointer
    private var start = 0   // first byte of the current chunk
    private var end = 0     // end of valid bytes
    private var eof = false
    public private(set) var bytesRead: UInt64 = 0
    public let profile: ChunkerProfile
    static let readStep = 1 << 20

    public init(profile: ChunkerProfile, gear: GearTable, bufferSize: Int? = nil) {
        self.profile = profile
        chunker = FastCDC(profile: profile, gear: gear)
        let size = Swift.max(bufferSize ?? 0, profile.max + (1 << 20), 2 << 20)
        buffer = .allocate(byteCount: size, alignment: 64)
    }

    deinit { buffer.deallocate() }

    /// Calls `body` with each chunk in order. The buffer passed is valid only
    /// during the call.
    public func forEachChunk<S: ByteSource>(from source: inout S, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        start = 0; end = 0; eof = false
        chunker.reset()
        while true {
            let base = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
            if let len = chunker.nextBoundary(base + start, count: end - start, eof: eof) {
                if len == 0 { return }
                try body(UnsafeRawBufferPointer(start: buffer.baseAddress! + start, count: len))
                start += len
                if eof && start == end { return }
                continue
            }
            // Need more bytes: compact, then fill.
            if start > 0 {
                let pending = end - start
                if pending > 0 { (buffer.baseAddress!).copyMemory(from: buffer.baseAddress! + start, byteCount: pending) }
                start = 0
                end = pending
            }
            // Read 1 MiB at a time: the chunker usually finds a cut within it,
            // so only the pages a chunk needs are touched (RSS stays small).
            let want = Swift.min(buffer.count, end + ChunkStream.readStep)
            while end < want {
                let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[end..<want]))
                if n == 0 { eof = true; break }
                end += n
                bytesRead += UInt64(n)
            }
            if eof && end == 0 { return }
        }
    }
}
