import CZlib

/// How a blob's bytes are stored in a pack (FORMAT.md, "Blob compression").
public enum BlobCompression: UInt8, Sendable {
    /// Stored as is: deflate did not make it smaller.
    case none = 0
    /// zlib format (RFC 1950): 2-byte header, deflate stream, Adler-32.
    case zlib = 1
}

/// Compression settings of a repository: the zlib level, 1 (fast) ... 9 (small).
public struct CompressionLevel: Sendable, Equatable {
    public var level: Int32
    public init(_ level: Int32) { self.level = Swift.max(0, Swift.min(9, level)) }
    public static let fast = CompressionLevel(1)
    public static let `default` = CompressionLevel(3)
    public static let max = CompressionLevel(9)

    /// Parses `off`, `fast`, `default`, `max` or a level 0-9.
    public init?(name: String) {
        switch name {
        case "off", "none": self.init(0)
        case "fast": self = .fast
        case "default", "auto": self = .default
        case "max", "best": self = .max
        default:
            guard let n = Int32(name), (0...9).contains(n) else { return nil }
            self.init(n)
        }
    }
}

public enum CompressionError: Error, CustomStringConvertible {
    case inflateFailed(code: Int32)
    case lengthMismatch(expected: Int, got: Int)

    public var description: String {
        switch self {
        case .inflateFailed(let code): return "zlib inflate failed (code \(code)): stored data is corrupt"
        case .lengthMismatch(let e, let g): return "inflated \(g) bytes, expected \(e): stored data is corrupt"
        }
    }
}

/// A reusable zlib compressor (one per thread: not thread-safe).
public final class Deflater {
    private var stream = z_stream()
    public let level: Int32

    public init(level: CompressionLevel) {
        self.level = level.level
        deflateInit_(&stream, Swift.max(1, self.level), ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
    }

    deinit { deflateEnd(&stream) }

    /// Compresses `input` into `output` (replacing its contents). Returns
    /// `.none` (and leaves `output` empty) when compression would not save
    /// at least 1/64 of the size, or the level is 0. A cheap probe of 8 KiB
    /// at level 1 skips incompressible data (random, already compressed)
    /// without deflating all of it.
    public func compress(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) -> BlobCompression {
        output.removeAll(keepingCapacity: true)
        if level == 0 || input.count < 64 { return .none }
        if input.count >= 32 * 1024 && !probeCompressible(input) { return .none }
        let limit = input.count - input.count / 64
        let bound = Int(deflateBound(&stream, uLong(input.count)))
        if output.capacity < bound { output.reserveCapacity(bound) }
        deflateReset(&stream)
        deflateParams(&stream, level, Z_DEFAULT_STRATEGY)
        var produced = 0
        var result: Int32 = Z_OK
        output.append(contentsOf: repeatElement(0, count: bound))
        output.withUnsafeMutableBytes { out in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(input.count)
            stream.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(bound)
            result = deflate(&stream, Z_FINISH)
            produced = bound - Int(stream.avail_out)
        }
        if result != Z_STREAM_END || produced >= limit {
            output.removeAll(keepingCapacity: true)
            return .none
        }
        output.removeLast(bound - produced)
        return .zlib
    }

    private func probeCompressible(_ input: UnsafeRawBufferPointer) -> Bool {
        let sampleSize = 8 * 1024
        let start = (input.count / 2) & ~63
        let sample = UnsafeRawBufferPointer(rebasing: input[start..<min(input.count, start + sampleSize)])
        var scratch = [UInt8](repeating: 0, count: sampleSize + 1024)
        var destLen = uLongf(scratch.count)
        let r = scratch.withUnsafeMutableBytes { out in
            compress2(out.baseAddress!.assumingMemoryBound(to: Bytef.self), &destLen,
                      sample.baseAddress!.assumingMemoryBound(to: Bytef.self), uLong(sample.count), 1)
        }
        if r != Z_OK { return true }
        return Int(destLen) < sample.count - sample.count / 32
    }
}

/// A reusable zlib decompressor (one per thread: not thread-safe).
public final class Inflater {
    private var stream = z_stream()

    public init() {
        inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
    }

    deinit { inflateEnd(&stream) }

    /// Inflates a zlib stream that must produce exactly `rawLength` bytes.
    public func inflate(_ input: UnsafeRawBufferPointer, rawLength: Int, into output: inout [UInt8]) throws {
        output.removeAll(keepingCapacity: true)
        output.append(contentsOf: repeatElement(0, count: rawLength))
        inflateReset(&stream)
        var result: Int32 = Z_OK
        var produced = 0
        output.withUnsafeMutableBytes { out in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(input.count)
            stream.next_out = out.baseAddress?.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(rawLength)
            result = CZlib.inflate(&stream, Z_FINISH)
            produced = rawLength - Int(stream.avail_out)
        }
        if result != Z_STREAM_END {
            // Z_BUF_ERROR here means the stream wants more room than rawLength.
            throw result == Z_BUF_ERROR && produced == rawLength
                ? CompressionError.lengthMismatch(expected: rawLength, got: rawLength + 1)
                : CompressionError.inflateFailed(code: result)
        }
        if produced != rawLength { throw CompressionError.lengthMismatch(expected: rawLength, got: produced) }
    }
}
