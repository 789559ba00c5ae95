import CZlib
import CLibdeflate

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
    /// Chosen by measurement (Benchmarks/): libdeflate level 1 keeps the
    /// repository within ~2% of level 3's size at ~1.4x the speed.
    public static let `default` = CompressionLevel(1)
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

/// A reusable zlib-format compressor (one per thread: not thread-safe).
///
/// Uses libdeflate, which writes the same zlib format (RFC 1950) 1.5-2.5x
/// faster than zlib at the same level; any zlib inflates it.
public final class Deflater {
    private let compressor: OpaquePointer?
    private let probe: OpaquePointer?
    public let level: Int32

    public init(level: CompressionLevel) {
        self.level = level.level
        compressor = libdeflate_alloc_compressor(Swift.max(1, self.level))
        probe = libdeflate_alloc_compressor(1)
    }

    deinit {
        if let c = compressor { libdeflate_free_compressor(c) }
        if let p = probe { libdeflate_free_compressor(p) }
    }

    /// Compresses `input` into `output` (replacing its contents). Returns
    /// `.none` (and leaves `output` empty) when compression would not save
    /// at least 1/64 of the size, or the level is 0. A cheap probe of 8 KiB
    /// at level 1 skips incompressible data (random, already compressed)
    /// without deflating all of it.
    public func compress(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) -> BlobCompression {
        output.removeAll(keepingCapacity: true)
        guard level > 0, input.count >= 64, let c = compressor else { return .none }
        if input.count >= 32 * 1024 && !probeCompressible(input) { return .none }
        let limit = input.count - input.count / 64
        output.append(contentsOf: repeatElement(0, count: limit))
        let produced = output.withUnsafeMutableBytes { out in
            libdeflate_zlib_compress(c, input.baseAddress, input.count, out.baseAddress, limit)
        }
        if produced == 0 {   // did not fit in `limit`: not worth it
            output.removeAll(keepingCapacity: true)
            return .none
        }
        output.removeLast(limit - produced)
        return .zlib
    }

    private var scratch = [UInt8](repeating: 0, count: 8 * 1024)

    private func probeCompressible(_ input: UnsafeRawBufferPointer) -> Bool {
        guard let p = probe else { return true }
        let sampleSize = 8 * 1024
        let start = (input.count / 2) & ~63
        let n = Swift.min(sampleSize, input.count - start)
        let limit = n - n / 32
        let produced = scratch.withUnsafeMutableBytes { out in
            libdeflate_zlib_compress(p, input.baseAddress! + start, n, out.baseAddress, limit)
        }
        return produced != 0
    }
}

/// A reusable zlib-format decompressor (one per thread: not thread-safe), libdeflate.
public final class Inflater {
    private let decompressor: OpaquePointer?

    public init() { decompressor = libdeflate_alloc_decompressor() }
    deinit { if let d = decompressor { libdeflate_free_decompressor(d) } }

    /// Inflates a zlib stream that must produce exactly `rawLength` bytes.
    public func inflate(_ input: UnsafeRawBufferPointer, rawLength: Int, into output: inout [UInt8]) throws {
        output.removeAll(keepingCapacity: true)
        output.append(contentsOf: repeatElement(0, count: rawLength))
        var actual = 0
        let r = output.withUnsafeMutableBytes { out in
            libdeflate_zlib_decompress(decompressor, input.baseAddress, input.count, out.baseAddress, rawLength, &actual)
        }
        switch r {
        case LIBDEFLATE_SUCCESS:
            if actual != rawLength { throw CompressionError.lengthMismatch(expected: rawLength, got: actual) }
        case LIBDEFLATE_INSUFFICIENT_SPACE:
            throw CompressionError.lengthMismatch(expected: rawLength, got: rawLength + 1)
        default:
            throw CompressionError.inflateFailed(code: Int32(r.rawValue))
        }
    }
}

/// Inflates with zlib itself: a cross-check that stored blobs are plain zlib format.
public func zlibInflate(_ input: [UInt8], rawLength: Int) -> [UInt8]? {
    var out = [UInt8](repeating: 0, count: rawLength)
    var len = uLongf(rawLength)
    let r = out.withUnsafeMutableBytes { o in
        input.withUnsafeBytes { i in
            uncompress(o.baseAddress!.assumingMemoryBound(to: Bytef.self), &len, i.baseAddress!.assumingMemoryBound(to: Bytef.self), uLong(input.count))
        }
    }
    return r == Z_OK && Int(len) == rawLength ? out : nil
}
