import Foundation
import AccordCore
import AccordRuntime
import class AccordRuntime.Progress // over Foundation.Progress

/// Restores file contents pack by pack: every blob the selected files need
/// is grouped by the pack holding it, and each pack is read once, front to
/// back (in reads of ~4 MiB windows over the blobs it needs), while a
/// pool of threads verifies, inflates and writes the blobs to their files
/// with positioned writes. A blob used several times is decoded once per
/// pack. Zero blocks are not written, so holes stay holes.
///
/// A file whose blobs all lie in one pack (nearly every small file) is
/// created, written and finished by the thread restoring that pack: one
/// open. Other files are created empty up front (`createAll`) and finished
/// after `writeAll` by the caller.
///
/// `@unchecked Sendable`: `failed` and `finishErrors` are under `lock`.
/// `files`, `byPack` and `blobRefs` are built by one thread (`add`) before
/// any worker starts and only read while workers run; a slot of `state` or
/// `remaining` is written by the one thread that owns its file at that point
/// (see each). A segment written on its own thread (`Restore.run`) is handed
/// over at that thread's start and back at its join.
final class RestoreFileWriter: @unchecked Sendable {
    struct FileTarget {
        var entry: ManifestEntry   // blobs removed once referenced
        /// Relative to the target (`RestoreTarget`).
        var path: RawPath
        /// All blobs in one pack: created and finished by `writeAll`.
        var solo = false
        var blobCount: Int32 = 0
    }

    struct BlobRef {
        var id: BlobID
        var location: BlobLocation
        var file: Int32
        var fileOffset: Int64
    }

    static let window: Int64 = 4 << 20
    /// A window on a remote store (a bucket): each read there is a request,
    /// with its latency and, on some servers, a hash of the whole object
    /// (rclone's `serve s3` computes the ETag of the object for every GET),
    /// so a job's run of a pack is read in one piece up to this size.
    static let remoteWindow: Int64 = 24 << 20
    /// Each thread keeps its window's buffer: at most this much for all of
    /// them (above 64 threads, `window` each, the floor, as on a local disk).
    static let remoteWindows: Int64 = 256 << 20
    /// `remoteWindow`, smaller with many threads (never below `window`).
    var remoteWindow: Int64 { Swift.max(Self.window, Swift.min(Self.remoteWindow, Self.remoteWindows / Int64(Swift.max(1, threads)))) }
    /// A job also ends after this many bytes restored: a window of well
    /// compressed blobs or of deltas (a few bytes each, but a base to read
    /// and inflate) is a lot of work for one thread.
    static let jobRawBytes: Int64 = 32 << 20
    static let coalesce = 1 << 20
    /// A segment's size: a restore writes this many files (or the files
    /// holding this many blob references, whichever comes first) at a time.
    static let segmentFiles = 8192
    static let segmentBlobs = 1 << 16
    let repository: Repository
    let target: RestoreTarget
    let threads: Int
    let progress: Progress?
    private(set) var files: [FileTarget] = []
    /// Blob references by pack index (`repository.index.packs`).
    private(set) var byPack: [[BlobRef]]
    private var blobRefs = 0
    private let lock = NSLock()
    private(set) var failed: [Int32: Error] = [:]
    /// Errors of finishing files in `writeAll` (the file stays, as restored).
    private(set) var finishErrors: [Int32: Error] = [:]
    /// Per file: blobs not yet written (solo files only, each touched by one thread).
    private var remaining: UnsafeMutableBufferPointer<Int32> = .init(start: nil, count: 0)
    /// Per file: `created` once this writer made it (`createAll`, or `writeAll`
    /// for a solo file), `finished` once `writeAll` finished it. A slot is
    /// written by one thread only.
    private var state: UnsafeMutableBufferPointer<UInt8> = .init(start: nil, count: 0)
    private static let created: UInt8 = 1, finished: UInt8 = 2

    private func allocateState() {
        guard state.count != files.count else { return }
        state.deallocate()
        state = .allocate(capacity: files.count)
        state.initialize(repeating: 0)
    }

    init(repository: Repository, target: RestoreTarget, threads: Int, progress: Progress?) {
        self.repository = repository
        self.target = target
        self.threads = threads
        self.progress = progress
        byPack = Array(repeating: [], count: repository.index.packs.count)
    }

    /// A writer that only plans (`makeJobs`), with no target to write to.
    convenience init(repository: Repository, threads: Int, progress: Progress?) {
        self.init(repository: repository, target: RestoreTarget(unopened: [0x2f]), threads: threads, progress: progress)
    }

