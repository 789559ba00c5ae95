import Foundation
import AccordCore
import AccordRuntime
import class AccordRuntime.Progress // over Foundation.Progress

/// What a backup does with each chunk of one source, in stream order: hash
/// it, store it unless known (a new chunk of a file or stream the parent
/// snapshot has may become a delta on the parent's chunk it most likely
/// replaced), and record its id.
struct ChunkAcceptor {
    let sink: BlobSink
    let batch: BlobSink.Batch
    let slot: Backup.Slot
    let progress: Progress?
    /// The level of chunks the repository's level deflates poorly (`ChunkerProfile.level`).
    let level: Int32?
    /// The parent entry's content ids, when deltas may be tried.
    let parentIDs: [BlobID]
    /// Where each parent chunk sits, keyed by the ids' first 8 bytes (16
    /// bytes an entry, not 40): a collision would only pick a worse base, and
    /// a delta is kept only when it is smaller than the chunk compressed alone.
    let parentPosition: [UInt64: Int32]
    /// Where each parent chunk starts in the parent's stream (one more:
    /// where it ends); made at the first chunk that needs a base. Empty:
    /// not yet, or a parent chunk is not indexed.
    var parentStarts: [Int64] = []
    var startsMade = false
    /// Where in the parent's stream the next chunk most likely starts.
    var cursor: Int64 = 0
    /// The parent chunk after the last one that matched (without lengths).
    var next = 0
    var ids: [BlobID] = []

    init(sink: BlobSink, batch: BlobSink.Batch, slot: Backup.Slot, progress: Progress?, level: Int32? = nil) {
        self.sink = sink
        self.level = level
        self.batch = batch
        self.slot = slot
        self.progress = progress
        parentIDs = sink.deltas ? slot.deltaParent : []
        var positions: [UInt64: Int32] = [:]
        positions.reserveCapacity(parentIDs.count)
        for (i, id) in parentIDs.enumerated().reversed() { positions[id.w0] = Int32(i) }
        parentPosition = positions
    }

    /// The base for a new chunk of `length` bytes: the parent chunk that
    /// held the middle of its bytes, where `cursor` says they began. After
    /// a chunk found in the parent, the cursor is that chunk's end there.
    /// After a new chunk whose base began where the cursor was and is about
    /// as long (within 1/8), it is the base's end: the chunk most likely
    /// replaced it whole, whatever rows it gained or lost (rows deleted all
    /// over a dump, every chunk changed, leave no match to put offsets back
    /// in step). Otherwise it moves on by the chunk's length: an edit moved
    /// a cut point (a chunk split or two merged), and offsets stay within the
    /// edit's few bytes, where counting chunks would stay one off.
    /// Without the parent's lengths, the parent chunk after the last match.
    mutating func base(length: Int) -> BlobID? {
        if !startsMade {
            startsMade = true
            if let lengths = sink.rawLengths(parentIDs) {
                var starts = [Int64](), at: Int64 = 0
                starts.reserveCapacity(lengths.count + 1)
                for l in lengths { starts.append(at); at += Int64(l) }
                starts.append(at)
                parentStarts = starts
            }
        }
        guard parentStarts.count == parentIDs.count + 1 else { return next < parentIDs.count ? parentIDs[next] : nil }
        let middle = cursor + Int64(length / 2)
        // The last chunk starting at or before `middle` (the first or last
        // chunk when it lies outside the parent: a file of one chunk gets the
        // parent's whole blob, whatever their lengths).
        var lo = 0, hi = parentIDs.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if parentStarts[mid] <= middle { lo = mid } else { hi = mid - 1 }
        }
        let baseLength = parentStarts[lo + 1] - parentStarts[lo]
        if abs(parentStarts[lo] - cursor) <= Int64(length / 4) && abs(baseLength - Int64(length)) <= Int64(length / 8) {
            cursor = parentStarts[lo + 1]
        } else {
            cursor += Int64(length)
        }
        return parentIDs[lo]
    }

    mutating func accept(_ chunk: UnsafeRawBufferPointer) throws {
        let id = sink.repository.blobID(of: chunk)
        if parentIDs.isEmpty {
            try sink.store(id, type: .data, data: chunk, batch: batch, level: level)
        } else if let j = parentPosition[id.w0] {
            next = Int(j) + 1
            if parentStarts.count == parentIDs.count + 1 { cursor = parentStarts[Int(j) + 1] } else { cursor += Int64(chunk.count) }
            try sink.store(id, type: .data, data: chunk, batch: batch, level: level)
        } else {
            try sink.store(id, type: .data, data: chunk, batch: batch, base: base(length: chunk.count), level: level)
            next += 1
        }
        ids.append(id)
        slot.bytesRead += UInt64(chunk.count)
        progress?.addBytes(chunk.count)
    }
}

