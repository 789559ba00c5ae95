import Foundation
import AccordCore
import AccordRuntime

/// One backup run: walks the sources in tree order, reads and chunks what
/// changed, stores new blobs, writes the manifest and finally the snapshot.
///
/// Threads and queues (all bounded, so memory is flat however large the input):
///
///     walker ──► jobs ──► file workers (read, chunk, hash) ──► BlobSink queue ──► compressors ──► packs
///        └────► slots (tree order) ──► main thread: manifest writer ──► BlobSink
///
/// Unchanged files (same size, mtime, ctime, inode as in the parent) are
/// not read: their blob lists are copied from the parent's manifest, which
/// is streamed alongside the walk, never loaded whole.
///
/// `@unchecked Sendable`: the walker, the file workers and the calling thread
/// share it. `summary` and `unreadablePaths` are changed under `statsLock`,
/// `waitingFor` under `slotCondition`; `hardlinks`, `emittedAncestors` and
/// `skippedRepository` belong to the walker thread (the caller reads
/// `skippedRepository` after joining it), and `parentCursor` is set before the
/// walker starts and used by it alone. The rest is `let`.
public final class Backup: @unchecked Sendable {
    /// `@unchecked Sendable`: a slot passes between three threads, one at a
    /// time. The walker fills it before pushing it on `slots`/`jobs` (the
    /// queues' mutex orders that); a file worker (or its `ChunkHandoff`
    /// helper, joined before the worker goes on) fills `entry` and
    /// `bytesRead`, then sets `done` under `slotCondition`; the manifest
    /// writer reads them after seeing `done` under `slotCondition`.
    final class Slot: @unchecked Sendable {
        var entry: ManifestEntry?
        var done = false
        var bytesRead: UInt64 = 0
        var unchanged = false
        /// The parent snapshot's entry for this path when it keeps a chunk
        /// list: the new list is stored as a delta on it.
        var listParent: ManifestEntry?
        /// The content ids of the parent snapshot's entry for this path (a
        /// file or stream) when this one is read again: its new chunks may
        /// be stored as deltas on them (`ChunkAcceptor`). Empty without one.
        var deltaParent: [BlobID] = []
        /// A regular file of more than one link: a later hard link may name it
        /// (`ManifestWriter.append`'s `mayBeLinked`).
        var mayBeLinked = false
        /// The parent manifest's blob holding the start of this path's
        /// record: the new manifest piece holding this record may be stored
        /// as a delta on it.
        var manifestAnchor: BlobID?
        init(entry: ManifestEntry? = nil, done: Bool = false) { self.entry = entry; self.done = done }

        /// Takes what this slot needs of the parent's entry for its path.
        func setParent(_ found: (entry: ManifestEntry, blob: BlobID?)?) {
            guard let (old, blob) = found else { return }
            manifestAnchor = blob
            listParent = old.list == nil ? nil : old
            if old.kind == .file || old.kind == .stream { deltaParent = old.blobs }
        }
    }

    enum Job {
        case file(Slot, RawPath, FileStatus, ChunkerProfile)
        case command(Slot, CommandSource)
        case inline(Slot, InlineFile)
    }

    let repository: Repository
    let options: BackupOptions
    let sink: BlobSink
    let failure = FirstError()
    let slotCondition = NSCondition()
    /// The slot the main thread waits on (under `slotCondition`).
    var waitingFor: Slot?
    let jobs: BoundedQueue<Job>
    let slots: BoundedQueue<Slot>
    let statsLock = NSLock()
    var summary = Snapshot.Summary()
    var hardlinks: [HardlinkKey: RawPath] = [:]
    var parentCursor: ParentCursor?
    var emittedAncestors = Set<RawPath>()
    /// Paths skipped as unreadable (under `statsLock`): a hard link to one is left out.
    var unreadablePaths = Set<RawPath>()

    struct HardlinkKey: Hashable { var device: UInt64; var inode: UInt64 }
    /// The repository's directory: never backed up into itself, wherever it lies in a source.
    let repositoryDirectory: HardlinkKey?
    /// Where the walk met (and left out) the repository, if it did (walker thread).
    var skippedRepository: RawPath?

    public init(repository: Repository, options: BackupOptions) {
        self.repository = repository
        self.options = options
        let level = options.compression ?? CompressionLevel(Int32(clamping: repository.config.compression.level))
        repositoryDirectory = (try? Sys.stat(Array(repository.layout.root.utf8))).map { HardlinkKey(device: $0.device, inode: $0.inode) }
        sink = BlobSink(repository: repository, threads: options.threads, level: level)
        jobs = BoundedQueue(capacity: 4 * options.threads + 16)
        slots = BoundedQueue(capacity: 8192, wakeBatch: 64)
    }

