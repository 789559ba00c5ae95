import Foundation
import AccordCore
import AccordRuntime

/// Stores new blobs for one backup: deduplicates against the index and the
/// blobs in flight, compresses on a pool of threads, and appends to packs.
///
/// Durability: a blob accepted by `store` is durable only after `finish()`
/// returns; then every pack is fsynced and renamed, and one index file
/// naming them all is written. A crash before that leaves complete packs
/// without an index (adopted by the next backup) and temporary files.
///
/// `@unchecked Sendable`: `inFlight`, the statistics, `finishedPacks` and
/// every look-up in `repository.index` are under `lock`, `assembler` is under
/// `packLock`; jobs cross in `queue`. `finish` reads `finishedPacks` after
/// joining the compressors.
public final class BlobSink: @unchecked Sendable {
    /// `base`: a blob the data probably resembles (the chunk it replaced in
    /// the parent snapshot's version of the file or stream); the compressor
    /// stores the data as a delta on it when that is smaller.
    /// `treeBase`: the base must be a tree blob no larger than a manifest
    /// piece (a manifest piece's base is another piece; whatever a hostile
    /// parent lists). `level`: deflate again at this level when the sink's
    /// level leaves the blob more than 1/8 of its size (`ChunkerProfile.level`).
    struct Job { var id: BlobID; var type: BlobType; var data: [UInt8]; var base: BlobID? = nil; var treeBase = false; var level: Int32? = nil }

    /// Small blobs of one thread, handed to the compressors together: one
    /// queue operation (and at most one wake-up) per ~256 KiB instead of per
    /// blob. Not thread-safe: one per thread; `flush` it before `finish`.
    public final class Batch {
        fileprivate var jobs: [Job] = []
        fileprivate var bytes = 0
        public init() {}
        static let maxBytes = 256 << 10
        static let maxBlob = 64 << 10
    }

    let repository: Repository
    let level: CompressionLevel
    /// Delta blobs are written only into repositories of format version 2 or later.
    let deltas: Bool
    private let lock = NSLock()
    private var inFlight = Set<BlobID>()
    private let queue: BoundedQueue<[Job]>
    private let workers = WorkerGroup()
    /// Guards `assembler` (compressors add to one open pack).
    private let packLock = NSLock()
    private let assembler: PackAssembler
    private var finishedPacks: [IndexFile.Pack] = []
    let failure = FirstError()

    /// Blobs read lately that a delta may use as its base without reading
    /// them again (the parent manifest's pieces, which the walk has just read).
    var recentBases: RecentBlobs?

    // Statistics (under `lock`).
    public private(set) var addedBlobs = 0
    public private(set) var addedBytes: UInt64 = 0
    public private(set) var addedTreeBytes: UInt64 = 0
    public private(set) var rawBytesAdded: UInt64 = 0
    /// New blobs stored as deltas on a base.
    public private(set) var deltaBlobs = 0

    deinit { queue.cancel() }

    public init(repository: Repository, threads: Int, level: CompressionLevel, queueBytes: Int = 8 << 20) {
        self.repository = repository
        assembler = repository.makePackAssembler()
        self.level = level
        deltas = repository.config.allowsDeltaBlobs && level.level > 0
        queue = BoundedQueue(capacity: queueBytes)
        // Strong capture: the threads end when the queue is closed or cancelled
        // (`finish`/`abandon`), and keep the sink alive until then.
        // One more than the cores: a thread waiting on a pack's fsync leaves the CPU to the others.
        workers.spawn(threads + 1, name: "compress") { _ in self.compressLoop() }
    }