/// Hashes and stores a large source's chunks on a helper thread while the
/// thread reading the source cuts the next ones. One source is cut by one
/// thread (each cut point depends on the bytes before it), but its chunks
/// need not be hashed there: for a dump stream, hashing is a third of the
/// work. Chunks cross in batches of ~1 MiB, copied once into buffers that
/// are reused; at most `depth` batches wait, so memory stays flat.
/// One helper keeps the chunks in stream order, which the chunk list and
/// the delta bases (`ChunkAcceptor.next`) need.
///
/// `@unchecked Sendable`: `spares` is shared under `spareLock`; batches
/// cross in `queue`; `current` belongs to the cutting thread; `acceptor`
/// (with its `BlobSink.Batch`, which is not thread-safe) belongs to the
/// helper from its start in `init` until `finish`/`abandon` joins it.
final class ChunkHandoff: @unchecked Sendable {
    struct Piece { var bytes: [UInt8] = []; var ends: [Int] = [] }

    static let batchBytes = 1 << 20
    static let depth = 2
    /// Streams whose chunks may be this large at most are handed off.
    static let maxChunk = 1 << 20

    private let queue = BoundedQueue<Piece>(capacity: ChunkHandoff.depth)
    private let spareLock = NSLock()
    private var spares: [Piece] = []
    private var current = Piece()
    private let helper = WorkerGroup()
    private let failure = FirstError()
    /// Owned by the helper thread from `init` until `finish` returns it.
    private var acceptor: ChunkAcceptor

    init(continuing acceptor: ChunkAcceptor) {
        self.acceptor = acceptor
        helper.spawn(1, name: "chunk-hash") { _ in self.run() }
    }

    /// Queues a chunk (copied); blocks while `depth` batches wait.
    func add(_ chunk: UnsafeRawBufferPointer) throws {
        if current.bytes.capacity == 0 { current = takeSpare() }
        current.bytes.append(contentsOf: chunk)
        current.ends.append(current.bytes.count)
        if current.bytes.count >= Self.batchBytes { try send() }
    }

    /// Waits for every queued chunk to be accepted; returns the acceptor.
    func finish() throws -> ChunkAcceptor {
        if failure.value == nil { try send() }
        queue.close()
        helper.wait()
        if let e = failure.value { throw e }
        return acceptor
    }

    /// Stops the helper without waiting for queued chunks (the backup failed).
    func abandon() {
        queue.cancel()
        helper.wait()
    }

    private func send() throws {
        guard !current.ends.isEmpty else { return }
        let piece = current
        current = Piece()
        if !queue.push(piece) { throw failure.value ?? CancellationError() }
    }

    private func takeSpare() -> Piece {
        if let p = spareLock.withLock({ spares.popLast() }) { return p }
        var p = Piece()
        p.bytes.reserveCapacity(Self.batchBytes + Self.maxChunk)
        return p
    }

    private func run() {
        while var piece = queue.pop() {
            do {
                try piece.bytes.withUnsafeBytes { buf in
                    var start = 0
                    for end in piece.ends {
                        try acceptor.accept(UnsafeRawBufferPointer(rebasing: buf[start..<end]))
                        start = end
                    }
                }
            } catch {
                failure.record(error)
                queue.cancel()
                return
            }
            piece.bytes.removeAll(keepingCapacity: true)
            piece.ends.removeAll(keepingCapacity: true)
            spareLock.withLock { spares.append(piece) }
        }
    }
}