    /// Records where a file's blobs go (`createAll` makes the file). A file
    /// whose blobs' lengths (from the index) do not add up to its size fails
    /// here, before anything is written to or removed at its path.
    func add(_ e: ManifestEntry, at path: RawPath) {
        let n = Int32(files.count)
        var offset: Int64 = 0
        var entry = e
        var firstPack = -1, onePack = true
        var refs: [BlobRef] = []
        refs.reserveCapacity(e.blobs.count)
        for id in e.blobs {
            guard let l = repository.index.lookup(id) else {
                failed[n] = BlobError.notInIndex(id)
                break
            }
            if firstPack < 0 { firstPack = l.packIndex } else if l.packIndex != firstPack { onePack = false }
            refs.append(BlobRef(id: id, location: l, file: n, fileOffset: offset))
            offset += Int64(l.rawLength)
        }
        if failed[n] == nil && UInt64(offset) != e.size {
            failed[n] = RestoreError.sizeMismatch(target.display(path), expected: e.size, got: UInt64(offset))
        }
        entry.blobs = []
        var target = FileTarget(entry: entry, path: path)
        if failed[n] == nil {
            for r in refs { byPack[r.location.packIndex].append(r) }
            blobRefs += refs.count
            target.solo = firstPack >= 0 && onePack
            target.blobCount = Int32(refs.count)
        }
        files.append(target)
    }

    deinit { state.deallocate() }

    /// Records that finishing file `n` failed (the file stays, as restored, unless the caller removed it).
    func markFinishFailed(_ n: Int32, _ e: Error) { lock.withLock { if finishErrors[n] == nil { finishErrors[n] = e } } }

    /// Whether the files added make a segment (see `segmentFiles`).
    var isFull: Bool { files.count >= Self.segmentFiles || blobRefs >= Self.segmentBlobs }

    /// Whether `writeAll` finished file `n` (a solo file).
    func isFinished(_ n: Int32) -> Bool { state.count > Int(n) && state[Int(n)] == Self.finished }

    /// Whether file `n` exists because this writer made it, so a failed one is
    /// removed. A file that failed before it was made (its blobs are not in the
    /// index, or its first write never came) leaves what was at its path alone.
    func wasCreated(_ n: Int32) -> Bool { state.count > Int(n) && state[Int(n)] != 0 }

    /// Calls `body` for every file, on `threads` threads, 512 files at a time (so
    /// threads mostly work in different directories and do not queue on their locks).
    func forEachFile(_ body: @escaping @Sendable (Int32, FileTarget) -> Void) {
        let next = ManagedCounter()
        let workers = WorkerGroup()
        workers.spawn(max(1, threads), name: "restore-files") { [unowned self] _ in
            while true {
                let start = next.take(512)
                if start >= files.count { return }
                for i in start..<min(files.count, start + 512) { body(Int32(i), files[i]) }
            }
        }
        workers.wait()
    }

    /// Creates, empty and in parallel, every file `writeAll` does not create itself.
    func createAll() {
        allocateState()
        forEachFile { [unowned self] n, f in
            if f.solo || isFailed(n) { return }
            do {
                Sys.close(try target.createFile(f.path))
                state[Int(n)] = Self.created
            } catch {
                markFailed(n, error)
            }
        }
    }

    /// Writes every blob. A solo file is created at its first write and
    /// finished by `finish` (given its descriptor) once its last blob is
    /// written. Files whose blobs could not be read are in `failed` afterwards.
    func writeAll(finish: @escaping @Sendable (FileTarget, Int32) throws -> Void) {
        allocateState()
        remaining = .allocate(capacity: files.count)
        for (i, f) in files.enumerated() { remaining[i] = f.blobCount }
        defer { remaining.deallocate(); remaining = .init(start: nil, count: 0) }
        let jobs = makeJobs()
        let queue = BoundedQueue<Job>(capacity: jobs.count + 1)
        for j in jobs { queue.push(j) }
        queue.close()
        let workers = WorkerGroup()
        workers.spawn(max(1, threads), name: "restore") { [unowned self] _ in
            let inflater = Inflater()
            var span: [UInt8] = []
            var plain: [UInt8] = []
            var pending: [UInt8] = []
            var fds = FDCache()
            while let job = queue.pop() {
                restorePack(job.pack, byPack[job.pack][job.refs], inflater: inflater, span: &span, plain: &plain, pending: &pending,
                            fds: &fds, finish: finish)
            }
            fds.closeAll()
        }
        workers.wait()
        byPack = []
    }

    /// A run of one pack's blob references (in pack order), restored by one thread.
    struct Job { var pack: Int; var refs: Range<Int> }

