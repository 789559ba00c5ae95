import Foundation
import AccordCore

public struct RestoreOptions {
    /// Directory the snapshot's absolute paths are placed under ("/" restores in place).
    public var target: RawPath
    /// Restore only these paths (and what is below them); empty = everything.
    public var includes: [RawPath] = []
    public var threads = defaultThreadCount
    public var progress: Progress?
    /// Called for each path that could not be restored; return to go on, throw to stop.
    public var onError: (String, Error) throws -> Void = { _, _ in }
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
/// Contents are written pack by pack (`PackOrderedWriter`): each pack is
/// read once, in order, and a pool of threads verifies (SHA-256), inflates
/// and writes its blobs with positioned writes; zero blocks are skipped so
/// holes stay holes. Hard links are made once their file
/// exists; directory metadata (mode, owner, times) is applied last, deepest
/// first, so writing into a read-only directory works.
public final class Restore {
    let repository: Repository
    let options: RestoreOptions
    let lock = NSLock()
    var result = RestoreResult()
    let isRoot = Sys.isRoot

    public init(repository: Repository, options: RestoreOptions) {
        self.repository = repository
        self.options = options
    }

    func targetPath(_ p: RawPath) -> RawPath {
        var t = options.target
        while t.count > 1 && t.last == 0x2f { t.removeLast() }
        if t == [0x2f] { return p }
        return p == [0x2f] ? t : t + p
    }

    func included(_ e: ManifestEntry) -> Bool {
        if options.includes.isEmpty { return true }
        for inc in options.includes {
            if isUnder(e.path, inc) { return true }
            if e.kind == .directory && isUnder(inc, e.path) { return true }   // an ancestor: create it
        }
        return false
    }

    func isUnder(_ p: RawPath, _ dir: RawPath) -> Bool { ManifestEntry.isWithin(p, dir) }

    public func run(_ snapshot: Snapshot) throws -> RestoreResult {
        var reader = repository.manifestReader(snapshot)
        reader.tolerateListErrors = true   // one damaged chunk list loses one file, not the restore
        options.progress?.setTotals(files: snapshot.summary.files, bytes: options.includes.isEmpty ? snapshot.summary.totalBytes : 0)
        options.progress?.startReporting()
        defer { options.progress?.stop() }
        var contents = PackOrderedWriter(repository: repository, threads: options.threads, progress: options.progress)
        var directories: [ManifestEntry] = []
        var hardlinks: [ManifestEntry] = []
        // The tree in manifest order. File contents are written a segment of
        // files at a time (`PackOrderedWriter.isFull`), so memory does not
        // grow with the number of files; while one segment is written, this
        // thread reads the manifest into the next (and makes its directories).
        var writing: (segment: PackOrderedWriter, done: WorkerGroup)?
        func awaitSegment() throws {
            guard let w = writing else { return }
            writing = nil
            w.done.wait()
            try report(w.segment)
        }
        defer { writing?.done.wait() }   // a stop (thrown error) still lets the writing segment end
        while let e = try reader.next() {
            guard included(e) else { continue }
            let path = targetPath(e.path)
            do {
                switch e.kind {
                case .directory:
                    try Sys.mkdirs(path, mode: 0o700)
                    directories.append(e)
                case .file, .stream:
                    if let why = e.listError { throw RestoreError.contentUnreadable(why) }
                    contents.add(e, at: path)   // created below, in parallel
                case .symlink:
                    try prepare(path)
                    try Sys.symlink(target: e.linkTarget, at: path)
                    try applyMetadata(e, path)
                case .hardlink:
                    hardlinks.append(e)
                }
            } catch {
                result.failed.append(e.path.displayPath)
                try options.onError(e.path.displayPath, error)
            }
            // Outside the entry's catch: what `report` throws is a stop, not this entry's failure.
            if contents.isFull {
                try awaitSegment()
                let segment = contents, done = WorkerGroup()
                done.spawn(1, name: "restore-segment") { [unowned self] _ in write(segment) }
                writing = (segment, done)
                contents = PackOrderedWriter(repository: repository, threads: options.threads, progress: options.progress)
            }
        }
        try awaitSegment()
        write(contents)
        try report(contents)
        for e in hardlinks {
            let path = targetPath(e.path)
            do {
                try prepare(path)
                try Sys.link(existing: targetPath(e.linkTarget), new: path)
                result.files += 1
            } catch {
                result.failed.append(e.path.displayPath)
                try options.onError(e.path.displayPath, error)
            }
        }
        for e in directories.reversed() {
            do { try applyMetadata(e, targetPath(e.path)) } catch {
                try options.onError(e.path.displayPath, error)
            }
            result.directories += 1
        }
        return result
    }

