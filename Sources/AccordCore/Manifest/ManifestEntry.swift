import AccordRuntime
/// One node of a snapshot's tree. Entries are kept in *tree order* (see
/// `ManifestEntry.treeOrder`): a directory before its contents, siblings by
/// name bytes. FORMAT.md, "Manifest", gives the byte encoding.
public struct ManifestEntry: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        case file = 1
        case directory = 2
        case symlink = 3
        /// A further name of an earlier regular file; `linkTarget` is that file's path.
        case hardlink = 4
        /// The stdout of a command source, stored as one virtual file.
        case stream = 5
    }

    public var kind: Kind
    /// Absolute path, bytes; "/" is the root.
    public var path: RawPath
    /// Permission bits (st_mode & 0o7777).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var mtimeSec: Int64
    public var mtimeNsec: Int64
    public var ctimeSec: Int64
    public var ctimeNsec: Int64
    public var inode: UInt64
    public var device: UInt64
    public var size: UInt64
    /// Symlink target, or the first path of a hard-linked file.
    public var linkTarget: RawPath
    public var xattrs: [Xattr]
    /// Content, in order; their raw lengths add up to `size`.
    public var blobs: [BlobID]
    /// Set when the record keeps `blobs` in chunk-list blobs (`ChunkList`)
    /// rather than inline; `blobs` is then the resolved list. Not part of `==`.
    public var list: ChunkList.Info?
    /// Set (with `blobs` empty) when the chunk list could not be read and the
    /// reader was asked to go on (`ManifestReader.tolerateListErrors`).
    public var listError: String?

    /// Every blob the entry needs: its content and the list blobs holding it.
    public var referencedBlobs: [BlobID] { list.map { $0.blobs + blobs } ?? blobs }

    public static func == (a: ManifestEntry, b: ManifestEntry) -> Bool {
        a.kind == b.kind && a.path == b.path && a.mode == b.mode && a.uid == b.uid && a.gid == b.gid
            && a.mtimeSec == b.mtimeSec && a.mtimeNsec == b.mtimeNsec && a.ctimeSec == b.ctimeSec
            && a.ctimeNsec == b.ctimeNsec && a.inode == b.inode && a.device == b.device && a.size == b.size
            && a.linkTarget == b.linkTarget && a.xattrs == b.xattrs && a.blobs == b.blobs
    }

    public struct Xattr: Equatable, Sendable {
        public var name: RawPath
        public var value: RawPath
        public init(name: RawPath, value: RawPath) { self.name = name; self.value = value }
    }

    public init(kind: Kind, path: RawPath, mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0,
                mtimeSec: Int64 = 0, mtimeNsec: Int64 = 0, ctimeSec: Int64 = 0, ctimeNsec: Int64 = 0,
                inode: UInt64 = 0, device: UInt64 = 0, size: UInt64 = 0, linkTarget: RawPath = [],
                xattrs: [Xattr] = [], blobs: [BlobID] = []) {
        self.kind = kind; self.path = path; self.mode = mode; self.uid = uid; self.gid = gid
        self.mtimeSec = mtimeSec; self.mtimeNsec = mtimeNsec; self.ctimeSec = ctimeSec; self.ctimeNsec = ctimeNsec
        self.inode = inode; self.device = device; self.size = size; self.linkTarget = linkTarget
        self.xattrs = xattrs; self.blobs = blobs
    }

    /// Is `path` equal to `dir` or below it (component-wise)?
    public static func isWithin(_ path: RawPath, _ dir: RawPath) -> Bool {
        if dir == [0x2f] { return true }
        return path == dir || (path.count > dir.count && path.starts(with: dir) && path[dir.count] == 0x2f)
    }

    /// Tree order: paths compared byte by byte with "/" ranking below every
    /// other byte, so a directory's whole subtree sorts right after it and
    /// before its next sibling ("a", "a/b", "a-c").
    public static func treeOrder(_ a: RawPath, _ b: RawPath) -> Bool {
        compareTreeOrder(a, b) < 0
    }

    /// -1, 0 or 1 as `a` sorts before, with or after `b` in tree order. It
    /// runs for every record a backup merges with its parent's and every one a
    /// reader or the writer checks, and paths in tree order share long
    /// prefixes: the common prefix is skipped 8 bytes a compare.
    public static func compareTreeOrder(_ a: RawPath, _ b: RawPath) -> Int {
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                let n = min(pa.count, pb.count)
                guard n > 0, let x = pa.baseAddress, let y = pb.baseAddress else {
                    return pa.count == pb.count ? 0 : (pa.count < pb.count ? -1 : 1)
                }
                var i = 0
                while i + 8 <= n {
                    // Little-endian words: the lowest differing bit is in the first differing byte.
                    let d = UInt64(littleEndian: UnsafeRawPointer(x + i).loadUnaligned(as: UInt64.self))
                        ^ UInt64(littleEndian: UnsafeRawPointer(y + i).loadUnaligned(as: UInt64.self))
                    if d != 0 { i += d.trailingZeroBitCount >> 3; break }
                    i += 8
                }
                while i < n {
                    let u = x[i], v = y[i]
                    if u != v {
                        let ku: Int = u == 0x2f ? -1 : Int(u)
                        let kv: Int = v == 0x2f ? -1 : Int(v)
                        return ku < kv ? -1 : 1
                    }
                    i += 1
                }
                return pa.count == pb.count ? 0 : (pa.count < pb.count ? -1 : 1)
            }
        }
    }
}
