import AccordRuntime
/// The repository's index, packs and blobs: every pack read and every blob
/// decode in accord passes through here.
extension Repository {
    // MARK: Index

    /// Names of the index files present.
    public func listIndexFiles() throws -> [IndexID] {
        try backend.list(.index).compactMap(IndexID.init(hex:))
    }

    /// Reads and verifies one index file (through `IndexLoader`, the one
    /// reader of index files).
    public func readIndexFile(_ id: IndexID) throws -> IndexFile {
        var sink = IndexFileSink()
        try IndexLoader(backend: backend).load(id, into: &sink)
        return sink.file
    }

    /// The most blobs `loadIndex` reserves room for up front (8 Mi, ~380 MB of index files).
    static let indexReserveCap = 1 << 23

    /// Loads every index file into `index`, replacing what it held (a second
    /// call reloads, renumbering packs: only before readers take `BlobLocation`s,
    /// never while reads are in flight). Commands reach it through the doors in
    /// `RepositoryOpening.swift`. A corrupt file throws (run `repair index`).
    /// Entries of packs missing on disk are left out, so a copy of the same blob in
    /// another pack is used instead (and a backup stores a lost blob again).
    /// Files are read a window at a time (`IndexLoader`), into an index sized
    /// once from the files' sizes.
    public func loadIndex() throws {
        index.removeAll()
        indexFiles = []
        let present = Set(try listPacks())
        let files = try listIndexFiles()
        // Sized from the files' sizes: a hint, so each size (a server's HEAD, a
        // sparse file) is clamped and the sum saturates; an index larger than the
        // cap simply grows.
        var records = 0
        for id in files {
            let size = Swift.max(0, Swift.min((try? backend.size(.index, id.hex)) ?? 0, Int64(Self.indexReserveCap * IndexFile.blobRecordSize)))
            records = Swift.min(records + Int(size) / IndexFile.blobRecordSize, Self.indexReserveCap)
        }
        index.reserve(records)
        let loader = IndexLoader(backend: backend)
        var sink = MasterIndexSink(index: index, present: present)
        for id in files {
            try loader.load(id, into: &sink)
            indexFiles.append(id)
        }
        index.seal()
        isIndexLoaded = true
        // Tree blobs cached for blobs no longer in the repository (pruned) go.
        blobCache?.retainBlobs { index.lookup($0) != nil }
    }

    /// Writes an index file for these packs; durable on return. The first
    /// half of a commit: the snapshot (`saveSnapshot`) is written after it.
    @discardableResult
    public func writeIndex(_ file: IndexFile) throws -> IndexID {
        let bytes = file.encode()
        guard bytes.count <= IndexFile.maxFileSize else {
            throw RepositoryError.indexTooLarge(bytes: bytes.count, packs: file.packs.count)
        }
        let id = IndexID(hashing: bytes)
        try bytes.withUnsafeBytes { try backend.write(.index, id.hex, $0) }
        indexFiles.append(id)
        creation?.packs += file.packs.map(\.id)
        creation?.indexes.append(id)
        return id
    }

    /// Replaces index files `old` by one covering `packs` (prune, repair):
    /// the new file is durable before any old one is deleted.
    @discardableResult
    public func replaceIndex(_ old: [IndexID], with file: IndexFile) throws -> IndexID {
        let newID = try writeIndex(file)
        for id in old where id != newID { try backend.delete(.index, id.hex) }
        indexFiles.removeAll { $0 != newID && old.contains($0) }
        return newID
    }

    // MARK: Packs

    /// Every pack present, by id.
    public func listPacks() throws -> [PackID] {
        try backend.list(.pack).compactMap(PackID.init(hex:))
    }

    /// A pack's size in bytes.
    public func packSize(_ id: PackID) throws -> Int { Int(try backend.size(.pack, id.hex)) }

    /// Reads up to `buffer.count` bytes of a pack at `offset` (locally a cached
    /// descriptor and `pread`, called directly; else a ranged read); fewer only at its end.
    @inline(__always)
    public func readPack(_ id: PackID, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let local else { return try backend.read(.pack, id.hex, at: offset, into: buffer) }
        return try local.withPackFD(id) { fd, path in
            buffer.isEmpty ? 0 : try Sys.preadFully(fd, buffer.baseAddress!, buffer.count, offset, path: path)
        }
    }

