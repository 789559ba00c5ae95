import AccordCore
import Benchmark
import Foundation

/// Rates computed from our own clock around the measured work, in exact units.
/// (`.throughput` is iterations per second rounded to an integer, too coarse
/// for iterations of 50 ms to 3 s over 64 MiB.)
enum Rate {
    /// Input bytes per second / 10^6.
    static let megabytes = BenchmarkMetric.custom("MB/s", polarity: .prefersLarger, useScalingFactor: false)
    /// Operations (lookups, inserts, header reads) per second.
    static let operations = BenchmarkMetric.custom("ops/s", polarity: .prefersLarger, useScalingFactor: false)
    /// Uncompressed / stored size × 100 (compression benchmarks).
    static let ratio = BenchmarkMetric.custom("ratio x100", polarity: .prefersLarger, useScalingFactor: false)
    /// Resident memory added per blob (index insert benchmark).
    static let bytesPerBlob = BenchmarkMetric.custom("RSS bytes/blob", polarity: .prefersSmaller, useScalingFactor: false)

    static let all = [megabytes, operations, ratio, bytesPerBlob]
}

extension Benchmark {
    /// Runs `body` once, timed, and records `units` per second of it as `metric`
    /// (MB/s when `units` are bytes: the divisor is 10^6).
    func record<R>(_ metric: BenchmarkMetric, units: Int, _ body: () throws -> R) rethrows -> R {
        let clock = ContinuousClock()
        let start = clock.now
        let result = try body()
        let elapsed = clock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let perSecond = Double(units) / Swift.max(seconds, 1e-9)
        measurement(metric, Int((metric == Rate.megabytes ? perSecond / 1e6 : perSecond).rounded()))
        return result
    }
}

/// Writes a line to standard error: the tool's tables go to standard output.
func note(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Resident set size of this process (Linux: /proc/self/statm), 0 where unknown.
func residentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = s.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// A `ByteSource` over bytes in memory: what a file read costs minus the syscall.
struct MemorySource: ByteSource {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = Swift.min(buffer.count, bytes.count - position)
        if n > 0 { buffer.baseAddress!.copyMemory(from: bytes.baseAddress! + position, byteCount: n) }
        position += n
        return n
    }
}

/// A throwaway directory laid out as a repository's `tmp/` and `data/`: all
/// that `PackWriter` touches.
final class ScratchRepository {
    let layout: RepositoryLayout

    init() throws {
        let root = FileManager.default.temporaryDirectory
            .appendingPathComponent("accord-micro-\(getpid())-\(UInt32.random(in: 0 ... .max))").path
        layout = RepositoryLayout(root: root)
        try FileManager.default.createDirectory(atPath: layout.tmpDirectory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: layout.dataDirectory, withIntermediateDirectories: true)
    }

    /// Deletes every pack written so far.
    func clearPacks() throws {
        try FileManager.default.removeItem(atPath: layout.dataDirectory)
        try FileManager.default.createDirectory(atPath: layout.dataDirectory, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: layout.root) }
}

/// Chunk boundaries of `data` under `profile`, as (offset, length).
func chunkRanges(_ data: [UInt8], profile: ChunkerProfile) -> [Range<Int>] {
    var ranges: [Range<Int>] = []
    var offset = 0
    for length in FastCDC.chunkLengths(data, profile: profile, gear: TestData.gear) {
        ranges.append(offset ..< offset + length)
        offset += length
    }
    return ranges
}
