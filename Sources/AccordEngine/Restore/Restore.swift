import Foundation
import AccordRuntime
import class AccordRuntime.Progress // over Foundation.Progress
@_spi(Testing) import AccordCore

public struct RestoreOptions {
    /// Directory the snapshot's absolute paths are placed under ("/" restores in place).
    public var target: RawPath
    /// Restore only these paths (and what is below them); empty = everything.
    public var includes: [RawPath] = []
    /// Restore only the snapshot's entries at and below this path, placing the
    /// path itself at `target` (not below it): `/opt/s/git` with target
    /// `/opt/s/git` restores that tree in place and touches none of its
    /// ancestors (a plan's replaced paths). nil: every entry, at `target + path`.
    public var subtree: RawPath?
    public var threads = defaultThreadCount
    public var progress: Progress?
    /// Called for each path that could not be restored; return to go on, throw to stop.
    public var onError: (String, Error) throws -> Void = { _, _ in }
    /// Called before the restore first removes or replaces an entry that was
    /// in the target (a file, link or directory of a restored path): once,
    /// by the first thread to get there, the others waiting for it. When it
    /// throws, the restore stops with `RestoreError.replaceRefused` and
    /// nothing that was there is removed or replaced. What it made under new
    /// names stays: the files of the segment being written then (each whole,
    /// or removed), and directories, left 0700 without the snapshot's
    /// metadata. (When it is never called, directories that were there still
    /// get the snapshot's owner, xattrs, mode and times at the end: no data
    /// is replaced that way.)
    /// `accord restore` waits there for its lock's second look.
    public var beforeReplacing: (@Sendable () throws -> Void)?
    /// Tests only: read the manifest without its validity rules
    /// (`ManifestReader.validates`), so hostile entries reach this layer
    /// and the tests show it stays inside the target on its own.
    @_spi(Testing) public var skipsManifestValidationForTests = false
    /// Most bytes of entries the preflight keeps for the write pass
    /// (`Restore.preflight`); beyond it the write pass reads the manifest
    /// again. Tests set it low to take that way.
    @_spi(Testing) public var preflightKeepsBytes = 32 << 20
    public init(target: RawPath) { self.target = target }
}

public struct RestoreResult {
    public var files = 0
    public var directories = 0
    public var bytes: UInt64 = 0
    public var failed: [String] = []
}

/// Rehydrates a snapshot under a target directory.
///
/// The target is opened once (`RestoreTarget`) and every entry is made
/// relative to it without following any symlink beneath it, so no entry,
/// whatever its path or the symlinks before it, reaches outside. Before
/// anything is written the whole manifest is read once (no contents): a
/// record the reader rejects, or a path that is not absolute and canonical,
/// refuses the restore with nothing written. The entries it read are kept
/// for the write pass when they fit (`RestoreOptions.preflightKeepsBytes`),
/// so the manifest is read and validated once; a larger one is read again.
///
/// Contents are written pack by pack (`RestoreFileWriter`): each pack is
/// read once, in order, and a pool of threads verifies (SHA-256), inflates
/// and writes its blobs with positioned writes; zero blocks are skipped so
/// holes stay holes. Hard links are made once their file
/// exists; directory metadata (mode, owner, times) is applied last, deepest
/// first, so writing into a read-only directory works.
///
/// `@unchecked Sendable`: `write` runs a segment on its own threads, which
/// use only `let`s (`options`, `repository`, `isRoot`); `result`,
/// `linkTargets` and `restoredLinkTargets` (and `options.onError`) are used
/// by the thread calling `run` alone.
public final class Restore: @unchecked Sendable {
    let repository: Repository
    let options: RestoreOptions
    let lock = NSLock()
    var result = RestoreResult()
    let isRoot = Sys.isRoot

    public init(repository: Repository, options: RestoreOptions) {
        self.repository = repository
        self.options = options
    }

    /// Where a snapshot path goes, relative to the target; nil outside `subtree`.
    func relative(_ p: RawPath) -> RawPath? { RestorePath.relative(p, to: options.subtree ?? [0x2f]) }

    /// Paths of the files hard links name (`preflight`), and those of them this run restored (`report`).
    var linkTargets = Set<RawPath>()
    var restoredLinkTargets = Set<RawPath>()