    /// Runs the backup. The repository must be locked and its index loaded.
    public func run() throws -> BackupResult {
        let started = Sys.monotonicSeconds()
        let roots: [Root], parentID: SnapshotID?
        do {
            roots = try prepareRoots()
            parentID = try findParent()
        } catch {
            sink.abandon()   // stops its compressor threads before `self` goes away
            throw error
        }
        if let p = parentID, let s = try? repository.loadSnapshot(p) {
            // The parent's manifest pieces are kept a while after the walk reads them: the
            // new pieces that replace them are stored as deltas on them (`ManifestWriter`).
            // A piece that is itself a delta is read with its base, which is kept too: a new piece
            // replacing it will be a delta on that base. (On a bucket, the pieces come from the
            // local cache or a few coalesced reads: `prefetchTreeBlobs`.)
            let recent = RecentBlobs()
            sink.recentBases = recent
            let r = repository
            r.prefetchTreeBlobs(s.manifestIDs)
            let inflater = Inflater()   // one for the walk's reads (one thread), not one a piece
            parentCursor = ParentCursor(reader: ManifestReader(blobs: s.manifestIDs, snapshot: p) { id in
                let bytes = try r.readBlob(id, inflater: inflater, base: { recent.get($0) }, keep: { recent.put($0, $1) })
                recent.put(id, bytes)
                return bytes
            })
            // The parent's size is the best estimate of this run's: it gives the ETA.
            options.progress?.setTotals(files: s.summary.files, bytes: s.summary.totalBytes)
        }
        options.progress?.startReporting()
        defer { options.progress?.stop() }

        let workers = WorkerGroup()
        workers.spawn(options.threads, name: "read") { [unowned self] _ in self.workerLoop() }
        let walker = WorkerGroup()
        walker.spawn(1, name: "walk") { [unowned self] _ in
            do { try self.walk(roots) } catch { self.fail(error) }
            self.slots.close()
            self.jobs.close()
        }

        let storeTree: (UnsafeRawBufferPointer) throws -> BlobID = { [unowned self] bytes in
            try self.sink.store(type: .tree, data: bytes)
        }
        // A new piece of the manifest is tried as a delta on the parent's piece it most likely replaced.
        let storeNear: (UnsafeRawBufferPointer, BlobID) throws -> BlobID = { [unowned self] bytes, near in
            let id = self.repository.blobID(of: bytes)
            try self.sink.store(id, type: .tree, data: bytes, base: near, treeBase: true)
            return id
        }
        let manifest = ManifestWriter(gear: repository.gear, store: storeTree, lists: storeTree, storeNear: storeNear)
        do {
            while let slot = slots.pop() {
                slotCondition.lock()
                waitingFor = slot
                while !slot.done && failure.value == nil { slotCondition.wait() }
                waitingFor = nil
                slotCondition.unlock()
                if let e = failure.value { throw e }
                if let e = slot.entry {
                    // A hard link must name an earlier file record (FORMAT.md, "Validity"): when
                    // its first path could not be read, it is left out (and listed as unreadable).
                    if e.kind == .hardlink && statsLock.withLock({ unreadablePaths.contains(e.linkTarget) }) {
                        statsLock.withLock { summary.errors.append(e.path.displayPath) }
                        continue
                    }
                    try manifest.append(e, parent: slot.listParent, mayBeLinked: slot.mayBeLinked, anchor: slot.manifestAnchor)
                    count(e, slot: slot)
                }
            }
            if let e = failure.value { throw e }
            walker.wait()
            workers.wait()
            if let e = failure.value { throw e }
            let manifestIDs = try manifest.finish()
            _ = try sink.finish()
            statsLock.lock()
            defer { statsLock.unlock() }
            summary.addedBlobs = sink.addedBlobs
            summary.addedDeltaBlobs = sink.deltaBlobs > 0 ? sink.deltaBlobs : nil
            summary.addedBytes = sink.addedBytes
            summary.addedManifestBytes = sink.addedTreeBytes
            summary.durationSeconds = Sys.monotonicSeconds() - started
            let snapshot = Snapshot(time: .now(), host: options.host, username: Sys.userName, plan: options.plan,
                                    tags: options.tags, paths: roots.map(\.display), sources: roots.map { $0.source(options) },
                                    parent: parentID, manifest: manifestIDs, summary: summary)
            let id = try repository.saveSnapshot(snapshot)
            var result = BackupResult(id: id, snapshot: snapshot)
            if let p = skippedRepository {
                result.notes.append("the repository \(repository.layout.root) lies inside a source as \(p.displayPath) and was left out of the snapshot")
            }
            return result
        } catch {
            fail(error)
            walker.wait()
            workers.wait()
            sink.abandon()
            throw error
        }
    }

    func fail(_ error: Error) {
        failure.record(error)
        jobs.cancel()
        slots.cancel()
        sink.fail(error)
        slotCondition.lock(); slotCondition.broadcast(); slotCondition.unlock()
    }

    private func count(_ e: ManifestEntry, slot: Slot) {
        statsLock.lock()
        defer { statsLock.unlock() }
        switch e.kind {
        case .file, .stream:
            summary.files += 1
            summary.totalBytes += e.size
            summary.bytesRead += slot.bytesRead
            if slot.unchanged { summary.filesUnchanged += 1 }
        case .hardlink: summary.files += 1
        case .directory: summary.directories += 1
        case .symlink: summary.symlinks += 1
        }
    }
}
