// Micro-benchmarks of AccordCore: how fast one core chunks, hashes, compresses,
// writes packs and finds blobs, over 64 MiB of fixed-seed input of two kinds
// (random bytes, SQL INSERT lines). Each benchmark records its rate from its
// own clock as a custom metric (MB/s = 10^6 input bytes a second, or ops/s);
// README.md has the command and what each number means.
import AccordCore
import Benchmark
import Foundation

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, Rate.megabytes],
        units: Dictionary(uniqueKeysWithValues: Rate.all.map { ($0, BenchmarkUnits.count) }),
        warmupIterations: 1,
        maxDuration: .seconds(2),
        maxIterations: 20
    )
    chunkingBenchmarks()
    hashingBenchmarks()
    compressionBenchmarks()
    packBenchmarks()
    indexBenchmarks()
}

// MARK: - Chunking

func chunkingBenchmarks() {
    for kind in DataKind.allCases {
        for profile in [ChunkerProfile.tree, .dump] {
            // The bare state machine over one buffer: the rolling hash and nothing else.
            Benchmark("chunk nextBoundary \(profile.name) \(kind)") { (benchmark, data: [UInt8]) in
                let chunks = benchmark.record(Rate.megabytes, units: data.count) {
                    data.withUnsafeBufferPointer { buf in
                        var cdc = FastCDC(profile: profile, gear: TestData.gear)
                        var position = 0, count = 0
                        while position < buf.count {
                            position += cdc.nextBoundary(buf.baseAddress! + position, count: buf.count - position, eof: true)!
                            count += 1
                        }
                        return count
                    }
                }
                blackHole(chunks)
            } setup: {
                let data = kind.bytes
                let count = FastCDC.chunkLengths(data, profile: profile, gear: TestData.gear).count
                note("chunk \(profile.name) \(kind): \(count) chunks, mean \(data.count / count) bytes")
                return data
            }

            // What backup runs: reads into the stream's buffer, compacts, hands out chunks.
            Benchmark("chunk ChunkStream \(profile.name) \(kind)") { (benchmark, state: ([UInt8], ChunkStream)) in
                let (data, stream) = state
                let chunks = benchmark.record(Rate.megabytes, units: data.count) {
                    data.withUnsafeBytes { bytes in
                        var source = MemorySource(bytes)
                        var count = 0
                        try! stream.forEachChunk(from: &source) { chunk in
                            count += 1
                            blackHole(chunk)
                        }
                        return count
                    }
                }
                blackHole(chunks)
            } setup: {
                (kind.bytes, ChunkStream(profile: profile, gear: TestData.gear))
            }
        }
    }
}

// MARK: - Hashing

func hashingBenchmarks() {
    for size in [8 << 10, 1 << 20] {
        Benchmark("sha256 \(size >> 10) KiB") { (benchmark, data: [UInt8]) in
            var last = ID.zero
            benchmark.record(Rate.megabytes, units: data.count) {
                data.withUnsafeBytes { bytes in
                    var offset = 0
                    while offset < bytes.count {
                        last = SHA256Hasher.hash(UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + size]))
                        offset += size
                    }
                }
            }
            blackHole(last)
        } setup: {
            TestData.random
        }
    }
}

// MARK: - Compression

/// Blocks compressed one at a time, as the backup engine compresses chunks:
/// 1 MiB (about a `tree` chunk) and 8 KiB (about a `dump` chunk). Each case
/// names its library: `Deflater` uses igzip for levels 1-2 and libdeflate
/// for 3-9; libdeflate L1 is the default before igzip, for comparison.
struct CompressionCase {
    var engine: Deflater.Engine
    var level: Int32
    var block: Int
    var name: String { "\(engine) L\(level) \(block >> 10)K-blocks" }
    func deflater() -> Deflater { Deflater(level: CompressionLevel(level), engine: engine) }
}

