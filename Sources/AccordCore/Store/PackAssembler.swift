/// Gathers stored blobs into packs of about `packSize` bytes: the one pack
/// assembly of accord (backup's `BlobSink`, serve's `SyncServer`, prune's
/// repacking).
///
/// `add` appends to the open pack; once it reaches `packSize` the pack is
/// handed back, detached, to be sealed with `seal` (fsync, rename into
/// `data/`): a caller that adds from many threads under its own lock seals
/// outside it, so the others go on filling the next pack meanwhile.
/// Durability is `PackWriter`'s: nothing is durable until `seal` returns; a
/// crash before leaves a temporary file in `tmp/` that no reader looks at
/// (or, on an object store, nothing: the pack is a PUT of the whole).
/// Not thread-safe: one thread, or a lock around `add`/`takeOpen`/`abandon`.
public final class PackAssembler {
    /// A pack written: its index entries and its size in bytes.
    public struct Sealed: Sendable {
        public var pack: IndexFile.Pack
        public var size: Int
    }

    let layout: RepositoryLayout
    /// Nil for a local repository (files in `tmp/`, renamed); else packs are
    /// assembled in memory and written whole to it.
    let backend: (any Backend)?
    public let packSize: Int
    private var writer: PackWriter?

    init(layout: RepositoryLayout, backend: (any Backend)?, packSize: Int) {
        self.layout = layout
        self.backend = backend
        self.packSize = packSize
    }

    deinit { writer?.abandon() }

    /// Appends one stored blob to the open pack (opening one if needed).
    /// Returns the pack when this blob filled it, detached: seal it.
    public func add(id: BlobID, type: BlobType, compression: BlobCompression, rawLength: Int, stored: UnsafeRawBufferPointer) throws -> PackWriter? {
        if writer == nil { writer = try backend.map { PackWriter(backend: $0, capacity: packSize) } ?? PackWriter(layout: layout) }
        try writer!.add(id: id, type: type, compression: compression, rawLength: rawLength, stored: stored)
        guard writer!.size >= packSize else { return nil }
        defer { writer = nil }
        return writer
    }

    /// Detaches the open pack (nil if none), to seal it.
    public func takeOpen() -> PackWriter? {
        defer { writer = nil }
        return writer
    }

    /// Finishes a detached pack: header, fsync, rename, directory fsync (or one whole write).
    /// Durable on return. Nil (and no file) for a pack with no blob.
    public static func seal(_ w: PackWriter) throws -> Sealed? {
        if w.isEmpty { w.abandon(); return nil }
        let id = try w.finish()
        return Sealed(pack: .init(id: id, blobs: w.entries), size: w.size)
    }

    /// Seals the open pack, if any.
    public func finish() throws -> Sealed? {
        guard let w = takeOpen() else { return nil }
        return try Self.seal(w)
    }

    /// Drops the open pack (its temporary file is removed).
    public func abandon() {
        writer?.abandon()
        writer = nil
    }
}