    func included(_ e: ManifestEntry) -> Bool {
        if let s = options.subtree, !ManifestEntry.isWithin(e.path, s) { return false }
        if options.includes.isEmpty { return true }
        for inc in options.includes {
            if isUnder(e.path, inc) { return true }
            if e.kind == .directory && isUnder(inc, e.path) { return true }   // an ancestor: create it
        }
        return false
    }

    func isUnder(_ p: RawPath, _ dir: RawPath) -> Bool { ManifestEntry.isWithin(p, dir) }

    /// Reads the whole manifest (entries only, no contents) and refuses the
    /// restore, before anything is written, if the reader rejects a record or
    /// a path could leave the target; notes which files hard links name.
    ///
    /// Returns the entries the restore includes, as read and checked here, when
    /// they fit in `options.preflightKeepsBytes` (32 MiB: some 80,000 entries
    /// of small files): the write pass then takes them instead of
    /// loading, decoding and validating the manifest again (the second read
    /// was most of what confinement added to a full restore's CPU). nil for a
    /// larger manifest: the write pass streams it again, so memory stays bounded.
    func preflight(_ snapshot: Snapshot) throws -> [ManifestEntry]? {
        var reader = repository.manifestReader(snapshot)
        reader.validates = !options.skipsManifestValidationForTests
        reader.tolerateListErrors = true
        var kept: [ManifestEntry]? = []
        if options.includes.isEmpty && options.subtree == nil {
            // Room for the entries the summary counts (untrusted: each count
            // clamped, the whole within the limit), saving the array's regrowth.
            let s = snapshot.summary, counted = [s.files, s.directories, s.symlinks].reduce(0) { $0 + min(max($1, 0), 1 << 24) }
            kept!.reserveCapacity(min(counted, options.preflightKeepsBytes / Self.footprint(ManifestEntry(kind: .file, path: []))))
        }
        var keptBytes = 0
        var number = 0
        while var e = try reader.next() {
            number += 1
            guard RestorePath.isCanonical(e.path) else { throw RestoreError.unsafeEntry(e.path, record: number) }
            let wanted = included(e)
            if e.kind == .hardlink {
                guard RestorePath.isCanonical(e.linkTarget) else { throw RestoreError.unsafeEntry(e.linkTarget, record: number) }
                if wanted { linkTargets.insert(e.linkTarget) }
            }
            guard wanted, kept != nil else { continue }
            e.list = nil   // restore needs the content ids only
            keptBytes += Self.footprint(e)
            if keptBytes > options.preflightKeepsBytes { kept = nil } else { kept!.append(e) }
        }
        return kept
    }

    /// About what a kept entry takes: the struct and its arrays' bytes and headers.
    static func footprint(_ e: ManifestEntry) -> Int {
        var n = MemoryLayout<ManifestEntry>.stride + 4 * 32 + e.path.count + e.linkTarget.count + e.blobs.count * MemoryLayout<BlobID>.stride
        for x in e.xattrs { n += 64 + x.name.count + x.value.count }
        return n
    }

    /// The write pass's entries: those the preflight kept, or the manifest read again.
    struct Entries {
        var kept: [ManifestEntry]?
        var next = 0
        var reader: ManifestReader?

        mutating func take() throws -> ManifestEntry? {
            guard kept != nil else { return try reader!.next() }
            guard next < kept!.count else { kept = []; return nil }
            var e = ManifestEntry(kind: .directory, path: [])
            swap(&e, &kept![next])   // the array lets go of what the restore is done with
            next += 1
            return e
        }
    }