let compressionCases: [CompressionCase] = [
    .init(engine: .igzip, level: 1, block: 1 << 20), .init(engine: .igzip, level: 2, block: 1 << 20),
    .init(engine: .libdeflate, level: 1, block: 1 << 20), .init(engine: .libdeflate, level: 3, block: 1 << 20),
    .init(engine: .libdeflate, level: 6, block: 1 << 20), .init(engine: .libdeflate, level: 9, block: 1 << 20),
    .init(engine: .igzip, level: 1, block: 8 << 10), .init(engine: .libdeflate, level: 1, block: 8 << 10),
    .init(engine: .libdeflate, level: 3, block: 8 << 10),
]

func compressionBenchmarks() {
    let withRatio = Benchmark.Configuration(metrics: [.wallClock, Rate.megabytes, Rate.ratio])
    for kind in DataKind.allCases {
        for c in compressionCases {
            Benchmark("deflate \(c.name) \(kind)", configuration: withRatio) { (benchmark, state: ([UInt8], Deflater)) in
                let (data, deflater) = state
                var output: [UInt8] = []
                let stored = benchmark.record(Rate.megabytes, units: data.count) {
                    deflateAll(data, block: c.block, deflater: deflater, output: &output)
                }
                benchmark.measurement(Rate.ratio, data.count * 100 / stored)
            } setup: {
                let data = kind.bytes
                let deflater = c.deflater()
                var output: [UInt8] = []
                let stored = deflateAll(data, block: c.block, deflater: deflater, output: &output)
                note("deflate \(c.name) \(kind): \(data.count) -> \(stored) bytes, ratio \(String(format: "%.2f", Double(data.count) / Double(stored)))")
                return (data, deflater)
            }
        }
    }

    // Only SQL: Deflater stores random blocks as they are, leaving nothing to inflate.
    // Inflater is libdeflate whichever library compressed.
    for c in compressionCases {
        Benchmark("inflate \(c.name) sql") { (benchmark, blobs: [StoredBlock]) in
            let inflater = Inflater()
            var output: [UInt8] = []
            benchmark.record(Rate.megabytes, units: TestData.size) {
                for blob in blobs {
                    blob.stored.withUnsafeBytes { try! inflater.inflate($0, rawLength: blob.rawLength, into: &output) }
                }
            }
            blackHole(output)
        } setup: {
            compressedBlocks(TestData.sql, deflater: c.deflater(), block: c.block)
        }
    }

    // zlib itself (the cross-check path), for comparison with libdeflate above.
    Benchmark("inflate zlib L6 1024K-blocks sql") { (benchmark, blobs: [StoredBlock]) in
        benchmark.record(Rate.megabytes, units: TestData.size) {
            for blob in blobs { blackHole(zlibInflate(blob.stored, rawLength: blob.rawLength)!) }
        }
    } setup: {
        compressedBlocks(TestData.sql, deflater: Deflater(level: CompressionLevel(6)), block: 1 << 20)
    }
}

/// Compresses `data` block by block; returns the bytes stored (compressed, or raw where that was not smaller).
func deflateAll(_ data: [UInt8], block: Int, deflater: Deflater, output: inout [UInt8]) -> Int {
    data.withUnsafeBytes { bytes in
        var stored = 0, offset = 0
        while offset < bytes.count {
            let end = Swift.min(offset + block, bytes.count)
            let compression = deflater.compress(UnsafeRawBufferPointer(rebasing: bytes[offset ..< end]), into: &output)
            stored += compression == .none ? end - offset : output.count
            offset = end
        }
        return stored
    }
}

typealias StoredBlock = (stored: [UInt8], rawLength: Int)

func compressedBlocks(_ data: [UInt8], deflater: Deflater, block: Int) -> [StoredBlock] {
    var output: [UInt8] = []
    return stride(from: 0, to: data.count, by: block).map { offset in
        let end = Swift.min(offset + block, data.count)
        let compression = data.withUnsafeBytes { deflater.compress(UnsafeRawBufferPointer(rebasing: $0[offset ..< end]), into: &output) }
        precondition(compression == .zlib, "SQL block at \(offset) did not compress")
        return (output, end - offset)
    }
}