    /// A whole pack (check's `--read-data`, prune's repacking).
    public func readPack(_ id: PackID) throws -> [UInt8] { try backend.read(.pack, id.hex) }

    /// A pack's header, read from its end.
    public func readPackHeader(_ id: PackID) throws -> [PackEntry] {
        let size = try packSize(id)
        return try PackReader.readHeader(size: size, sealOverhead: sealOverhead) { try readPack(id, at: $0, into: $1) }
    }

    /// The base a delta blob at `offset` of `pack` names (its first 32 stored
    /// bytes); nil when the pack ends before them.
    public func deltaBase(inPack pack: PackID, offset: UInt32) throws -> BlobID? {
        try PackReader.readDeltaBase(offset: offset) { try readPack(pack, at: $0, into: $1) }
    }

    /// Deletes a pack (prune). Durable on return.
    public func deletePack(_ id: PackID) throws { try backend.delete(.pack, id.hex) }

    /// Packs written by a backup that died before its index was written are
    /// complete and valid: index them now so their blobs are reused. Returns
    /// how many packs were adopted. Unreadable packs are left for `check`.
    @discardableResult
    public func adoptUnindexedPacks() throws -> Int {
        var adopted: [IndexFile.Pack] = []
        for id in try listPacks() where !index.containsPack(id) {
            guard let entries = try? readPackHeader(id) else { continue }
            adopted.append(.init(id: id, blobs: entries))
        }
        if adopted.isEmpty { return 0 }
        let file = IndexFile(packs: adopted)
        try writeIndex(file)
        index.add(file)
        index.seal()
        return adopted.count
    }

    /// A pack assembler writing into this repository, sealing packs at the
    /// configured pack size.
    /// Locally packs are written to `tmp/` and renamed; elsewhere they are
    /// assembled in memory and written whole (`PackWriter`).
    public func makePackAssembler() -> PackAssembler {
        PackAssembler(layout: layout, backend: local == nil ? backend : nil, packSize: config.packSize)
    }

    // MARK: Blobs

    /// Reads a blob's stored bytes (still compressed).
    public func readStored(_ id: BlobID, location l: BlobLocation, into buffer: inout [UInt8]) throws {
        let pack = index.pack(of: l)
        buffer.resizeForOverwrite(Int(l.storedLength))
        let n: Int
        do { n = try buffer.withUnsafeMutableBytes { try readPack(pack, at: Int64(l.offset), into: $0) } } catch BackendError.notFound {
            throw RepositoryError.packMissing(pack, blob: id)
        }
        guard n == Int(l.storedLength) else {
            throw BlobError.inPack(id, pack: pack, offset: l.offset, underlying: PackError.truncatedPack(size: Int(l.offset) + n))
        }
    }

    /// Reads, decodes (inflates, or applies a delta to its base) and verifies
    /// a blob: the one path from a blob id to its bytes.
    public func readVerified(_ id: BlobID, inflater: Inflater, scratch: inout [UInt8], into output: inout [UInt8]) throws {
        guard let l = index.lookup(id) else { throw BlobError.notInIndex(id) }
        try readStored(id, location: l, into: &scratch)
        do {
            try scratch.withUnsafeBytes {
                try decodeVerified(stored: $0, id: id, compression: l.compression, rawLength: Int(l.rawLength), inflater: inflater, into: &output)
            }
        } catch {
            throw BlobError.inPack(id, pack: index.pack(of: l), offset: l.offset, underlying: error)
        }
    }