    public func run(_ snapshot: Snapshot) throws -> RestoreResult {
        if let s = options.subtree, !RestorePath.isCanonical(s) { throw RestoreError.unsafeEntry(s, record: 0) }
        try RestoreTarget.check(options.target)
        var entries = Entries(kept: try preflight(snapshot))
        let target = try RestoreTarget(opening: options.target, beforeReplacing: options.beforeReplacing)
        if entries.kept == nil {
            var reader = repository.manifestReader(snapshot)
            reader.validates = !options.skipsManifestValidationForTests
            reader.tolerateListErrors = true   // one damaged chunk list loses one file, not the restore
            entries.reader = reader
        }
        let partial = !options.includes.isEmpty || options.subtree != nil
        options.progress?.setTotals(files: snapshot.summary.files, bytes: partial ? 0 : snapshot.summary.totalBytes)
        options.progress?.startReporting()
        defer { options.progress?.stop() }
        var contents = RestoreFileWriter(repository: repository, target: target, threads: options.threads, progress: options.progress)
        var directories: [(entry: ManifestEntry, relative: RawPath)] = []
        var hardlinks: [ManifestEntry] = []
        // The tree in manifest order. File contents are written a segment of
        // files at a time (`RestoreFileWriter.isFull`), so memory does not
        // grow with the number of files; while one segment is written, this
        // thread reads the manifest into the next (and makes its directories).
        var writing: (segment: RestoreFileWriter, done: WorkerGroup)?
        func awaitSegment() throws {
            guard let w = writing else { return }
            writing = nil
            w.done.wait()
            try report(w.segment)
        }
        defer { writing?.done.wait() }   // a stop (thrown error) still lets the writing segment end
        while let e = try entries.take() {
            if let refusal = target.gate?.refusal { throw refusal }   // a writer thread met it: stop making entries
            guard included(e), let path = relative(e.path) else { continue }
            do {
                // Read again, the manifest must not differ from what the preflight checked.
                if entries.reader != nil { guard RestorePath.isCanonical(e.path) else { throw RestoreError.unsafeEntry(e.path, record: 0) } }
                switch e.kind {
                case .directory:
                    try target.makeDirectory(path, mode: 0o700)
                    directories.append((e, path))
                case .file, .stream:
                    if let why = e.listError { throw RestoreError.contentUnreadable(why) }
                    if path.isEmpty { throw RestoreError.rootNotDirectory(target.display(path), kind: "a file") }
                    contents.add(e, at: path)   // created below, in parallel
                case .symlink:
                    try target.makeSymlink(path, e, setOwner: isRoot)
                case .hardlink:
                    hardlinks.append(e)
                }
            } catch {
                try failed(e.path.displayPath, error)
            }
            // Outside the entry's catch: what `report` throws is a stop, not this entry's failure.
            if contents.isFull {
                try awaitSegment()
                let segment = contents, done = WorkerGroup()
                done.spawn(1, name: "restore-segment") { [unowned self] _ in write(segment) }
                writing = (segment, done)
                contents = RestoreFileWriter(repository: repository, target: target, threads: options.threads, progress: options.progress)
            }
        }
        try awaitSegment()
        write(contents)
        try report(contents)
        try finish(hardlinks: hardlinks, directories: directories, in: target)
        return result
    }

    /// After every file's contents: hard links (to files this run restored),
    /// then directories' metadata, deepest first (so their times stay).
    func finish(hardlinks: [ManifestEntry], directories: [(entry: ManifestEntry, relative: RawPath)], in target: RestoreTarget) throws {
        for e in hardlinks {
            do {
                // Only to a file this run restored: never to one outside the
                // snapshot, the target or the restored part, nor to a directory.
                guard let path = relative(e.path), restoredLinkTargets.contains(e.linkTarget), let existing = relative(e.linkTarget) else {
                    throw RestoreError.hardlinkTargetNotRestored(e.path.displayPath, target: e.linkTarget.displayPath)
                }
                try target.makeHardLink(path, to: existing)
                result.files += 1
            } catch {
                try failed(e.path.displayPath, error)
            }
        }
        for (e, path) in directories.reversed() {
            do { try target.setDirectoryMetadata(path, e, setOwner: isRoot) } catch {
                try options.onError(e.path.displayPath, error)
            }
            result.directories += 1
        }
    }

    /// Makes, writes and finishes the files of one segment (on its own threads;
    /// `report` then counts them).
    func write(_ contents: RestoreFileWriter) {
        let target = contents.target
        // Files spread over several packs, and empty ones, are made empty now,
        // on all threads (their directories exist by now).
        contents.createAll()
        // Pass 2: contents, pack by pack. Files within one pack (most) are
        // made and finished there.
        contents.writeAll { [unowned self] f, fd in
            try finishFile(f.entry, fd: fd, target.display(f.path))
            options.progress?.addFile()
        }
        // Pass 3: sizes and metadata of the other files, on all threads; failed
        // files are removed (`report` names them, in manifest order).
        contents.forEachFile { [unowned self] n, f in
            if contents.isFailed(n) {
                if contents.wasCreated(n) { try? target.remove(f.path) }
                return
            }
            if contents.isFinished(n) { return }
            if f.solo {
                // Neither failed nor finished: not every blob was written (a bug). Never pad it out.
                if contents.wasCreated(n) { try? target.remove(f.path) }
                contents.markFinishFailed(n, RestoreError.incomplete(f.entry.path.displayPath))
                return
            }
            do {
                let fd = try target.open(f.path, Sys.O_WRONLY)
                defer { Sys.close(fd) }
                try finishFile(f.entry, fd: fd, target.display(f.path))
                options.progress?.addFile()
            } catch {
                contents.markFinishFailed(n, error)
            }
        }
    }