    /// Is this blob already stored or on its way?
    public func isKnown(_ id: BlobID) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return inFlight.contains(id) || repository.index.contains(id)
    }

    /// Are all these blobs stored or on their way? (One lock for the lot.)
    public func areKnown(_ ids: [BlobID]) -> Bool {
        lock.lock(); defer { lock.unlock() }
        // The index first: an unchanged file's blobs are all there, and a miss
        // in the set of blobs in flight would hash every id for nothing.
        return ids.allSatisfy { repository.index.contains($0) || inFlight.contains($0) }
    }

    /// Stores a blob unless it is known. Returns true if it was new. Blocks
    /// while the compression queue is full; throws if the sink has failed.
    /// `base`, if given, is a blob this one may be stored as a delta on.
    @discardableResult
    public func store(_ id: BlobID, type: BlobType, data: UnsafeRawBufferPointer, base: BlobID? = nil, treeBase: Bool = false,
                      level: Int32? = nil) throws -> Bool {
        guard try claim(id) else { return false }
        if !queue.push([Job(id: id, type: type, data: Array(data), base: deltas ? base : nil, treeBase: treeBase, level: level)], cost: data.count) {
            throw failure.value ?? CancellationError()
        }
        return true
    }

    /// The raw lengths of these indexed blobs (one lock for the lot), or nil
    /// if one is not indexed.
    func rawLengths(_ ids: [BlobID]) -> [UInt32]? {
        lock.lock(); defer { lock.unlock() }
        var out: [UInt32] = []
        out.reserveCapacity(ids.count)
        for id in ids {
            guard let l = repository.index.lookup(id) else { return nil }
            out.append(l.rawLength)
        }
        return out
    }

    /// Marks `id` as on its way; false if it is stored or claimed already.
    private func claim(_ id: BlobID) throws -> Bool {
        if let e = failure.value { throw e }
        lock.lock(); defer { lock.unlock() }
        if inFlight.contains(id) || repository.index.contains(id) { return false }
        inFlight.insert(id)
        return true
    }

    /// As `store`, but a small blob waits in `batch` until it holds ~256 KiB.
    /// `base`, if given, is a blob this one may be stored as a delta on.
    @discardableResult
    public func store(_ id: BlobID, type: BlobType, data: UnsafeRawBufferPointer, batch: Batch, base: BlobID? = nil, level: Int32? = nil) throws -> Bool {
        if data.count >= Batch.maxBlob { return try store(id, type: type, data: data, base: base, level: level) }
        guard try claim(id) else { return false }
        batch.jobs.append(Job(id: id, type: type, data: Array(data), base: deltas ? base : nil, level: level))
        batch.bytes += data.count
        if batch.bytes >= Batch.maxBytes { try flush(batch) }
        return true
    }

    /// Hands a batch's blobs to the compressors.
    public func flush(_ batch: Batch) throws {
        guard !batch.jobs.isEmpty else { return }
        let jobs = batch.jobs, bytes = batch.bytes
        batch.jobs = []
        batch.bytes = 0
        if !queue.push(jobs, cost: bytes) { throw failure.value ?? CancellationError() }
    }

    /// Hashes and stores a blob; returns its id.
    public func store(type: BlobType, data: UnsafeRawBufferPointer) throws -> BlobID {
        let id = repository.blobID(of: data)
        try store(id, type: type, data: data)
        return id
    }

    private func compressLoop() {
        let deflater = Deflater(level: level)
        var second: [Int32: Deflater] = [:]   // `Job.level`'s, made on first use
        let inflater = Inflater()
        var out: [UInt8] = [], again: [UInt8] = [], scratch: [UInt8] = [], baseBytes: [UInt8] = [], sealed: [UInt8] = []
        while let jobs = queue.pop() {
          for job in jobs where failure.value == nil {
            do {
                var comp = BlobCompression.none, storedCount = job.data.count
                // A delta first: a chunk with a row changed costs a few bytes
                // of program, and then it need not be deflated at all (unless
                // it drifts: then the whole form's size decides, `keepsDelta`).
                var baseID: BlobID?, program: [UInt8]?, drifted: Int?, wholeComp = BlobCompression.none
                if let hint = job.base, let (b, d) = readBase(hint, tree: job.treeBase, inflater: inflater, scratch: &scratch, into: &baseBytes) {
                    baseID = b
                    drifted = d
                    program = baseBytes.withUnsafeBytes { b in
                        job.data.withUnsafeBytes { DeltaCodec.encode(base: b, target: $0, limit: job.data.count / Self.deltaFirstFraction) } }
                }
                if let p = program, drifted == nil, p.count + 32 <= job.data.count / 64 {
                    comp = .delta
                } else {
                    comp = job.data.withUnsafeBytes { deflater.compress($0, into: &out) }
                    storedCount = comp == .none ? job.data.count : out.count
                    if comp == .zlib, let l = job.level, l > level.level, storedCount * ChunkerProfile.recompressRatio > job.data.count {
                        let d = second[l] ?? Deflater(level: CompressionLevel(l))
                        second[l] = d
                        if job.data.withUnsafeBytes({ d.compress($0, into: &again) }) == .zlib, again.count < storedCount {
                            swap(&out, &again)
                            storedCount = out.count
                        }
                    }
                    wholeComp = comp
                    if let p = program, p.count + 32 < storedCount {
                        comp = .delta
                    } else if program == nil, baseID != nil, storedCount > job.data.count / Self.deltaFirstFraction {
                        program = baseBytes.withUnsafeBytes { b in
                            job.data.withUnsafeBytes { DeltaCodec.encode(base: b, target: $0, limit: storedCount - 32) } }
                        if program != nil { comp = .delta }
                    }
                }
                if comp == .delta, let p = program, !Self.keepsDelta(program: p.count, whole: storedCount, drifted: drifted) {
                    // Drifted too far from its base: stored whole again (the deflated form is in `out`).
                    comp = wholeComp
                    storedCount = comp == .none ? job.data.count : out.count
                }
                if comp == .delta, let b = baseID, let p = program {
                    out.removeAll(keepingCapacity: true)
                    out.append(contentsOf: b.bytes)
                    out.append(contentsOf: p)
                    storedCount = out.count
                }
                // Sealed (an encrypted repository) outside the pack lock, in parallel.
                let full: PackWriter? = try (comp == .none ? job.data : out).withUnsafeBytes { plain in
                    try repository.sealStored(plain, id: job.id, compression: comp, rawLength: job.data.count, scratch: &sealed) { stored in
                        storedCount = stored.count
                        return try packLock.withLock {
                            try assembler.add(id: job.id, type: job.type, compression: comp, rawLength: job.data.count, stored: stored)
                        }
                    }
                }
                // The fsync of a full pack happens outside the lock: the other
                // compressors go on filling the next pack meanwhile.
                if let w = full { try seal(w) }
                lock.withLock {
                    addedBlobs += 1
                    addedBytes += UInt64(storedCount)
                    rawBytesAdded += UInt64(job.data.count)
                    if comp == .delta { deltaBlobs += 1 }
                    if job.type == .tree { addedTreeBytes += UInt64(storedCount) }
                }
            } catch {
                failure.record(error)
                queue.cancel()
            }
          }
        }
    }

    /// Is a delta of `program` bytes worth keeping for a blob whose whole
    /// stored form is `whole` bytes? It is shorter than the whole form (the
    /// encoder's limit). When the chunk it replaces is itself a delta on the
    /// same base (`drifted`: that delta's program length), the new delta
    /// carries every change since the base and grows day after day; it is
    /// then kept only while base id and program stay below √(2·whole·growth),
    /// growth being what it adds to the replaced program (at least 64 bytes).
    /// That stores the chunk whole again after about √(2·whole/growth) days
    /// and makes its average daily cost (a whole form per period plus the
    /// deltas in between) smallest: √(2·whole·growth), where keeping deltas
    /// until they reach the whole form costs about whole/2 a day.
    static func keepsDelta(program: Int, whole: Int, drifted: Int?) -> Bool {
        guard let previous = drifted else { return true }
        let growth = Double(max(64, program - previous))
        return Double(32 + program) <= (2 * Double(whole) * growth).squareRoot()
    }

    /// The bytes of the base a delta on `hint` would use: `hint` itself, or
    /// its base when `hint` is itself a delta (bases are stored whole; then
    /// also the length of `hint`'s program, for `deltaLimit`). Nil when there
    /// is none small enough or it cannot be read: the blob is then stored
    /// without a delta (a damaged base is `check`'s to report). `tree`: the
    /// base must be a tree blob no larger than a manifest piece can be.
    private func readBase(_ hint: BlobID, tree: Bool, inflater: Inflater, scratch: inout [UInt8], into bytes: inout [UInt8]) -> (BlobID, Int?)? {
        guard var l = lock.withLock({ repository.index.lookup(hint) }) else { return nil }
        var id = hint
        var drifted: Int?
        if l.compression == .delta {
            guard let b = try? repository.deltaBase(of: hint, location: l),
                  let bl = lock.withLock({ repository.index.lookup(b) }), bl.compression != .delta else { return nil }
            drifted = Int(l.storedLength) - 32 - (repository.config.isEncrypted ? AESGCMKey.overhead : 0)
            id = b; l = bl
        }
        guard l.rawLength <= UInt32(tree ? ChunkerProfile.manifest.max : DeltaCodec.maxLength), !tree || l.type == .tree else { return nil }
        if let recent = recentBases?.get(id) { bytes = recent; return (id, drifted) }
        do {
            try repository.readStored(id, location: l, into: &scratch)
            try scratch.withUnsafeBytes {
                try repository.decodeBaseForWriting(stored: $0, id: id, compression: l.compression, rawLength: Int(l.rawLength), inflater: inflater, into: &bytes)
            }
        } catch { return nil }
        return (id, drifted)
    }

    /// A delta is tried first with this limit, 1/8 of the blob: the encoder
    /// gives up early on a rewritten chunk. A delta of at most 1/64 of the
    /// blob is kept without deflating it; otherwise the smaller of the two.
    static let deltaFirstFraction = 8

    /// Finishes a pack (fsync, rename) and records it.
    private func seal(_ w: PackWriter) throws {
        guard let sealed = try PackAssembler.seal(w) else { return }
        lock.withLock { finishedPacks.append(sealed.pack) }
    }

    /// Waits for every accepted blob, closes the last pack and writes the
    /// index file. Durable on return. Returns the new packs.
    public func finish() throws -> [IndexFile.Pack] {
        queue.close()
        workers.wait()
        if let e = failure.value { abandon(); throw e }
        if let w = packLock.withLock({ assembler.takeOpen() }) { try seal(w) }
        if !finishedPacks.isEmpty {
            let file = IndexFile(packs: finishedPacks)
            try repository.writeIndex(file)
            // Sealed now: a sync run on this repository next (`-a backup -s`) looks up every blob.
            lock.withLock { repository.index.add(file); repository.index.seal() }
        }
        return finishedPacks
    }

    /// Stops after a failure: drops queued blobs, removes the open pack's temp file.
    public func abandon() {
        queue.cancel()
        workers.wait()
        packLock.withLock { assembler.abandon() }
    }

    public func fail(_ error: Error) {
        failure.record(error)
        queue.cancel()
    }
}