    /// Sorts each pack's references into pack order and cuts them into jobs of
    /// about one read window (or `jobRawBytes` restored), so the threads share out a pack's work and none
    /// is left alone with a whole pack at the end. A cut never falls inside a
    /// solo file's run (its thread makes, writes and finishes it).
    func makeJobs() -> [Job] {
        var jobs: [Job] = []
        var lastRef = [Int32](repeating: 0, count: files.count)   // per solo file: its last reference in the pack being cut
        for pack in byPack.indices where !byPack[pack].isEmpty {
            byPack[pack].sort { ($0.location.offset, $0.file, $0.fileOffset) < ($1.location.offset, $1.file, $1.fileOffset) }
            let refs = byPack[pack]
            for (i, r) in refs.enumerated() where files[Int(r.file)].solo { lastRef[Int(r.file)] = Int32(i) }
            var start = 0, reach = -1
            var bytes: Int64 = 0, raw: Int64 = 0
            for (i, r) in refs.enumerated() {
                reach = Swift.max(reach, files[Int(r.file)].solo ? Int(lastRef[Int(r.file)]) : i)
                bytes += Int64(r.location.storedLength)
                raw += Int64(r.location.rawLength)
                if (bytes >= Self.window || raw >= Self.jobRawBytes) && reach == i {
                    jobs.append(Job(pack: pack, refs: start..<(i + 1)))
                    start = i + 1
                    bytes = 0
                    raw = 0
                }
            }
            if start < refs.count { jobs.append(Job(pack: pack, refs: start..<refs.count)) }
        }
        return interleaved(jobs)
    }

    /// The multi-pack file a job writes most (nil: only solo files).
    func mainSharedFile(_ job: Job) -> Int32? {
        var bytes: [Int32: Int64] = [:]
        for r in byPack[job.pack][job.refs] where !files[Int(r.file)].solo {
            bytes[r.file, default: 0] += Int64(r.location.rawLength)
        }
        return bytes.max { ($0.value, $1.key) < ($1.value, $0.key) }?.key
    }

    /// Orders jobs so that threads taking neighbouring jobs seldom write the
    /// same multi-pack file. A buffered write holds the file's inode lock,
    /// and in pack order both threads took consecutive jobs of a dump's packs
    /// and spun on that lock (about 1.5% of a scale-2 restore's CPU, the
    /// largest part of its growth beyond 2x). Jobs are grouped by the
    /// multi-pack file they write most (jobs of solo files form one group)
    /// and the groups are spread evenly through the queue, each in pack order.
    func interleaved(_ jobs: [Job]) -> [Job] {
        var groupOf: [Int32: Int] = [:]
        var group: [Int] = [], size: [Int] = [0]   // size[0]: the solo group
        for job in jobs {
            var g = 0
            if let f = mainSharedFile(job) {
                if let known = groupOf[f] { g = known } else { g = size.count; groupOf[f] = g; size.append(0) }
            }
            group.append(g)
            size[g] += 1
        }
        if groupOf.isEmpty { return jobs }
        // Job k of a group of n goes to (k + 0.5) / n of the way through the queue.
        var taken = [Int](repeating: 0, count: size.count)
        var keyed: [(key: Double, group: Int, index: Int)] = []
        keyed.reserveCapacity(jobs.count)
        for (i, g) in group.enumerated() {
            keyed.append(((Double(taken[g]) + 0.5) / Double(size[g]), g, i))
            taken[g] += 1
        }
        keyed.sort { ($0.key, $0.group) < ($1.key, $1.group) }
        // Groups of nearly equal size can still meet; pull the next job of
        // another group forward where a multi-pack file's jobs would touch,
        // or, with none left after it, move the job back into the first gap
        // between two jobs of other groups.
        var i = 1
        while i < keyed.count {
            let g = keyed[i].group
            if g != 0 && g == keyed[i - 1].group {
                if let j = keyed[(i + 1)...].firstIndex(where: { $0.group != g }) {
                    keyed.insert(keyed.remove(at: j), at: i)
                } else if let p = (0..<i).first(where: { ($0 == 0 || keyed[$0 - 1].group != g) && keyed[$0].group != g }) {
                    keyed.insert(keyed.remove(at: i), at: p)
                } else {
                    break
                }
            }
            i += 1
        }
        return keyed.map { jobs[$0.index] }
    }