    /// Records an entry that could not be restored and tells `onError`;
    /// a refusal to replace (`RestoreOptions.beforeReplacing`) stops the restore.
    func failed(_ path: String, _ error: Error) throws {
        if case RestoreError.replaceRefused = error { throw error }
        result.failed.append(path)
        try options.onError(path, error)
    }

    /// Counts a written segment's files and reports those that failed, in manifest order.
    func report(_ contents: RestoreFileWriter) throws {
        for (i, f) in contents.files.enumerated() {
            if let error = contents.failed[Int32(i)] ?? contents.finishErrors[Int32(i)] {
                try failed(f.entry.path.displayPath, error)
                continue
            }
            result.files += 1
            result.bytes += f.entry.size
            if !linkTargets.isEmpty && linkTargets.contains(f.entry.path) { restoredLinkTargets.insert(f.entry.path) }
        }
    }

    /// Size, owner, mode, xattrs and times of a file whose content is written
    /// (through `fd`, open for writing; `display` names it in an error, made only then).
    func finishFile(_ e: ManifestEntry, fd: Int32, _ display: @autoclosure () -> String) throws {
        do {
            let st = try Sys.fstat(fd)
            // Only a file whose last blocks were zero (left as holes) is short; a
            // truncate to the size it has would still cost ext4 a truncate.
            if st.size != e.size { try Sys.ftruncate(fd, Int64(e.size)) }
            // The file is new (ours, 0600): a call that would change nothing is
            // left out (a root restore of root's files saves a chown per file).
            // A chown (which clears set-id bits) is always followed by the chmod.
            let chown = isRoot && (st.uid != e.uid || st.gid != e.gid)
            if chown { try Sys.fchown(fd, uid: e.uid, gid: e.gid) }
            if chown || st.mode & 0o7777 != e.mode { try Sys.fchmod(fd, mode: e.mode) }
            for x in e.xattrs { try? Sys.setXattr(fd: fd, name: x.name, value: x.value, path: "") }
            try Sys.setTimes(fd: fd, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec)
        } catch var error as SystemError {
            error.path = display()
            throw error
        }
    }
}

/// Writes `buf` at `offset`, leaving 4 KiB blocks (aligned to the file) that
/// are all zero unwritten, so they stay holes after the final ftruncate.
/// `path` names the file in an error (made only then).
func writeSkippingZeros(_ buf: UnsafeRawBufferPointer, fd: Int32, at offset: Int64, path: @autoclosure () -> String) throws {
    do { try writeSkippingZeros(buf, fd: fd, at: offset) } catch var e as SystemError {
        e.path = path()
        throw e
    }
}

private func writeSkippingZeros(_ buf: UnsafeRawBufferPointer, fd: Int32, at offset: Int64) throws {
    let block = 4096
    var pos = 0
    var runStart = -1   // start of a pending run of non-zero blocks
    while pos < buf.count {
        let boundary = Int((offset + Int64(pos)) / Int64(block) + 1) * block - Int(offset)
        let end = min(buf.count, boundary)
        let zero = isAllZero(UnsafeRawBufferPointer(rebasing: buf[pos..<end]))
        if zero {
            if runStart >= 0 {
                try Sys.pwriteAll(fd, UnsafeRawBufferPointer(rebasing: buf[runStart..<pos]), offset + Int64(runStart))
                runStart = -1
            }
        } else if runStart < 0 {
            runStart = pos
        }
        pos = end
    }
    if runStart >= 0 {
        try Sys.pwriteAll(fd, UnsafeRawBufferPointer(rebasing: buf[runStart..<buf.count]), offset + Int64(runStart))
    }
}

@inline(__always)
func isAllZero(_ buf: UnsafeRawBufferPointer) -> Bool {
    let n = buf.count
    var i = 0
    let words = n / 8
    while i < words {
        if buf.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) != 0 { return false }
        i += 1
    }
    i = words * 8
    while i < n { if buf[i] != 0 { return false }; i += 1 }
    return true
}