/// The last few blobs read, by id, up to a byte budget: verified plaintext
/// (the reader checked each against its id), so a delta may use one as its
/// base without reading it again. Thread-safe.
final class RecentBlobs: @unchecked Sendable {
    private let lock = NSLock()
    private var blobs: [BlobID: [UInt8]] = [:]
    private var order: [BlobID] = []
    private var head = 0
    private var bytes = 0
    private let budget: Int
    /// Larger blobs are not kept (a chunk list of 4 MiB would push out the rest).
    static let maxBlob = 256 << 10
    /// What an entry costs besides its bytes (the key, the array, the order slot).
    static let entryCost = 128

    init(budget: Int = 8 << 20) { self.budget = budget }

    func put(_ id: BlobID, _ data: [UInt8]) {
        guard data.count <= Self.maxBlob else { return }
        lock.withLock {
            guard blobs.updateValue(data, forKey: id) == nil else { return }
            order.append(id)
            bytes += data.count + Self.entryCost
            while bytes > budget, head < order.count {
                if let old = blobs.removeValue(forKey: order[head]) { bytes -= old.count + Self.entryCost }
                head += 1
            }
            if head > 1024 && head * 2 > order.count { order.removeFirst(head); head = 0 }
        }
    }

    func get(_ id: BlobID) -> [UInt8]? { lock.withLock { blobs[id] } }
}