    /// Decodes and verifies stored bytes already in memory (a pack read
    /// whole or a window of it, a blob from a socket); a delta's base is read
    /// through this repository unless `base` says otherwise. With `id` nil
    /// the hash is left to the caller. The one caller of `BlobDecoder`.
    /// In an encrypted repository the stored bytes are opened first (their
    /// id is then required: it is bound into the seal).
    @inline(__always)
    public func decodeVerified(stored: UnsafeRawBufferPointer, id: BlobID?, compression: BlobCompression, rawLength: Int,
                               inflater: Inflater, into output: inout [UInt8], base: BlobDecoder.BaseReader? = nil) throws {
        let baseReader: BlobDecoder.BaseReader? = compression != .delta ? nil : base ?? { try self.readBase($0, inflater: inflater) }
        guard config.isEncrypted else {
            try BlobDecoder.decode(stored: stored, id: id, compression: compression, rawLength: rawLength, inflater: inflater, into: &output,
                                   base: baseReader)
            return
        }
        guard let crypto else { throw RepositoryError.encryptedWithoutKey(layout.root) }
        guard let id else { throw BlobError.corrupt(.zero, reason: "a sealed blob cannot be opened without its id") }
        try crypto.withBuffer { plain in
            try crypto.openBlob(stored, id: id, compression: compression, rawLength: rawLength, into: &plain)
            try plain.withUnsafeBytes {
                try BlobDecoder.decode(stored: $0, id: id, compression: compression, rawLength: rawLength, inflater: inflater, into: &output,
                                       base: baseReader, idKey: crypto.idKey)
            }
        }
    }

    /// Decodes stored bytes of a blob stored whole (not a delta) for a writer
    /// that only needs them as a delta's base: in an encrypted repository the
    /// seal authenticates them (AES-GCM under the key, the id bound in), so
    /// the id's HMAC is not computed again (a day-2 dump reads back the base
    /// of nearly every chunk); in a plain one nothing else vouches for them,
    /// and they are verified as `decodeVerified` does. A reader of the new
    /// delta verifies its own result either way.
    public func decodeBaseForWriting(stored: UnsafeRawBufferPointer, id: BlobID, compression: BlobCompression, rawLength: Int,
                                     inflater: Inflater, into output: inout [UInt8]) throws {
        guard compression != .delta else { throw DeltaError.baseIsDelta(id) }
        guard config.isEncrypted, let crypto else {
            try decodeVerified(stored: stored, id: id, compression: compression, rawLength: rawLength, inflater: inflater, into: &output)
            return
        }
        try crypto.withBuffer { plain in
            try crypto.openBlob(stored, id: id, compression: compression, rawLength: rawLength, into: &plain)
            try plain.withUnsafeBytes {
                try BlobDecoder.decode(stored: $0, id: nil, compression: compression, rawLength: rawLength, inflater: inflater, into: &output)
            }
        }
    }

    /// `decodeVerified` of stored bytes in a buffer the caller owns and no
    /// longer needs (a restore's or check's pack window): an encrypted blob
    /// is opened where it lies, saving a copy, a pooled buffer and its lock
    /// per blob. Afterwards the bytes are spent: opened or, on a throw,
    /// partly overwritten; a second call on them fails (it never passes bad
    /// bytes: the seal no longer authenticates). Plain blobs are untouched.
    @inline(__always)
    public func decodeVerified(spending stored: UnsafeMutableRawBufferPointer, id: BlobID, compression: BlobCompression, rawLength: Int,
                               inflater: Inflater, into output: inout [UInt8]) throws {
        guard config.isEncrypted else {
            try decodeVerified(stored: UnsafeRawBufferPointer(stored), id: id, compression: compression, rawLength: rawLength,
                               inflater: inflater, into: &output)
            return
        }
        guard let crypto else { throw RepositoryError.encryptedWithoutKey(layout.root) }
        let plain = try crypto.openBlobInPlace(stored, id: id, compression: compression, rawLength: rawLength)
        let baseReader: BlobDecoder.BaseReader? = compression != .delta ? nil : { try self.readBase($0, inflater: inflater) }
        try BlobDecoder.decode(stored: plain, id: id, compression: compression, rawLength: rawLength, inflater: inflater, into: &output,
                               base: baseReader, idKey: crypto.idKey)
    }