// MARK: - Packs

func packBenchmarks() {
    // 64 MiB of SQL cut by each profile, stored raw, into 16 MiB packs (the
    // repository default): write + SHA-256 of the pack + header + fsync + rename.
    for profile in [ChunkerProfile.dump, .tree] {
        let scratch = Box<ScratchRepository>()
        Benchmark("pack write \(profile.name)-chunks 16MiB-packs") { (benchmark, chunks: [(Range<Int>, BlobID)]) in
            let data = TestData.sql
            let layout = scratch.value!.layout
            benchmark.startMeasurement()
            try! benchmark.record(Rate.megabytes, units: data.count) {
                try data.withUnsafeBytes { bytes in
                    var writer: PackWriter?
                    for (range, id) in chunks {
                        if writer == nil { writer = try PackWriter(layout: layout) }
                        try writer!.add(id: id, type: .data, compression: .none, rawLength: range.count,
                                        stored: UnsafeRawBufferPointer(rebasing: bytes[range]))
                        if writer!.size >= 16 << 20 { blackHole(try writer!.finish()); writer = nil }
                    }
                    if let w = writer { blackHole(try w.finish()) }
                }
            }
            benchmark.stopMeasurement()
            try! scratch.value!.clearPacks()
        } setup: {
            scratch.value = try ScratchRepository()
            let data = TestData.sql
            let chunks = chunkRanges(data, profile: profile).map { range in
                (range, data.withUnsafeBytes { SHA256Hasher.hash(UnsafeRawBufferPointer(rebasing: $0[range])) })
            }
            note("pack write \(profile.name): \(chunks.count) blobs in \(data.count) bytes")
            return chunks
        } teardown: {
            scratch.value?.remove()
        }
    }

    // Reading and checking one 16 MiB pack's header (1,578 entries of `dump` chunks of SQL).
    let scratch = Box<ScratchRepository>()
    let reads = 200
    Benchmark("pack header read dump-chunks x\(reads)", configuration: .init(metrics: [.wallClock, Rate.operations])) { (benchmark, path: String) in
        let entries = benchmark.record(Rate.operations, units: reads) {
            var total = 0
            for _ in 0 ..< reads { total += try! PackReader.readHeader(path: path).count }
            return total
        }
        blackHole(entries)
    } setup: {
        let repo = try ScratchRepository()
        scratch.value = repo
        let data = Array(TestData.sql[0 ..< 16 << 20])
        let writer = try PackWriter(layout: repo.layout)
        try data.withUnsafeBytes { bytes in
            for range in chunkRanges(data, profile: .dump) {
                let slice = UnsafeRawBufferPointer(rebasing: bytes[range])
                try writer.add(id: SHA256Hasher.hash(slice), type: .data, compression: .none, rawLength: range.count, stored: slice)
            }
        }
        let id = try writer.finish()
        note("pack header read: \(writer.entries.count) entries, header \(writer.entries.count * PackFormat.entrySize + 8) bytes")
        return repo.layout.packPath(id)
    } teardown: {
        scratch.value?.remove()
    }
}

/// Somewhere for a setup closure to leave what its teardown needs.
final class Box<T> {
    var value: T?
}

// MARK: - Index

/// One million random blob ids in 500 packs of 2,000 (the count a backup of
/// about 16 GB of `dump` chunks makes), and a million ids that are in no pack.
struct IndexInput {
    static let blobCount = 1_000_000
    static let perPack = 2_000

    var packs: [(id: PackID, entries: [PackEntry])] = []
    var present: [ID] = []
    var absent: [ID] = []

