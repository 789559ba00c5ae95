import CZlib
import CLibdeflate
import CIsal

/// How a blob's bytes are stored in a pack (FORMAT.md, "Blob types and compression").
public enum BlobCompression: UInt8, Sendable {
    /// Stored as is: level 0, a blob under 64 bytes, or deflate would not save 1/64 of it.
    case none = 0
    /// zlib format (RFC 1950): 2-byte header, deflate stream, Adler-32.
    case zlib = 1
    /// The id of a base blob, then a program of copies from the base and
    /// inserted bytes (`DeltaCodec`). Format version 2 and later.
    case delta = 2
}

/// Compression settings of a repository: the zlib level, 1 (fast) ... 9 (small).
/// Levels 1 and 2 are igzip's levels 1 and 2, levels 3-9 libdeflate's (`Deflater`).
public struct CompressionLevel: Sendable, Equatable {
    public var level: Int32
    public init(_ level: Int32) { self.level = Swift.max(0, Swift.min(9, level)) }
    public static let fast = CompressionLevel(1)
    /// Chosen by measurement (Benchmarks/README.md): igzip level 1 deflates
    /// the benchmark corpus ~2.5x as fast as libdeflate level 1 did, for ~2%
    /// more stored bytes (~4% more than level 3).
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
/// Levels 1 and 2 use igzip (Intel ISA-L), levels 3-9 libdeflate. Both write
/// the zlib format (RFC 1950), which any zlib inflates; igzip's fast levels
/// are ~2.5x as fast as libdeflate level 1, which in turn is 1.5-2.5x as fast
/// as zlib. Should igzip fail on a blob, libdeflate compresses that blob; where
/// ISA-L is not installed (`IsalLibrary`), libdeflate compresses every blob.
public final class Deflater {
    /// Which library writes the zlib streams.
    public enum Engine: Sendable {
        /// igzip for levels 1-2, libdeflate for 3-9: what backups use.
        case automatic
        /// libdeflate at every level (Accord's compressor before igzip), for comparisons.
        case libdeflate
        /// igzip at every level; above its highest, 3, it compresses at 3.
        /// Every engine is libdeflate where ISA-L is not loaded.
        case igzip
    }

    public let level: Int32
    public let engine: Engine
    /// igzip, for the probe (all engines but `.libdeflate`) and for the blobs when `igzipLevel` is set.
    private let igzip: IgzipZlib?
    /// The igzip level the blobs get; nil: libdeflate compresses them.
    private let igzipLevel: UInt32?
    /// libdeflate at `level`, and at level 1 for the probe: allocated on first use,
    /// which for the igzip levels is only when igzip fails.
    private var libdeflate: OpaquePointer?
    private var libdeflateProbe: OpaquePointer?
    /// How many times igzip failed and libdeflate took over (tests read it).
    private(set) var igzipFailures = 0
    /// Tests set an igzip level that does not exist, so that igzip fails for real.
    var igzipLevelForTesting: UInt32?

    public convenience init(level: CompressionLevel) {
        self.init(level: level, engine: .automatic)
    }

    public convenience init(level: CompressionLevel, engine: Engine) {
        self.init(level: level, engine: engine, isal: IsalLibrary.shared.library)
    }

    /// With `isal` nil (no ISA-L loaded; tests pass nil to force it) every
    /// engine is libdeflate at `level`.
    init(level: CompressionLevel, engine: Engine, isal: IsalLibrary?) {
        self.level = level.level
        self.engine = engine
        let l = level.level
        switch engine {
        case _ where isal == nil: igzipLevel = nil
        case .automatic: igzipLevel = (1 ... 2).contains(l) ? UInt32(l) : nil
        case .libdeflate: igzipLevel = nil
        case .igzip: igzipLevel = l == 0 ? nil : UInt32(Swift.min(3, l))
        }
        if let isal, l != 0, engine != .libdeflate {
            igzip = IgzipZlib(isal, maxLevel: igzipLevel ?? 1)
        } else {
            igzip = nil
        }
    }

    /// Whether igzip writes this compressor's blobs (tests read it).
    var usesIgzip: Bool { igzip != nil && igzipLevel != nil }

    deinit {
        if let c = libdeflate { libdeflate_free_compressor(c) }
        if let p = libdeflateProbe { libdeflate_free_compressor(p) }
    }