    /// Seals version 2 stored bytes for this repository: unchanged in a plain
    /// one, `RepositoryCrypto.sealBlob` in an encrypted one (into `out`,
    /// whose bytes `body` then gives). Every writer of new blobs calls this.
    @inline(__always)
    public func sealStored<R>(_ plain: UnsafeRawBufferPointer, id: BlobID, compression: BlobCompression, rawLength: Int,
                              scratch out: inout [UInt8], body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard config.isEncrypted else { return try body(plain) }
        guard let crypto else { throw RepositoryError.encryptedWithoutKey(layout.root) }
        out.removeAll(keepingCapacity: true)
        try crypto.sealBlob(plain, id: id, compression: compression, rawLength: rawLength, appendingTo: &out)
        return try out.withUnsafeBytes { try body($0) }
    }

    /// Bytes a stored blob has beyond its version 2 form: the seal's nonce and tag in version 3.
    public var sealOverhead: Int { config.isEncrypted ? AESGCMKey.overhead : 0 }

    /// Reads a delta blob's base: a blob stored whole (never itself a delta), verified.
    /// Readers that decode many blobs pass their own `inflater` (it is idle while
    /// a delta's base is read).
    public func readBase(_ id: BlobID, inflater: Inflater?) throws -> [UInt8] {
        guard let l = index.lookup(id) else { throw BlobError.notInIndex(id) }
        guard l.compression != .delta else { throw DeltaError.baseIsDelta(id) }
        var scratch: [UInt8] = [], out: [UInt8] = []
        try readVerified(id, inflater: inflater ?? Inflater(), scratch: &scratch, into: &out)
        return out
    }

    /// `readBase` as a `BlobDecoder.BaseReader`.
    public func readBase(_ id: BlobID) throws -> [UInt8] { try readBase(id, inflater: nil) }

    /// The base a blob stored as a delta names (reads its first 32 stored
    /// bytes; a tree blob's from the bucket's cache when it is there).
    public func deltaBase(of id: BlobID, location l: BlobLocation) throws -> BlobID {
        if l.type == .tree, let cache = blobCache, let stored = cache.cachedBlob(id, storedLength: Int(l.storedLength)),
           let base = stored.withUnsafeBytes({ BlobDecoder.deltaBase(stored: $0) }) {
            return base
        }
        let pack = index.pack(of: l)
        let base: BlobID?
        do { base = try deltaBase(inPack: pack, offset: l.offset) } catch BackendError.notFound {
            throw RepositoryError.packMissing(pack, blob: id)
        }
        guard let base, l.storedLength > 32 else {
            throw BlobError.inPack(id, pack: pack, offset: l.offset, underlying: PackError.truncatedPack(size: Int(l.offset)))
        }
        return base
    }

    /// Convenience for small blobs (manifest pieces, chunk lists). A tree
    /// blob is looked for first in the backend's `BlobCache` (a bucket's local
    /// cache), and what is read from a pack is put there: a no-change backup
    /// then reads its parent's manifest from disk. Bytes from the cache are
    /// decoded and verified exactly as a pack's; ones that fail are forgotten
    /// and the pack is read (so damage in the pack is still reported as
    /// today). A delta's base is read the same way.
    public func readBlob(_ id: BlobID) throws -> [UInt8] {
        guard let cache = blobCache else {
            var scratch: [UInt8] = [], out: [UInt8] = []
            try readVerified(id, inflater: Inflater(), scratch: &scratch, into: &out)
            return out
        }
        return try readTreeBlob(id, cache: cache, inflater: Inflater(), baseOf: nil)
    }