    init() {
        var rng = SplitMix64(seed: TestData.seed)
        present.reserveCapacity(Self.blobCount)
        absent.reserveCapacity(Self.blobCount)
        for _ in 0 ..< Self.blobCount / Self.perPack {
            var offset: UInt32 = 0
            let entries = (0 ..< Self.perPack).map { _ -> PackEntry in
                let id = rng.nextID()
                present.append(id)
                let length = UInt32(2048 + rng.next() % 14336)
                defer { offset += length }
                return PackEntry(id: id, type: .data, compression: .zlib, rawLength: length * 3, storedLength: length, offset: offset)
            }
            packs.append((rng.nextID(), entries))
        }
        for _ in 0 ..< Self.blobCount { absent.append(rng.nextID()) }
        // Look up in an order unrelated to insertion.
        var shuffler = SplitMix64(seed: TestData.seed + 1)
        present.shuffle(using: &shuffler)
    }

    /// As backup and `loadIndex` add: a pack at a time (the index sorts
    /// itself again each time 65,536 new entries have gathered), then `seal()`.
    func build() -> MasterIndex {
        let index = MasterIndex()
        for p in packs { index.add(pack: p.id, entries: p.entries) }
        index.seal()
        return index
    }

    /// All entries in one `add` (under one pack id), so one sort at `seal()`:
    /// what `build()` costs beyond a single sort.
    func buildInOneCall() -> MasterIndex {
        let index = MasterIndex()
        index.add(pack: packs[0].id, entries: packs.flatMap(\.entries))
        index.seal()
        return index
    }
}

extension SplitMix64: RandomNumberGenerator {}

func indexBenchmarks() {
    let perOp = Benchmark.Configuration(metrics: [.wallClock, Rate.operations, Rate.bytesPerBlob],
                                        warmupIterations: 1, maxDuration: .seconds(3), maxIterations: 10)
    Benchmark("index insert 1M + seal", configuration: perOp) { (benchmark, input: IndexInput) in
        let before = residentBytes()
        let index = benchmark.record(Rate.operations, units: IndexInput.blobCount) { input.build() }
        benchmark.measurement(Rate.bytesPerBlob, (residentBytes() - before) / IndexInput.blobCount)
        precondition(index.blobCount == IndexInput.blobCount)
        blackHole(index)
    } setup: {
        let input = IndexInput()
        let record = MemoryLayout<ID>.stride + MemoryLayout<BlobLocation>.stride
        note("index: record \(record) bytes/blob + a bucket table of at most 262 KB (~32 blobs a slot); 1M blobs ≈ \(record * IndexInput.blobCount / 1_000_000) MB")
        return input
    }

    Benchmark("index insert 1M in one add + seal", configuration: perOp) { (benchmark, input: IndexInput) in
        let index = benchmark.record(Rate.operations, units: IndexInput.blobCount) { input.buildInOneCall() }
        precondition(index.blobCount == IndexInput.blobCount)
        blackHole(index)
    } setup: {
        IndexInput()
    }

    let lookups = Benchmark.Configuration(metrics: [.wallClock, Rate.operations], warmupIterations: 1,
                                          maxDuration: .seconds(3), maxIterations: 20)
    Benchmark("index lookup 1M hits", configuration: lookups) { (benchmark, state: (MasterIndex, IndexInput)) in
        let (index, input) = state
        let found = benchmark.record(Rate.operations, units: input.present.count) {
            input.present.reduce(0) { $0 + (index.lookup($1) == nil ? 0 : 1) }
        }
        precondition(found == input.present.count)
    } setup: {
        let input = IndexInput()
        return (input.build(), input)
    }

    Benchmark("index lookup 1M misses", configuration: lookups) { (benchmark, state: (MasterIndex, IndexInput)) in
        let (index, input) = state
        let found = benchmark.record(Rate.operations, units: input.absent.count) {
            input.absent.reduce(0) { $0 + (index.lookup($1) == nil ? 0 : 1) }
        }
        precondition(found == 0)
    } setup: {
        let input = IndexInput()
        return (input.build(), input)
    }
}
