#if canImport(Glibc)
import Glibc
#endif
import AccordCore
import AccordRuntime

/// What `accord mount` serves, independent of FUSE: names resolved to
/// snapshot entries, their attributes, and file contents read on demand. A
/// read maps its offset to the blob holding it (the entry's blob raw lengths,
/// from the index) and decodes only the blobs it touches, verified, the last
/// few kept (`BlobCache`): a random read of a large dump does not read it
/// whole. The snapshot list is the one of mount time. FUSE runs this on one
/// thread (`fuse_loop`), so there is no lock.
final class MountFilesystem {
    enum Root {
        /// The snapshot's tree at the mount point.
        case one(SnapshotID, Snapshot)
        /// `snapshots/<id>/…` for each readable snapshot, and `latest`, a symlink to the newest not dated in the future.
        case all([(id: SnapshotID, snapshot: Snapshot)], latest: SnapshotID?)
    }

    /// A resolved name.
    enum Item {
        /// A directory of the mount itself (the root and `snapshots` of `all`).
        case virtualDirectory(names: [RawPath], time: Timestamp, inode: UInt64)
        case symlink(target: RawPath, time: Timestamp)
        case node(MountTree, Int)
    }

    let repository: Repository
    let root: Root
    private let byHex: [RawPath: Int]
    private var trees: [SnapshotID: MountTree] = [:]
    /// Trees by last use, oldest first: at most `treeLimit` stay in memory (a
    /// tree costs memory per entry; `all` over many large snapshots must not
    /// keep every one). One dropped is read again when next used; open files
    /// and inode numbers do not depend on it.
    private var treeUse: [SnapshotID] = []
    static let treeLimit = 8
    private var unreadable: [SnapshotID: Int32] = [:]
    private var files: [UInt64: OpenFile] = [:]
    private var nextHandle: UInt64 = 1
    private var cache = BlobCache()

    init(repository: Repository, root: Root) {
        self.repository = repository
        self.root = root
        if case .all(let list, _) = root {
            byHex = Dictionary(list.enumerated().map { (Array($1.id.hex.utf8), $0) }) { a, _ in a }
        } else {
            byHex = [:]
        }
    }

    /// The tree of snapshot `id`, read on first use. A manifest that cannot be
    /// read is named once on stderr and gives EIO from then on.
    /// `number` (the snapshot's place in the list) sets its inode numbers apart.
    func tree(_ id: SnapshotID, _ s: Snapshot, number: Int = 0) -> Result<MountTree, Errno> {
        if let e = unreadable[id] { return .failure(Errno(e)) }
        if let i = treeUse.firstIndex(of: id) { treeUse.remove(at: i) }
        treeUse.append(id)
        if let t = trees[id] { return .success(t) }
        do {
            let t = try MountTree(repository: repository, snapshot: s, id: id, inodeBase: UInt64(number + 1) << 32)
            if t.skipped > 0 { warn("mount: snapshot \(id.short): \(t.skipped) manifest entries cannot be placed in a tree and are not shown: run `accord check`") }
            trees[id] = t
            while treeUse.count > Self.treeLimit { trees[treeUse.removeFirst()] = nil }
            return .success(t)
        } catch {
            warn("mount: snapshot \(id.short) cannot be read: \(error)")
            treeUse.removeLast()
            unreadable[id] = EIO
            return .failure(Errno(EIO))
        }
    }