    /// `readBlob`, with a delta's base asked of `base` first: a reader that
    /// keeps recent blobs in memory (a backup's walk of its parent manifest)
    /// answers from there, or returns nil to have it read as `readBlob` reads
    /// it; `keep` is then given what was read. Bytes from `base` must be
    /// verified ones of that id (the delta's result is verified either way).
    public func readBlob(_ id: BlobID, inflater: Inflater, base: @escaping (BlobID) -> [UInt8]?, keep: @escaping (BlobID, [UInt8]) -> Void) throws -> [UInt8] {
        let reader: BlobDecoder.BaseReader = { [unowned self] b in
            if let bytes = base(b) { return bytes }
            guard let l = self.index.lookup(b) else { throw BlobError.notInIndex(b) }
            guard l.compression != .delta else { throw DeltaError.baseIsDelta(b) }
            let bytes = try self.readBlob(b)
            keep(b, bytes)
            return bytes
        }
        guard let cache = blobCache else {
            guard let l = index.lookup(id) else { throw BlobError.notInIndex(id) }
            var stored: [UInt8] = [], out: [UInt8] = []
            try readStored(id, location: l, into: &stored)
            do {
                try stored.withUnsafeBytes {
                    try decodeVerified(stored: $0, id: id, compression: l.compression, rawLength: Int(l.rawLength), inflater: inflater,
                                       into: &out, base: reader)
                }
            } catch {
                throw BlobError.inPack(id, pack: index.pack(of: l), offset: l.offset, underlying: error)
            }
            return out
        }
        return try readTreeBlob(id, cache: cache, inflater: inflater, baseOf: nil, baseReader: reader)
    }

    /// Puts the stored bytes of tree blobs `ids` that the blob cache lacks
    /// into it, reading each pack's run of them with one ranged GET (blobs
    /// at most `coalesceGap` apart, runs of at most `coalesceSpan` bytes)
    /// instead of one per blob: a manifest's pieces lie together, written at
    /// a backup's end. Nothing is checked here: `readBlob` decodes and
    /// verifies each as it is used, and a damaged one is read again from its
    /// pack alone (and reported as that blob's damage). A failed read only
    /// leaves the blobs to `readBlob`. Pieces stored as deltas are followed
    /// by a second round for their bases.
    public func prefetchTreeBlobs(_ ids: [BlobID]) {
        guard let cache = blobCache else { return }
        prefetch(ids, cache: cache)
        // Pieces stored as deltas need their bases: their ids lead the stored bytes just cached.
        var bases: [BlobID] = []
        for id in ids {
            guard let l = index.lookup(id), l.type == .tree, l.compression == .delta,
                  let stored = cache.cachedBlob(id, storedLength: Int(l.storedLength)), stored.count > 32 else { continue }
            if let b = stored.withUnsafeBytes({ BlobDecoder.deltaBase(stored: $0) }) { bases.append(b) }
        }
        if !bases.isEmpty { prefetch(bases, cache: cache) }
    }

    private func prefetch(_ ids: [BlobID], cache: any BlobCache) {
        var byPack: [Int: [BlobLocation]] = [:], idAt: [UInt64: BlobID] = [:]
        for id in ids {
            guard let l = index.lookup(id), l.type == .tree, !cache.hasBlob(id, storedLength: Int(l.storedLength)) else { continue }
            let key = UInt64(l.packIndex) << 32 | UInt64(l.offset)
            guard idAt.updateValue(id, forKey: key) == nil else { continue }
            byPack[l.packIndex, default: []].append(l)
        }
        for (_, locations) in byPack {
            let sorted = locations.sorted { $0.offset < $1.offset }
            var run: [BlobLocation] = []
            func flush() {
                defer { run = [] }
                guard let first = run.first, let last = run.last else { return }
                let start = Int64(first.offset), end = Int64(last.offset) + Int64(last.storedLength)
                var span = [UInt8](repeating: 0, count: Int(end - start))
                let pack = index.pack(of: first)
                guard let n = try? span.withUnsafeMutableBytes({ try readPack(pack, at: start, into: $0) }), n == span.count else { return }
                span.withUnsafeBytes { b in
                    for l in run {
                        let at = Int(Int64(l.offset) - start)
                        guard let id = idAt[UInt64(l.packIndex) << 32 | UInt64(l.offset)] else { continue }
                        cache.cacheBlob(id, UnsafeRawBufferPointer(rebasing: b[at ..< at + Int(l.storedLength)]))
                    }
                }
            }
            for l in sorted {
                if let first = run.first, let last = run.last {
                    let gap = Int64(l.offset) - (Int64(last.offset) + Int64(last.storedLength))
                    let span = Int64(l.offset) + Int64(l.storedLength) - Int64(first.offset)
                    if gap < 0 || gap > Self.coalesceGap || span > Self.coalesceSpan { flush() }
                }
                run.append(l)
            }
            flush()
        }
    }

