import Foundation
import AccordCore

/// Restores file contents pack by pack: every blob the selected files need
/// is grouped by the pack holding it, and each pack is read once, front to
/// back (in reads of ~4 MiB windows over the blobs it needs), while a
/// pool of threads verifies, inflates and writes the blobs to their files
/// with positioned writes. A blob used several times is decoded once per
/// pack. Zero blocks are not written, so holes stay holes.
final class PackOrderedWriter {
    struct FileTarget {
        var entry: ManifestEntry   // blobs removed once referenced
        var path: RawPath
    }

    struct BlobRef {
        var id: BlobID
        var location: BlobLocation
        var file: Int32
        var fileOffset: Int64
    }

    static let window: Int64 = 4 << 20
    static let coalesce = 1 << 20
    let repository: Repository
    let threads: Int
    let progress: Progress?
    private(set) var files: [FileTarget] = []
    private var byPack: [Int: [BlobRef]] = [:]
    private let lock = NSLock()
    private(set) var failed: [Int32: Error] = [:]

    init(repository: Repository, threads: Int, progress: Progress?) {
        self.repository = repository
        self.threads = threads
        self.progress = progress
    }

    /// Records where a file's blobs go (`createAll` makes the file).
    func add(_ e: ManifestEntry, at path: RawPath) {
        let n = Int32(files.count)
        var offset: Int64 = 0
        var entry = e
        for id in e.blobs {
            guard let l = repository.index.lookup(id) else {
                failed[n] = BlobError.notInIndex(id)
                break
            }
            byPack[l.packIndex, default: []].append(BlobRef(id: id, location: l, file: n, fileOffset: offset))
            offset += Int64(l.rawLength)
        }
        if failed[n] == nil && UInt64(offset) != e.size {
            failed[n] = RestoreError.sizeMismatch(e.path.displayPath, expected: e.size, got: UInt64(offset))
        }
        entry.blobs = []
        files.append(FileTarget(entry: entry, path: path))
    }