    /// Resolves a path FUSE gives ("/", "/snapshots/<id>/opt/x").
    func resolve(_ path: RawPath) -> Result<Item, Errno> {
        let parts = path.split(separator: 0x2f).map(Array.init)
        switch root {
        case .one(let id, let s):
            return tree(id, s).flatMap { t in t.lookup(parts).map { .success(.node(t, $0)) } ?? .failure(Errno(ENOENT)) }
        case .all(let list, let latest):
            let newest = list.last?.snapshot.time ?? Timestamp(seconds: 0, nanoseconds: 0)
            guard let first = parts.first else {
                return .success(.virtualDirectory(names: [Array("snapshots".utf8)] + (latest == nil ? [] : [Array("latest".utf8)]), time: newest, inode: 1))
            }
            if first == Array("latest".utf8), parts.count == 1, let l = latest {
                return .success(.symlink(target: Array("snapshots/\(l.hex)".utf8), time: newest))
            }
            guard first == Array("snapshots".utf8) else { return .failure(Errno(ENOENT)) }
            guard parts.count > 1 else { return .success(.virtualDirectory(names: list.map { Array($0.id.hex.utf8) }, time: newest, inode: 2)) }
            guard let i = byHex[parts[1]] ?? uniquePrefix(parts[1], of: list) else { return .failure(Errno(ENOENT)) }
            return tree(list[i].id, list[i].snapshot, number: i).flatMap { t in
                t.lookup(parts.dropFirst(2)).map { .success(.node(t, $0)) } ?? .failure(Errno(ENOENT))
            }
        }
    }

    /// The snapshot whose id starts with `name` (8 or more lower-case hex
    /// digits, as `accord snapshots` prints them), when only one does: such a
    /// name works in paths (snapshots/1a2b3c4d/…) but is not listed.
    private func uniquePrefix(_ name: RawPath, of list: [(id: SnapshotID, snapshot: Snapshot)]) -> Int? {
        guard name.count >= 8, name.count < 64, name.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        let prefix = String(decoding: name, as: UTF8.self)
        let hits = list.indices.filter { list[$0].id.hex.hasPrefix(prefix) }
        return hits.count == 1 ? hits[0] : nil
    }

    /// The attributes of `item`: the entry's mode, owner, times and size.
    func attributes(_ item: Item) -> stat {
        var st = stat()
        func time(_ sec: Int64, _ nsec: Int64) -> timespec { timespec(tv_sec: Int(truncatingIfNeeded: sec), tv_nsec: Int(min(max(nsec, 0), 999_999_999))) }
        switch item {
        case .virtualDirectory(let names, let t, let inode):
            st.st_ino = ino_t(inode)
            st.st_mode = S_IFDIR | 0o555
            st.st_nlink = nlink_t(2 + names.count)
            st.st_mtim = time(t.seconds, t.nanoseconds)
            st.st_ctim = st.st_mtim
        case .symlink(let target, let t):
            st.st_ino = 3
            st.st_mode = S_IFLNK | 0o777
            st.st_nlink = 1
            st.st_size = off_t(target.count)
            st.st_mtim = time(t.seconds, t.nanoseconds)
            st.st_ctim = st.st_mtim
        case .node(let tree, let n):
            let node = tree.nodes[n], e = node.entry
            let type: mode_t
            var size = e.size
            switch e.kind {
            case .directory: type = S_IFDIR; size = 4096
            case .symlink: type = S_IFLNK; size = UInt64(e.linkTarget.count)
            case .file, .stream: type = S_IFREG
            case .hardlink: type = S_IFREG; size = node.content.map { tree.nodes[$0].entry.size } ?? 0
            }
            st.st_mode = type | mode_t(e.mode & 0o7777)
            st.st_ino = ino_t(tree.inode(n))
            st.st_nlink = nlink_t(tree.nodes[tree.contentNode(n)].links)
            st.st_uid = uid_t(e.uid)
            st.st_gid = gid_t(e.gid)
            st.st_size = off_t(clamping: size)
            st.st_blocks = blkcnt_t(clamping: (size / 512) + (size % 512 == 0 ? 0 : 1))
            st.st_mtim = time(e.mtimeSec, e.mtimeNsec)
            st.st_ctim = time(e.ctimeSec, e.ctimeNsec)
        }
        st.st_atim = st.st_mtim
        st.st_blksize = 4096
        return st
    }

    // MARK: Contents

    /// An open file: its blobs and where each ends in the file.
    struct OpenFile {
        var name: String
        var blobs: [BlobID]
        var ends: [UInt64]
        var size: UInt64 { ends.last ?? 0 }
    }

