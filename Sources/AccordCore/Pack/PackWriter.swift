import AccordRuntime
/// Appends stored blobs to a temporary file and turns it into a pack.
///
/// Durability: nothing is durable until `finish()` returns; then the pack is
/// fsynced and renamed to `data/XX/<packid>` and its directory fsynced. A
/// crash before leaves only a file in `<repo>/tmp/`, which no reader looks at.
/// On an object store (`init(backend:)`) the pack is gathered in memory
/// (packs are ~16 MiB) and `finish()` writes it whole, so nothing is visible
/// under its name before it is complete, and nothing is left by a crash.
/// Not thread-safe: one writer per thread, or a lock around it.
public final class PackWriter {
    let repository: RepositoryLayout?
    let tmpPath: String
    /// -1 when the pack is gathered in memory for `objectStore`.
    let fd: Int32
    let objectStore: (any Backend)?
    let hasher = SHA256Hasher()
    public private(set) var entries: [PackEntry] = []
    public private(set) var size: Int = 0
    /// Small blobs are gathered here and written 1 MiB at a time.
    private var buffer: [UInt8] = []
    private static let bufferSize = 1 << 20

    public init(layout: RepositoryLayout) throws {
        repository = layout
        objectStore = nil
        tmpPath = layout.tmpDirectory + "/pack-" + hexString(Sys.randomBytes(8)) + ".tmp"
        fd = try Sys.open(tmpPath, Sys.O_WRONLY | Sys.O_CREAT | Sys.O_EXCL, mode: 0o600)
    }

    /// A pack gathered in memory (room for `capacity` bytes reserved) and
    /// written whole to `backend` by `finish()`. The room includes the
    /// largest chunk (the blob that fills the pack may start just short of
    /// `capacity`) and a header: growing the buffer would copy it into one
    /// twice its size. Pages are resident only as they are written.
    public init(backend: any Backend, capacity: Int) {
        repository = nil
        objectStore = backend
        tmpPath = ""
        fd = -1
        buffer.reserveCapacity(min(max(capacity, 0), 64 << 20) + ChunkerProfile.tree.max + (1 << 20))
    }

    deinit {
        if fd >= 0 && !finished { Sys.close(fd); try? Sys.unlink(tmpPath) }
    }

    private var finished = false

    public var isEmpty: Bool { entries.isEmpty }

    /// Appends one stored blob.
    public func add(id: BlobID, type: BlobType, compression: BlobCompression, rawLength: Int, stored: UnsafeRawBufferPointer) throws {
        if objectStore != nil {
            buffer.append(contentsOf: stored)
        } else if stored.count >= Self.bufferSize {
            try flushBuffer()
            try Sys.writeAll(fd, stored, path: tmpPath)
        } else {
            if buffer.count + stored.count > Self.bufferSize { try flushBuffer() }
            buffer.append(contentsOf: stored)
        }
        hasher.update(data: stored)
        entries.append(PackEntry(id: id, type: type, compression: compression, rawLength: UInt32(rawLength),
                                 storedLength: UInt32(stored.count), offset: UInt32(size)))
        size += stored.count
    }

    private func flushBuffer() throws {
        if buffer.isEmpty || fd < 0 { return }
        try buffer.withUnsafeBytes { try Sys.writeAll(fd, $0, path: tmpPath) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes the header, fsyncs, renames into `data/`. Returns the pack id.
    public func finish() throws -> PackID {
        if let store = objectStore { return try finishInMemory(store) }
        try flushBuffer()
        let tail = PackFormat.encodeTail(entries)
        try Sys.writeAll(fd, tail, path: tmpPath)
        hasher.update(data: tail)
        try Sys.fsync(fd, path: tmpPath)
        Sys.close(fd)
        finished = true
        let id = PackID(digest: hasher.finalize())   // a pack is named by the hash of its bytes
        let repository = repository!   // a file pack has its layout (init(layout:))
        let dir = repository.packDirectory(id)
        if try Sys.mkdir(dir, mode: 0o700) { try Sys.fsyncDirectory(repository.dataDirectory) }
        try Sys.rename(tmpPath, repository.packPath(id))
        try Sys.fsyncDirectory(dir)
        size += tail.count
        return id
    }

    /// Appends the header and writes the pack whole to `store` (durable when
    /// `write` returns, per the `Backend` contract).
    private func finishInMemory(_ store: any Backend) throws -> PackID {
        let tail = PackFormat.encodeTail(entries)
        buffer.append(contentsOf: tail)
        hasher.update(data: tail)
        finished = true
        let id = PackID(digest: hasher.finalize())
        try buffer.withUnsafeBytes { try store.write(.pack, id.hex, $0) }
        // Its tree blobs go to the local cache (a no-change backup reads its parent's manifest there).
        if let cache = store as? any BlobCache {
            buffer.withUnsafeBytes { b in
                for e in entries where e.type == .tree {
                    cache.cacheBlob(e.id, UnsafeRawBufferPointer(rebasing: b[Int(e.offset)..<Int(e.offset) + Int(e.storedLength)]))
                }
            }
        }
        size += tail.count
        buffer = []
        // tuneMalloc keeps freed buffers resident: a few packs in flight at
        // once would otherwise leave ~17 MiB each behind (measured: a backup's
        // peak RSS on a bucket 164-216 MiB before, 123-148 after: Benchmarks/README.md, session 25).
        Sys.trimMalloc()
        return id
    }

    /// Abandons the pack: removes the temporary file (or drops the memory).
    public func abandon() {
        if !finished { if fd >= 0 { Sys.close(fd); try? Sys.unlink(tmpPath) }; buffer = []; finished = true }
    }
}