    /// Largest gap `prefetchTreeBlobs` reads through between two blobs of one run.
    static let coalesceGap: Int64 = 1 << 20
    /// Largest run `prefetchTreeBlobs` reads with one request.
    static let coalesceSpan: Int64 = 32 << 20

    /// The backend's local cache of tree blobs, if it keeps one.
    var blobCache: (any BlobCache)? { local == nil && usesBlobCache ? backend as? any BlobCache : nil }

    /// `readBlob` through `cache` (`baseOf`: the delta this is the base of, so it may not be a delta itself).
    private func readTreeBlob(_ id: BlobID, cache: any BlobCache, inflater: Inflater, baseOf: BlobID?,
                              baseReader: BlobDecoder.BaseReader? = nil) throws -> [UInt8] {
        guard let l = index.lookup(id) else { throw BlobError.notInIndex(id) }
        if baseOf != nil, l.compression == .delta { throw DeltaError.baseIsDelta(id) }
        let cacheable = l.type == .tree
        let base: BlobDecoder.BaseReader = baseReader ?? { [unowned self] b in try self.readTreeBlob(b, cache: cache, inflater: Inflater(), baseOf: id) }
        var out: [UInt8] = []
        if cacheable, let stored = cache.cachedBlob(id, storedLength: Int(l.storedLength)) {
            do {
                try stored.withUnsafeBytes {
                    try decodeVerified(stored: $0, id: id, compression: l.compression, rawLength: Int(l.rawLength), inflater: inflater,
                                       into: &out, base: base)
                }
                return out
            } catch {
                cache.forgetBlob(id)   // not what the pack holds: read the pack
            }
        }
        var stored: [UInt8] = []
        try readStored(id, location: l, into: &stored)
        do {
            try stored.withUnsafeBytes {
                try decodeVerified(stored: $0, id: id, compression: l.compression, rawLength: Int(l.rawLength), inflater: inflater,
                                   into: &out, base: base)
            }
        } catch {
            throw BlobError.inPack(id, pack: index.pack(of: l), offset: l.offset, underlying: error)
        }
        if cacheable { stored.withUnsafeBytes { cache.cacheBlob(id, $0) } }
        return out
    }

    // MARK: Walks

    /// Every blob snapshot `s` references, each once, in a stable order:
    /// its manifest blobs, then per manifest entry its chunk-list blobs and
    /// content blobs. Delta bases are not in it (they are a property of how
    /// a repository stores a blob, not of the snapshot): a caller that keeps
    /// or copies stored bytes resolves them itself (`deltaBase(of:location:)`).
    /// Manifest records are validated as they are read (`ManifestReader`);
    /// the first invalid one throws. Prune and both sides of sync use this;
    /// check uses the walk under it.
    public func referencedBlobs(snapshot s: Snapshot, id: SnapshotID? = nil) throws -> [BlobID] {
        var seen = Set<BlobID>()
        var out: [BlobID] = []
        try walkReferencedBlobs(snapshot: s, id: id, seen: &seen) { b, _ in out.append(b) }
        return out
    }

    /// The walk under `referencedBlobs`: calls `blob` for each blob not yet
    /// in `seen` (which it adds to), with the manifest entry using it (nil for
    /// a manifest blob), and `entry` for each manifest entry read. With
    /// `tolerateListErrors`, an entry whose chunk list cannot be read is
    /// passed on with its `listError` set (check reports it and goes on).
    /// Errors `blob` or `entry` throw end the walk.
    public func walkReferencedBlobs(snapshot s: Snapshot, id: SnapshotID? = nil, tolerateListErrors: Bool = false, seen: inout Set<BlobID>,
                                    entry: (ManifestEntry) throws -> Void = { _ in }, blob: (BlobID, ManifestEntry?) throws -> Void) throws {
        for m in s.manifestIDs where seen.insert(m).inserted { try blob(m, nil) }
        var reader = manifestReader(s, id: id)
        reader.tolerateListErrors = tolerateListErrors
        while let e = try reader.next() {
            try entry(e)
            for b in e.referencedBlobs where seen.insert(b).inserted { try blob(b, e) }
        }
    }
}