    /// Compresses `input` into `output` (replacing its contents). Returns
    /// `.none` (and leaves `output` empty) when compression would not save
    /// at least 1/64 of the size, the input is under 64 bytes, or the level is 0. A cheap probe of 8 KiB
    /// at level 1 skips incompressible data (random, already compressed)
    /// without deflating all of it.
    public func compress(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) -> BlobCompression {
        guard level > 0, input.count >= 64, input.count < 32 * 1024 || probeCompressible(input) else {
            output.removeAll(keepingCapacity: true)
            return .none
        }
        let limit = input.count - input.count / 64
        output.resizeForOverwrite(limit)
        let produced = output.withUnsafeMutableBytes { out in
            zlibCompress(input, level: igzipLevel, libdeflateLevel: level, into: out)
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
        let sampleSize = 8 * 1024
        let start = (input.count / 2) & ~63
        let n = Swift.min(sampleSize, input.count - start)
        let limit = n - n / 32
        let sample = UnsafeRawBufferPointer(rebasing: input[start ..< start + n])
        let produced = scratch.withUnsafeMutableBytes { out in
            zlibCompress(sample, level: igzip == nil ? nil : 1, libdeflateLevel: 1,
                         into: UnsafeMutableRawBufferPointer(rebasing: out[..<limit]))
        }
        return produced != 0
    }

    /// Writes `input` as a zlib stream into `out`, with igzip at `level` when
    /// that is set, else (or if igzip fails) with libdeflate at `libdeflateLevel`.
    /// Returns its length, or 0 if it does not fit in `out`.
    private func zlibCompress(_ input: UnsafeRawBufferPointer, level: UInt32?, libdeflateLevel: Int32,
                              into out: UnsafeMutableRawBufferPointer) -> Int {
        if let igzip, let level {
            switch igzip.compress(input, level: igzipLevelForTesting ?? level, into: out) {
            case .produced(let n): return n
            case .doesNotFit: return 0
            case .failed: igzipFailures += 1
            }
        }
        guard let c = libdeflateCompressor(level: libdeflateLevel) else { return 0 }
        return libdeflate_zlib_compress(c, input.baseAddress, input.count, out.baseAddress, out.count)
    }

    private func libdeflateCompressor(level: Int32) -> OpaquePointer? {
        if level == 1 && self.level != 1 {
            if libdeflateProbe == nil { libdeflateProbe = libdeflate_alloc_compressor(1) }
            return libdeflateProbe
        }
        if libdeflate == nil { libdeflate = libdeflate_alloc_compressor(self.level) }
        return libdeflate
    }
}

/// igzip (Intel ISA-L) writing the zlib format in one call. Its stream state
/// (~80 KiB) and level buffer (~300 KiB) are allocated once and reused. Calls
/// `IsalLibrary`'s function pointers, copied here: an indirect call per blob,
/// as the PLT's was when the library was linked.
final class IgzipZlib {
    enum Result {
        case produced(Int)
        /// The stream would be longer than the output buffer.
        case doesNotFit
        /// igzip's error code, or INVALID_PARAM for buffers igzip cannot take (empty, 4 GiB or more).
        case failed(Int32)
    }

    private let stream: UnsafeMutablePointer<isal_zstream>
    private let levelBuffer: UnsafeMutableRawPointer
    private let levelBufferSize: UInt32
    private let statelessInit: @convention(c) (UnsafeMutablePointer<isal_zstream>?) -> Void
    private let stateless: @convention(c) (UnsafeMutablePointer<isal_zstream>?) -> Int32

    /// Ready for the levels 0 through `maxLevel` (igzip has 0-3).
    init(_ isal: IsalLibrary, maxLevel: UInt32) {
        statelessInit = isal.statelessInit
        stateless = isal.stateless
        levelBufferSize = (0 ... maxLevel).map { accord_isal_level_buf_size($0) }.max() ?? 0
        levelBuffer = .allocate(byteCount: Swift.max(64, Int(levelBufferSize)), alignment: 64)
        let size = MemoryLayout<isal_zstream>.size
        let raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: Swift.max(64, MemoryLayout<isal_zstream>.alignment))
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        stream = raw.bindMemory(to: isal_zstream.self, capacity: 1)
    }

    deinit {
        UnsafeMutableRawPointer(stream).deallocate()
        levelBuffer.deallocate()
    }

    func compress(_ input: UnsafeRawBufferPointer, level: UInt32, into out: UnsafeMutableRawBufferPointer) -> Result {
        guard input.count < Int(UInt32.max), let inBase = input.baseAddress, let outBase = out.baseAddress else {
            return .failed(INVALID_PARAM)
        }
        statelessInit(stream)
        stream.pointee.level = level
        stream.pointee.level_buf = levelBuffer.assumingMemoryBound(to: UInt8.self)
        stream.pointee.level_buf_size = levelBufferSize
        stream.pointee.gzip_flag = UInt16(IGZIP_ZLIB)
        stream.pointee.flush = UInt16(NO_FLUSH)
        stream.pointee.end_of_stream = 1
        stream.pointee.next_in = UnsafeMutablePointer(mutating: inBase.assumingMemoryBound(to: UInt8.self))
        stream.pointee.avail_in = UInt32(input.count)
        stream.pointee.next_out = outBase.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_out = UInt32(clamping: out.count)
        switch stateless(stream) {
        case COMP_OK where stream.pointee.avail_in == 0 && stream.pointee.total_out > 0:
            return .produced(Int(stream.pointee.total_out))
        case COMP_OK:
            return .failed(ISAL_INVALID_STATE)
        case STATELESS_OVERFLOW:
            return .doesNotFit
        case let code:
            return .failed(code)
        }
    }
}

/// A reusable zlib-format decompressor (one per thread: not thread-safe), libdeflate.
public final class Inflater {
    private let decompressor: OpaquePointer?

    public init() { decompressor = libdeflate_alloc_decompressor() }
    deinit { if let d = decompressor { libdeflate_free_decompressor(d) } }

    /// Inflates a zlib stream that must produce exactly `rawLength` bytes.
    public func inflate(_ input: UnsafeRawBufferPointer, rawLength: Int, into output: inout [UInt8]) throws {
        output.resizeForOverwrite(rawLength)
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