    /// Calls `body` for every file, on `threads` threads, 512 files at a time (so
    /// threads mostly work in different directories and do not queue on their locks).
    func forEachFile(_ body: @escaping (Int32, FileTarget) -> Void) {
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

    /// Creates every file empty (after `prepare` made room for it), in parallel.
    func createAll(prepare: @escaping (RawPath) throws -> Void) {
        forEachFile { [unowned self] n, f in
            do {
                // Into a fresh tree the file is new and its directory exists: one
                // call. Otherwise make room first (parents, an old entry) and retry.
                let flags = Sys.O_WRONLY | Sys.O_CREAT | Sys.O_EXCL | Sys.O_NOFOLLOW
                let fd: Int32
                do { fd = try Sys.open(f.path, flags, mode: 0o600) } catch let e as SystemError where e.errno == EEXIST || e.errno == ENOENT {
                    try prepare(f.path)
                    fd = try Sys.open(f.path, flags, mode: 0o600)
                }
                Sys.close(fd)
            } catch {
                markFailed(n, error)
            }
        }
    }

    /// Writes every blob; then truncates each file to its size. Files whose
    /// blobs could not be read are in `failed` afterwards.
    func writeAll() {
        let packs = byPack.keys.sorted()
        let queue = BoundedQueue<Int>(capacity: packs.count + 1)
        for p in packs { queue.push(p) }
        queue.close()
        let workers = WorkerGroup()
        workers.spawn(max(1, threads), name: "restore") { [unowned self] _ in
            let inflater = Inflater()
            var span: [UInt8] = []
            var plain: [UInt8] = []
            var pending: [UInt8] = []
            var fds = FDCache()
            while let p = queue.pop() {
                restorePack(p, inflater: inflater, span: &span, plain: &plain, pending: &pending, fds: &fds)
            }
            fds.closeAll()
        }
        workers.wait()
        byPack.removeAll()
    }

    private func restorePack(_ pack: Int, inflater: Inflater, span: inout [UInt8], plain: inout [UInt8],
                             pending: inout [UInt8], fds: inout FDCache) {
        var refs = byPack[pack]!
        refs.sort { ($0.location.offset, $0.file, $0.fileOffset) < ($1.location.offset, $1.file, $1.fileOffset) }
        let packID = repository.index.packs[pack]
        let path = repository.layout.packPath(packID)
        let end = refs.map { Int64($0.location.offset) + Int64($0.location.storedLength) }.max()!
        // The pack is read front to back in windows of ~4 MiB (one read each,
        // a larger blob in a read of its own): few reads, little memory.
        var fd: Int32 = -1
        var readError: Error?
        do { fd = try Sys.open(path, Sys.O_RDONLY) } catch let e as SystemError where e.isNotFound {
            readError = RepositoryError.packMissing(packID, blob: refs[0].id)
        } catch {
            readError = error
        }
        defer { if fd >= 0 { Sys.close(fd) } }
        var start: Int64 = 0
        span.removeAll(keepingCapacity: true)
        func window(covering off: Int64, _ length: Int64) throws {
            start = off
            let want = Swift.max(length, Swift.min(PackOrderedWriter.window, end - off))
            span.resizeForOverwrite(Int(want))
            let n = try span.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, $0.count, off, path: path) }
            if n < span.count { span.removeLast(span.count - n) }
        }
        // Consecutive blobs of one file (a dump's chunks lie in pack order)
        // are written together, up to 1 MiB: fewer writes, and block-aligned
        // ones, so the filesystem does not zero the rest of each block first.
        var pendingFile: Int32 = -1
        var pendingOffset: Int64 = 0
        pending.removeAll(keepingCapacity: true)
        func flushPending() {
            guard pendingFile >= 0 else { return }
            let f = pendingFile
            pendingFile = -1
            if !pending.isEmpty && !isFailed(f) {
                let target = files[Int(f)].path
                do {
                    let out = try fds.open(f, target)
                    try pending.withUnsafeBytes { try writeSkippingZeros($0, fd: out, at: pendingOffset, path: target.displayPath) }
                } catch {
                    markFailed(f, error)
                }
            }
            pending.removeAll(keepingCapacity: true)
        }
        defer { flushPending() }
        var decoded: BlobID? = nil
        for r in refs {
            if isFailed(r.file) { continue }
            if let e = readError { markFailed(r.file, e); continue }
            do {
                if decoded != r.id {
                    let off = Int64(r.location.offset), length = Int64(r.location.storedLength)
                    if off < start || off + length > start + Int64(span.count) {
                        do { try window(covering: off, length) } catch {
                            readError = error
                            throw error
                        }
                    }
                    let lo = Int(off - start), hi = lo + Int(r.location.storedLength)
                    guard hi <= span.count else {
                        throw BlobError.inPack(r.id, pack: packID, offset: r.location.offset, underlying: PackError.truncatedPack(size: Int(start) + span.count))
                    }
                    do {
                        try span.withUnsafeBytes { buf in
                            try BlobDecoder.decode(stored: UnsafeRawBufferPointer(rebasing: buf[lo..<hi]), id: r.id, compression: r.location.compression,
                                                   rawLength: Int(r.location.rawLength), inflater: inflater, into: &plain,
                                                   base: { [repository] in try repository.readBase($0, inflater: inflater) })
                        }
                    } catch {
                        decoded = nil
                        throw BlobError.inPack(r.id, pack: packID, offset: r.location.offset, underlying: error)
                    }
                    decoded = r.id
                }
                if pendingFile == r.file && pendingOffset + Int64(pending.count) == r.fileOffset
                    && pending.count + plain.count <= PackOrderedWriter.coalesce {
                    pending.append(contentsOf: plain)
                } else {
                    flushPending()
                    if plain.count >= PackOrderedWriter.coalesce {
                        let target = files[Int(r.file)].path
                        let out = try fds.open(r.file, target)
                        try plain.withUnsafeBytes { try writeSkippingZeros($0, fd: out, at: r.fileOffset, path: target.displayPath) }
                    } else {
                        pendingFile = r.file
                        pendingOffset = r.fileOffset
                        pending.append(contentsOf: plain)
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

/// A few open descriptors per worker, so consecutive blobs of one file do
/// not reopen it.
struct FDCache {
    private var open: [(file: Int32, fd: Int32)] = []

    mutating func open(_ file: Int32, _ path: RawPath) throws -> Int32 {
        if let i = open.firstIndex(where: { $0.file == file }) { return open[i].fd }
        if open.count >= 16 { Sys.close(open.removeFirst().fd) }
        let fd = try Sys.open(path, Sys.O_WRONLY | Sys.O_NOFOLLOW)
        open.append((file, fd))
        return fd
    }

    mutating func closeAll() { for o in open { Sys.close(o.fd) }; open.removeAll() }
}

/// A shared cursor for threads taking turns at a list.
final class ManagedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func take(_ n: Int) -> Int { lock.withLock { defer { value += n }; return value } }
}