    /// Makes, writes and finishes the files of one segment (on its own threads;
    /// `report` then counts them).
    func write(_ contents: PackOrderedWriter) {
        // Files spread over several packs, and empty ones, are made empty now,
        // on all threads (their directories exist by now).
        let prepare: (RawPath) throws -> Void = { [unowned self] path in try self.prepare(path) }
        contents.createAll(prepare: prepare)
        // Pass 2: contents, pack by pack. Files within one pack (most) are
        // made and finished there.
        contents.writeAll(prepare: prepare) { [unowned self] f, fd in
            try finishFile(f.entry, fd: fd, f.path)
            options.progress?.addFile()
        }
        // Pass 3: sizes and metadata of the other files, on all threads; failed
        // files are removed (`report` names them, in manifest order).
        contents.forEachFile { [unowned self] n, f in
            if contents.isFailed(n) {
                if contents.wasCreated(n) { try? Sys.unlink(f.path) }
                return
            }
            if contents.isFinished(n) { return }
            if f.solo {
                // Neither failed nor finished: not every blob was written (a bug). Never pad it out.
                if contents.wasCreated(n) { try? Sys.unlink(f.path) }
                contents.markFinishFailed(n, RestoreError.incomplete(f.entry.path.displayPath))
                return
            }
            do {
                let fd = try Sys.open(f.path, Sys.O_WRONLY | Sys.O_NOFOLLOW)
                defer { Sys.close(fd) }
                try finishFile(f.entry, fd: fd, f.path)
                options.progress?.addFile()
            } catch {
                contents.markFinishFailed(n, error)
            }
        }
    }

    /// Counts a written segment's files and reports those that failed, in manifest order.
    func report(_ contents: PackOrderedWriter) throws {
        for (i, f) in contents.files.enumerated() {
            if let error = contents.failed[Int32(i)] ?? contents.finishErrors[Int32(i)] {
                result.failed.append(f.entry.path.displayPath)
                try options.onError(f.entry.path.displayPath, error)
                continue
            }
            result.files += 1
            result.bytes += f.entry.size
        }
    }

    /// Size, owner, mode, xattrs and times of a file whose content is written
    /// (through `fd`, open for writing).
    func finishFile(_ e: ManifestEntry, fd: Int32, _ path: RawPath) throws {
        let display = path.displayPath
        // Only a file whose last blocks were zero (left as holes) is short; a
        // truncate to the size it has would still cost ext4 a truncate.
        if try Sys.fstat(fd, path: display).size != e.size { try Sys.ftruncate(fd, Int64(e.size), path: display) }
        if isRoot { try Sys.fchown(fd, uid: e.uid, gid: e.gid, path: display) }
        try Sys.fchmod(fd, mode: e.mode, path: display)
        for x in e.xattrs { try? Sys.setXattr(path, name: x.name, value: x.value) }
        try Sys.setTimes(fd: fd, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec, path: display)
    }

    /// Makes room for a new file: parents exist, an old file of that name is gone.
    func prepare(_ path: RawPath) throws {
        if let slash = path.lastIndex(of: 0x2f), slash > 0 { try Sys.mkdirs(Array(path[..<slash]), mode: 0o700) }
        if let st = try? Sys.lstat(path) {
            if st.isDirectory { try Sys.rmdir(path) } else { try Sys.unlink(path) }
        }
    }

    func applyMetadata(_ e: ManifestEntry, _ path: RawPath) throws {
        if isRoot { try Sys.lchown(path, uid: e.uid, gid: e.gid) }
        for x in e.xattrs { try? Sys.setXattr(path, name: x.name, value: x.value) }
        if e.kind != .symlink { try Sys.chmod(path, mode: e.mode) }
        try Sys.setTimes(path, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec)
    }
}

/// Writes `buf` at `offset`, leaving 4 KiB blocks (aligned to the file) that
/// are all zero unwritten, so they stay holes after the final ftruncate.
func writeSkippingZeros(_ buf: UnsafeRawBufferPointer, fd: Int32, at offset: Int64, path: String) throws {
    let block = 4096
    var pos = 0
    var runStart = -1   // start of a pending run of non-zero blocks
    while pos < buf.count {
        let boundary = Int((offset + Int64(pos)) / Int64(block) + 1) * block - Int(offset)
        let end = min(buf.count, boundary)
        let zero = isAllZero(UnsafeRawBufferPointer(rebasing: buf[pos..<end]))
        if zero {
            if runStart >= 0 {
                try Sys.pwriteAll(fd, UnsafeRawBufferPointer(rebasing: buf[runStart..<pos]), offset + Int64(runStart), path: path)
                runStart = -1
            }
        } else if runStart < 0 {
            runStart = pos
        }
        pos = end
    }
    if runStart >= 0 {
        try Sys.pwriteAll(fd, UnsafeRawBufferPointer(rebasing: buf[runStart..<buf.count]), offset + Int64(runStart), path: path)
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

public enum RestoreError: Error, CustomStringConvertible {
    case sizeMismatch(String, expected: UInt64, got: UInt64)
    case contentUnreadable(String)
    case incomplete(String)
    public var description: String {
        switch self {
        case .sizeMismatch(let p, let e, let g): return "\(p): restored \(g) bytes but the snapshot records \(e): run `accord check --read-data`"
        case .contentUnreadable(let why): return "\(why); the file is not restored"
        case .incomplete(let p): return "internal error: not every blob of \(p) was written, so it is not restored; please report this"
        }
    }
}