    private func restorePack(_ pack: Int, _ refs: ArraySlice<BlobRef>, inflater: Inflater, span: inout [UInt8], plain: inout [UInt8],
                             pending: inout [UInt8], fds: inout FDCache,
                             finish: (FileTarget, Int32) throws -> Void) {
        let packID = repository.index.packs[pack]
        let end = refs.map { Int64($0.location.offset) + Int64($0.location.storedLength) }.max()!
        // The pack is read front to back in windows of ~4 MiB (one read each,
        // a larger blob in a read of its own): few reads, little memory. On a
        // bucket a window is up to 24 MiB: one GET for most jobs' run of a pack.
        // `span` keeps its size over windows and jobs (reads overwrite it; zeroing
        // 4 MiB per window was ~1% of a restore): `valid` bytes hold the pack from `start`.
        var readError: Error?
        var start: Int64 = 0
        var valid = 0
        func window(covering off: Int64, _ length: Int64) throws {
            start = off
            valid = 0
            let most = repository.local == nil ? remoteWindow : RestoreFileWriter.window
            let want = Int(Swift.max(length, Swift.min(most, end - off)))
            if span.count < want { span.resizeForOverwrite(want) }
            do {
                valid = try span.withUnsafeMutableBytes { try repository.readPack(packID, at: off, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<want])) }
            } catch BackendError.notFound {
                throw RepositoryError.packMissing(packID, blob: refs.first!.id)
            }
        }
        // Consecutive blobs of one file (a dump's chunks lie in pack order)
        // are written together, up to 1 MiB: fewer writes, and block-aligned
        // ones, so the filesystem does not zero the rest of each block first.
        var pendingFile: Int32 = -1
        var pendingOffset: Int64 = 0
        var pendingBlobs: Int32 = 0
        pending.removeAll(keepingCapacity: true)
        func open(_ f: Int32) throws -> Int32 {
            let file = files[Int(f)]
            // A solo file is made at its first write (and reopened if the cache let it go).
            guard file.solo && state[Int(f)] == 0 else { return try fds.open(f, file.path, in: target, creating: false) }
            let fd = try fds.open(f, file.path, in: target, creating: true)
            state[Int(f)] = Self.created
            return fd
        }
        /// Counts `blobs` of solo file `f` as written; finishes it after its last.
        func written(_ f: Int32, blobs: Int32, fd: Int32) {
            guard files[Int(f)].solo else { return }
            remaining[Int(f)] -= blobs
            guard remaining[Int(f)] == 0 else { return }
            do { try finish(files[Int(f)], fd) } catch { markFinishFailed(f, error) }
            state[Int(f)] = Self.finished
            fds.close(f)
        }
        func flushPending() {
            guard pendingFile >= 0 else { return }
            let f = pendingFile
            pendingFile = -1
            if !isFailed(f) {
                do {
                    let out = try open(f)
                    try pending.withUnsafeBytes { try writeSkippingZeros($0, fd: out, at: pendingOffset, path: target.display(files[Int(f)].path)) }
                    written(f, blobs: pendingBlobs, fd: out)
                } catch {
                    markFailed(f, error)
                }
            }
            pending.removeAll(keepingCapacity: true)
            pendingBlobs = 0
        }
        defer { flushPending() }
        var decoded: BlobID? = nil
        for r in refs {
            if isFailed(r.file) { continue }
            if let e = readError { markFailed(r.file, e); continue }
            do {
                if decoded != r.id {
                    let off = Int64(r.location.offset), length = Int64(r.location.storedLength)
                    if off < start || off + length > start + Int64(valid) {
                        do { try window(covering: off, length) } catch {
                            readError = error
                            throw error
                        }
                    }
                    let lo = Int(off - start), hi = lo + Int(r.location.storedLength)
                    guard hi <= valid else {
                        throw BlobError.inPack(r.id, pack: packID, offset: r.location.offset, underlying: PackError.truncatedPack(size: Int(start) + valid))
                    }
                    do {
                        // Opened in the window itself (each blob's bytes are decoded once:
                        // refs are in offset order, and a repeat of one blob is skipped above).
                        try span.withUnsafeMutableBytes { buf in
                            try repository.decodeVerified(spending: UnsafeMutableRawBufferPointer(rebasing: buf[lo..<hi]), id: r.id,
                                                          compression: r.location.compression, rawLength: Int(r.location.rawLength),
                                                          inflater: inflater, into: &plain)
                        }
                    } catch {
                        decoded = nil
                        throw BlobError.inPack(r.id, pack: packID, offset: r.location.offset, underlying: error)
                    }
                    decoded = r.id
                }
                if pendingFile == r.file && pendingOffset + Int64(pending.count) == r.fileOffset
                    && pending.count + plain.count <= RestoreFileWriter.coalesce {
                    pending.append(contentsOf: plain)
                    pendingBlobs += 1
                } else {
                    flushPending()
                    if plain.count >= RestoreFileWriter.coalesce {
                        let out = try open(r.file)
                        try plain.withUnsafeBytes { try writeSkippingZeros($0, fd: out, at: r.fileOffset, path: target.display(files[Int(r.file)].path)) }
                        written(r.file, blobs: 1, fd: out)
                    } else {
                        pendingFile = r.file
                        pendingOffset = r.fileOffset
                        pending.append(contentsOf: plain)
                        pendingBlobs = 1
                    }
                }
                progress?.addBytes(plain.count)
            } catch {
                markFailed(r.file, error)
            }
        }
    }

    func isFailed(_ f: Int32) -> Bool { lock.withLock { failed[f] != nil } }
    func markFailed(_ f: Int32, _ e: Error) { lock.withLock { if failed[f] == nil { failed[f] = e } } }
}
