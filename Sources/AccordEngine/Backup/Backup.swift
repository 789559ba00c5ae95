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
        init(entry: ManifestEntry? = nil, done: Bool = false) { self.entry = entry; self.done = done }
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
    private let statsLock = NSLock()
    private var summary = Snapshot.Summary()
    private var hardlinks: [HardlinkKey: RawPath] = [:]
    private var parentCursor: ParentCursor?
    private var emittedAncestors = Set<RawPath>()
    /// Paths skipped as unreadable (under `statsLock`): a hard link to one is left out.
    private var unreadablePaths = Set<RawPath>()

    struct HardlinkKey: Hashable { var device: UInt64; var inode: UInt64 }
    /// The repository's directory: never backed up into itself, wherever it lies in a source.
    let repositoryDirectory: HardlinkKey?
    /// Where the walk met (and left out) the repository, if it did (walker thread).
    private var skippedRepository: RawPath?

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
            parentCursor = ParentCursor(reader: repository.manifestReader(s))
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
        let manifest = ManifestWriter(gear: repository.gear, store: storeTree, lists: storeTree)
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
                    try manifest.append(e, parent: slot.listParent)
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

    // MARK: Sources

    struct Root {
        var path: RawPath
        var command: CommandSource?
        var inline: InlineFile?
        var isVirtual: Bool { command != nil || inline != nil }
        var display: String { path.displayPath }
        func source(_ options: BackupOptions) -> Snapshot.Source {
            let treeProfile = options.treeProfile, excludes = options.excludes
            if let c = command {
                return .init(kind: "command", path: c.path, command: c.command, profile: c.profile)
            }
            if let i = inline {
                return .init(kind: "inline", path: i.path, profile: .dump)
            }
            let valid = String(validating: path, as: UTF8.self) != nil
            return .init(kind: "path", path: display, pathHex: valid ? nil : hexString(path),
                         excludes: excludes.isEmpty ? nil : excludes, profile: treeProfile,
                         dumpFiles: options.dumpFiles.isEmpty ? nil : options.dumpFiles,
                         dumpProfile: options.dumpFiles.isEmpty ? nil : options.dumpProfile)
        }
    }

    func prepareRoots() throws -> [Root] {
        var roots: [Root] = options.paths.map { Root(path: normalize($0)) }
        // Virtual names are taken as they are, never normalized: `/x/../..` must not become `/`.
        for c in options.commands {
            if let why = VirtualPath.problem(c.path) { throw BackupError.badCommandPath(c.path, reason: why) }
            roots.append(Root(path: Array(c.path.utf8), command: c))
        }
        for f in options.inlineFiles {
            if let why = VirtualPath.problem(f.path) { throw BackupError.badCommandPath(f.path, reason: why) }
            roots.append(Root(path: Array(f.path.utf8), inline: f))
        }
        if roots.isEmpty { throw BackupError.noSources }
        for r in roots where !r.isVirtual {
            do { _ = try Sys.lstat(r.path) } catch let e as SystemError where e.isNotFound {
                throw BackupError.pathNotFound(r.display)
            }
        }
        roots.sort { ManifestEntry.treeOrder($0.path, $1.path) }
        var unique: [Root] = []
        for r in roots {
            if let last = unique.last, isInside(r.path, last.path) {
                if r.path == last.path && !r.isVirtual && !last.isVirtual { continue }
                throw BackupError.nestedSources(r.display, inside: last.display)
            }
            unique.append(r)
        }
        return unique
    }

    func normalize(_ p: RawPath) -> RawPath {
        var parts: [ArraySlice<UInt8>] = []
        for c in p.split(separator: 0x2f) {
            if c == [0x2e] { continue }
            if c == [0x2e, 0x2e] { _ = parts.popLast(); continue }
            parts.append(c)
        }
        if parts.isEmpty { return [0x2f] }
        var out: RawPath = []
        for c in parts { out.append(0x2f); out.append(contentsOf: c) }
        return out
    }

    func isInside(_ p: RawPath, _ dir: RawPath) -> Bool { ManifestEntry.isWithin(p, dir) }

    func findParent() throws -> SnapshotID? {
        if options.forceRead { return nil }
        if let p = options.parent { return p }
        let wanted = options.displayPaths.sorted()
        let all = try repository.snapshots()
        // A snapshot dated in the future is suspect (Repository.isDatedInFuture): never a parent.
        return all.last { $0.snapshot.host == options.host && $0.snapshot.paths.sorted() == wanted && $0.snapshot.plan == options.plan
            && !Repository.isDatedInFuture($0.snapshot) }?.id
    }

    // MARK: Walking (one thread, tree order)

    func emit(_ entry: ManifestEntry) {
        _ = slots.push(Slot(entry: entry, done: true))
    }

    func entry(_ kind: ManifestEntry.Kind, _ path: RawPath, _ st: FileStatus) -> ManifestEntry {
        ManifestEntry(kind: kind, path: path, mode: st.permissions, uid: st.uid, gid: st.gid,
                      mtimeSec: st.mtimeSec, mtimeNsec: st.mtimeNsec, ctimeSec: st.ctimeSec, ctimeNsec: st.ctimeNsec,
                      inode: st.inode, device: st.device, size: kind == .file ? st.size : 0)
    }

    func walk(_ roots: [Root]) throws {
        for root in roots {
            if failure.value != nil { return }
            try emitAncestors(of: root.path)
            if let c = root.command {
                let slot = Slot()
                slot.listParent = listParent(root.path)
                guard slots.push(slot) else { return }
                guard jobs.push(.command(slot, c)) else { return }
            } else if let f = root.inline {
                let slot = Slot()
                slot.listParent = listParent(root.path)
                guard slots.push(slot) else { return }
                guard jobs.push(.inline(slot, f)) else { return }
            } else {
                try visitRoot(root.path)
            }
        }
    }

    /// The parent's entry for `path` if its content is a chunk list (walker thread).
    func listParent(_ path: RawPath) -> ManifestEntry? {
        guard let old = parentCursor?.find(path, onError: options.onWarning), old.list != nil else { return nil }
        return old
    }

    /// Directory entries for the parents of a root ("/", "/opt", …), once each.
    func emitAncestors(of path: RawPath) throws {
        var prefixes: [RawPath] = [[0x2f]]
        for i in 1..<max(1, path.count) where path[i] == 0x2f { prefixes.append(Array(path[0..<i])) }
        if path == [0x2f] { return }
        for a in prefixes where !emittedAncestors.contains(a) {
            emittedAncestors.insert(a)
            if let st = try? Sys.lstat(a), st.isDirectory {
                emit(entry(.directory, a, st))
            } else {
                // A virtual file's parents need not exist on this host.
                let now = Sys.now()
                emit(ManifestEntry(kind: .directory, path: a, mode: 0o700, mtimeSec: now.sec, mtimeNsec: now.nsec))
            }
        }
    }

    func excluded(_ path: RawPath) -> Bool { Self.matches(options.excludes, path) }

    /// Does a glob match: with "/" against the path (or a parent), else the name?
    static func matches(_ patterns: [String], _ path: RawPath) -> Bool {
        if patterns.isEmpty { return false }
        let name = Array(path.split(separator: 0x2f).last ?? [])
        for p in patterns {
            if p.contains("/") ? Sys.fnmatch(p, path) || Sys.fnmatch(p + "/*", path) : Sys.fnmatch(p, name) { return true }
        }
        return false
    }

    func skipUnreadable(_ path: RawPath, _ error: Error) throws {
        try options.onError(path.displayPath, error)
        statsLock.withLock { summary.errors.append(path.displayPath); unreadablePaths.insert(path) }
    }

    /// Visits a source root and everything under it.
    func visitRoot(_ path: RawPath) throws {
        let st: FileStatus
        do { st = try Sys.lstat(path) } catch { try skipUnreadable(path, error); return }
        try visit(path, st, in: nil, name: path, depth: 0)
    }

    /// Directories at most this deep below a root are walked through open
    /// descriptors (one per level stays open); deeper ones by full path, so a
    /// very deep tree cannot exhaust the process's descriptors.
    static let maxDescriptorDepth = 64

    /// Visits one entry. Below a root, names are resolved in the open parent
    /// directory `dir` (`fstatat`, `openat`, `readlinkat`): one path component
    /// per call instead of the whole path.
    func visit(_ path: RawPath, _ st: FileStatus, in dir: Int32?, name: RawPath, depth: Int) throws {
        if failure.value != nil { return }
        // Backing the repository up into itself would grow it by itself every run.
        if st.isDirectory, let r = repositoryDirectory, r.device == st.device, r.inode == st.inode {
            if skippedRepository == nil { skippedRepository = path }
            return
        }
        var e = entry(.file, path, st)
        // Listed for unchanged files too: not every filesystem moves the ctime
        // when an xattr is set (tmpfs before Linux 6.6), and a parent snapshot
        // made by another user may not have seen trusted.* ones.
        e.xattrs = ((try? Sys.listXattrs(path)) ?? []).map { .init(name: $0.name, value: $0.value) }
        if st.isDirectory {
            e.kind = .directory
            e.size = 0
            emit(e)
            var fd: Int32?
            let names: [RawPath]
            do {
                if depth < Self.maxDescriptorDepth {
                    let opened = try Sys.openDirectory(in: dir, name, path: path)
                    fd = opened
                    names = try Sys.listDirectory(fd: opened, path: path)
                } else {
                    names = try Sys.listDirectory(path)
                }
            } catch {
                if let fd { Sys.close(fd) }
                try skipUnreadable(path, error)
                return
            }
            defer { if let fd { Sys.close(fd) } }
            for child in names.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                if failure.value != nil { return }
                let childPath = path == [0x2f] ? [0x2f] + child : path + [0x2f] + child
                if excluded(childPath) { continue }
                let cst: FileStatus
                do {
                    cst = try fd.map { try Sys.lstat(in: $0, child, path: childPath) } ?? Sys.lstat(childPath)
                } catch { try skipUnreadable(childPath, error); continue }
                try visit(childPath, cst, in: fd, name: fd == nil ? childPath : child, depth: depth + 1)
            }
        } else if st.isSymlink {
            e.kind = .symlink
            e.size = 0
            do {
                e.linkTarget = try dir.map { try Sys.readlink(in: $0, name, path: path) } ?? Sys.readlink(path)
            } catch { try skipUnreadable(path, error); return }
            emit(e)
        } else if st.isRegular {
            if st.nlink > 1 {
                let key = HardlinkKey(device: st.device, inode: st.inode)
                if let first = hardlinks[key] {
                    e.kind = .hardlink
                    e.linkTarget = first
                    e.size = 0
                    emit(e)
                    return
                }
                hardlinks[key] = path
            }
            let old = parentCursor?.find(path, onError: options.onWarning)
            if let old, old.kind == .file, old.size == st.size, old.mtimeSec == st.mtimeSec, old.mtimeNsec == st.mtimeNsec,
               old.ctimeSec == st.ctimeSec, old.ctimeNsec == st.ctimeNsec, old.inode == st.inode,
               sink.areKnown(old.referencedBlobs) {
                e.blobs = old.blobs
                let slot = Slot(entry: e, done: true)
                slot.unchanged = true
                slot.listParent = old.list == nil ? nil : old
                _ = slots.push(slot)
                options.progress?.addFile()
                options.progress?.addBytes(Int(st.size))
                return
            }
            let slot = Slot(entry: e)
            slot.listParent = old?.list == nil ? nil : old
            guard slots.push(slot) else { return }
            let profile = Self.matches(options.dumpFiles, path) ? options.dumpProfile : options.treeProfile
            _ = jobs.push(.file(slot, path, st, profile))
        } else {
            statsLock.withLock { summary.otherSkipped += 1 }
            options.onWarning("skipping \(path.displayPath): sockets, FIFOs and device files are not backed up")
        }
    }

    // MARK: Reading (worker threads)

    func workerLoop() {
        let batch = BlobSink.Batch()
        defer { do { try sink.flush(batch) } catch { fail(error) } }
        var streams: [String: ChunkStream] = [:]
        func stream(_ p: ChunkerProfile) -> ChunkStream {
            if let s = streams[p.name] { return s }
            let s = ChunkStream(profile: p, gear: repository.gear)
            streams[p.name] = s
            return s
        }
        while let job = jobs.pop() {
            switch job {
            case .file(let slot, let path, let st, let profile):
                do {
                    try readFile(slot, path, st, stream(profile), batch)
                } catch let e as SystemError where sink.failure.value == nil {
                    // A source that cannot be read; a failing repository write fails the backup below.
                    do { try skipUnreadable(path, e); slot.entry = nil } catch { fail(error) }
                } catch {
                    fail(error)
                }
                complete(slot)
            case .command(let slot, let c):
                do { try runCommand(slot, c, stream(c.profile), batch) } catch { fail(error) }
                complete(slot)
            case .inline(let slot, let f):
                do {
                    var source = MemorySource(bytes: f.bytes)
                    let ids = try chunk(&source, stream(.dump), slot: slot, batch: batch)
                    let now = Sys.now()
                    slot.entry = ManifestEntry(kind: .file, path: Array(f.path.utf8), mode: f.mode,
                                               uid: 0, gid: 0, mtimeSec: now.sec, mtimeNsec: now.nsec,
                                               ctimeSec: now.sec, ctimeNsec: now.nsec, size: UInt64(f.bytes.count), blobs: ids)
                } catch { fail(error) }
                complete(slot)
            }
        }
    }

    func complete(_ slot: Slot) {
        slotCondition.lock()
        slot.done = true
        // Only the slot the manifest writer waits for wakes it.
        if waitingFor === slot { slotCondition.signal() }
        slotCondition.unlock()
    }

    /// After this many bytes a dump stream's chunks are hashed and stored on
    /// a helper thread (`ChunkHandoff`) while this one cuts the rest.
    static let handoffAfter: UInt64 = 8 << 20

    /// Chunks a source and stores its new chunks; returns the blob ids.
    func chunk<S: ByteSource>(_ source: inout S, _ stream: ChunkStream, slot: Slot, batch: BlobSink.Batch) throws -> [BlobID] {
        var acceptor = ChunkAcceptor(sink: sink, batch: batch, slot: slot, progress: options.progress)
        var handoff: ChunkHandoff?
        // Only streams of small chunks (dumps): there hashing is a large share
        // of the work per byte, and batches stay near 1 MiB. A tree file's
        // chunks (up to 8 MiB) would make the batches, and memory, large.
        let mayHandOff = options.threads > 1 && stream.profile.max <= ChunkHandoff.maxChunk
        let readBefore = stream.bytesRead, chunkedBefore = slot.bytesRead
        do {
            try stream.forEachChunk(from: &source) { chunk in
                if let h = handoff { return try h.add(chunk) }
                try acceptor.accept(chunk)
                if mayHandOff && slot.bytesRead >= Self.handoffAfter { handoff = ChunkHandoff(continuing: acceptor) }
            }
            if let h = handoff { acceptor = try h.finish() }
        } catch {
            handoff?.abandon()
            throw error
        }
        // Every byte read must be in a chunk: a cheap guard on the hand-off.
        let read = stream.bytesRead - readBefore, chunked = slot.bytesRead - chunkedBefore
        guard read == chunked else { throw BackupError.chunkedBytesMismatch(slot.entry?.path.displayPath ?? "a command source", read: read, chunked: chunked) }
        return acceptor.ids
    }

    func readFile(_ slot: Slot, _ path: RawPath, _ st: FileStatus, _ stream: ChunkStream, _ batch: BlobSink.Batch) throws {
        let fd = try Sys.open(path, Sys.O_RDONLY | Sys.O_NOFOLLOW)
        defer { Sys.close(fd) }
        var source = FileDescriptorSource(fd: fd, path: path.displayPath)
        let ids = try chunk(&source, stream, slot: slot, batch: batch)
        slot.entry!.blobs = ids
        slot.entry!.size = slot.bytesRead
        options.progress?.addFile()
    }

    func runCommand(_ slot: Slot, _ c: CommandSource, _ stream: ChunkStream, _ batch: BlobSink.Batch) throws {
        let runner = CommandRunner(command: c.command, environment: c.environment)
        let out: Int32
        do { out = try runner.start() } catch CommandError.cannotStart(_, let reason) {
            throw BackupError.commandStartFailed(c.command, reason: reason)
        }
        var source = FileDescriptorSource(fd: out, path: "stdout of `\(c.command)`")
        let ids: [BlobID]
        do { ids = try chunk(&source, stream, slot: slot, batch: batch) } catch {
            runner.kill()
            _ = runner.wait()
            throw error
        }
        let status = runner.wait()
        guard status.succeeded else {
            throw BackupError.commandFailed(path: c.path, command: c.command, status: status.description, stderrTail: runner.stderrTail)
        }
        let now = Sys.now()
        slot.entry = ManifestEntry(kind: .stream, path: normalize(Array(c.path.utf8)), mode: 0o600,
                                   uid: 0, gid: 0, mtimeSec: now.sec, mtimeNsec: now.nsec,
                                   ctimeSec: now.sec, ctimeNsec: now.nsec, size: slot.bytesRead, blobs: ids)
        options.progress?.addFile()
    }
}

/// Reads bytes held in memory.
struct MemorySource: ByteSource {
    let bytes: [UInt8]
    var position = 0
    init(bytes: [UInt8]) { self.bytes = bytes }
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, bytes.count - position)
        if n > 0 { bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + position, byteCount: n) } }
        position += n
        return n
    }
}

/// Streams the parent snapshot's manifest alongside the walk.
struct ParentCursor {
    var reader: ManifestReader
    var current: ManifestEntry?
    var started = false
    var broken = false

    init(reader: ManifestReader) { self.reader = reader }

    mutating func find(_ path: RawPath, onError: (String) -> Void) -> ManifestEntry? {
        if broken { return nil }
        do {
            if !started { started = true; current = try reader.next() }
            while let c = current, ManifestEntry.compareTreeOrder(c.path, path) < 0 { current = try reader.next() }
        } catch {
            onError("parent snapshot's manifest is unreadable (\(error)); reading every file")
            broken = true
            return nil
        }
        return current?.path == path ? current : nil
    }
}