    /// Opens a file or stream entry for reading: its blob layout from the
    /// index, which must add up to the size the entry records.
    func open(_ item: Item) -> Result<UInt64, Errno> {
        let tree: MountTree, n: Int
        switch item {
        case .node(let t, let i): (tree, n) = (t, i)
        case .virtualDirectory: return .failure(Errno(EISDIR))
        case .symlink: return .failure(Errno(ELOOP))
        }
        let e = tree.nodes[tree.contentNode(n)].entry
        let name = tree.nodes[n].entry.path.displayPath
        switch e.kind {
        case .directory: return .failure(Errno(EISDIR))
        case .symlink: return .failure(Errno(ELOOP))
        case .hardlink: break   // a link to no file: empty
        case .file, .stream:
            var ends: [UInt64] = []
            ends.reserveCapacity(e.blobs.count)
            var total: UInt64 = 0
            for b in e.blobs {
                guard let l = repository.index.lookup(b) else {
                    warn("mount: \(name): blob \(b.short) is not in the index: run `accord check`")
                    return .failure(Errno(EIO))
                }
                total += UInt64(l.rawLength)
                ends.append(total)
            }
            guard total == e.size else {
                warn("mount: \(name): its blobs hold \(total) bytes, its entry says \(e.size): run `accord check`")
                return .failure(Errno(EIO))
            }
            return .success(add(OpenFile(name: name, blobs: e.blobs, ends: ends)))
        }
        return .success(add(OpenFile(name: name, blobs: [], ends: [])))
    }

    private func add(_ f: OpenFile) -> UInt64 {
        let h = nextHandle
        nextHandle &+= 1
        files[h] = f
        return h
    }

    func release(_ handle: UInt64) { files[handle] = nil }

    /// Reads up to `buffer.count` bytes at `offset` of open file `handle`;
    /// returns how many (0 at the end), or an errno.
    func read(_ handle: UInt64, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Result<Int, Errno> {
        guard let f = files[handle] else { return .failure(Errno(EBADF)) }
        guard offset >= 0 else { return .failure(Errno(EINVAL)) }
        var pos = UInt64(offset), done = 0
        guard pos < f.size else { return .success(0) }
        // The first blob ending after `pos`.
        var lo = 0, hi = f.ends.count - 1
        while lo < hi { let mid = (lo + hi) / 2; if f.ends[mid] <= pos { lo = mid + 1 } else { hi = mid } }
        var i = lo
        while done < buffer.count, i < f.blobs.count {
            let start = i == 0 ? 0 : f.ends[i - 1]
            do {
                let n = try cache.withBlob(f.blobs[i], repository: repository) { bytes -> Int in
                    guard UInt64(bytes.count) == f.ends[i] - start else { throw BlobError.corrupt(f.blobs[i], reason: "\(bytes.count) bytes, the index says \(f.ends[i] - start)") }
                    let from = Int(pos - start), n = min(bytes.count - from, buffer.count - done)
                    UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + n)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[from..<(from + n)]))
                    return n
                }
                done += n
                pos += UInt64(n)
            } catch {
                warn("mount: \(f.name): \(error)")
                return .failure(Errno(EIO))
            }
            i += 1
        }
        return .success(done)
    }
}

/// An errno for FUSE (which wants it negated).
struct Errno: Error {
    var code: Int32
    init(_ code: Int32) { self.code = code }
}

/// The last few blobs a mount decoded: the kernel reads a file in pieces of
/// 128 KiB or so, and a blob averages 1 MiB; a few readers at once each keep theirs.
struct BlobCache {
    private var entries: [(id: BlobID, bytes: [UInt8])] = []
    private let inflater = Inflater()
    private var scratch: [UInt8] = []
    static let capacity = 4

    mutating func withBlob<R>(_ id: BlobID, repository: Repository, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        if let i = entries.firstIndex(where: { $0.id == id }) {
            let e = entries.remove(at: i)
            entries.append(e)
        } else {
            var bytes = entries.count >= Self.capacity ? entries.removeFirst().bytes : []
            try repository.readVerified(id, inflater: inflater, scratch: &scratch, into: &bytes)
            entries.append((id, bytes))
        }
        return try entries[entries.count - 1].bytes.withUnsafeBytes(body)
    }
}
