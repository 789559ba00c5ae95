import AccordRuntime
/// The manifest stream (FORMAT.md, "Manifest"):
///
///     Manifest = "ACMF" || Version(1 byte = 1) || Entry*
///     Entry    = varint(RecordLength) || Record
///     Record   = Kind(1) || Path || Mode || UID || GID || MtimeSec(zigzag) || MtimeNsec
///                || CtimeSec(zigzag) || CtimeNsec || Inode || Device || Size || LinkTarget
///                || XattrCount || (Name || Value)* || BlobCount || BlobID(32)*
///                [ || ListCount || ListID(32)* ]     (only with BlobCount = 0: see ChunkList)
///
/// Integers are unsigned LEB128 varints unless marked; byte strings are a
/// varint length and the bytes. Entries are in tree order.
public enum ManifestCodec {
    public static let magic: [UInt8] = Array("ACMF".utf8) + [1]
    /// Largest record a reader accepts (a file of 32 million chunks).
    public static let maxRecordLength = 1 << 30
    /// Most extended attributes one record may have (FORMAT.md, "Validity",
    /// rule 6): Linux lists a file's xattr names, each NUL-terminated, in at
    /// most 64 KiB, so a file has at most 32,768 (of one-byte names).
    public static let maxXattrs = 1 << 15
    /// Most bytes of xattr names and values, summed, one record may have:
    /// 64 MiB (Linux allows 64 KiB per value; 1,024 such values).
    public static let maxXattrBytes = 64 << 20

    /// A record that breaks a validity rule the decoder checks before it
    /// allocates for the record (its xattr count and size): the reader turns
    /// it into `ManifestError.invalid` with the record's number.
    public struct RecordInvalid: Error, CustomStringConvertible {
        public var path: RawPath
        public var rule: String
        public var description: String { "\(ManifestError.quoted(path)): \(rule)" }
    }

    public static func encode(_ e: ManifestEntry, into w: inout ByteWriter) {
        var r = ByteWriter(capacity: 64 + e.path.count + e.blobs.count * 32)
        r.u8(e.kind.rawValue)
        r.string(e.path)
        r.varint(UInt64(e.mode)); r.varint(UInt64(e.uid)); r.varint(UInt64(e.gid))
        r.zigzag(e.mtimeSec); r.varint(UInt64(max(0, e.mtimeNsec)))
        r.zigzag(e.ctimeSec); r.varint(UInt64(max(0, e.ctimeNsec)))
        r.varint(e.inode); r.varint(e.device); r.varint(e.size)
        r.string(e.linkTarget)
        r.varint(UInt64(e.xattrs.count))
        for x in e.xattrs { r.string(x.name); r.string(x.value) }
        if let list = e.list {
            r.varint(0)
            r.varint(UInt64(list.refs.count))
            for b in list.refs { r.id(b) }
        } else {
            r.varint(UInt64(e.blobs.count))
            for b in e.blobs { r.id(b) }
        }
        w.varint(UInt64(r.bytes.count))
        w.raw(r.bytes)
    }

    public static func decodeRecord(_ bytes: UnsafeRawBufferPointer) throws -> ManifestEntry {
        var r = ByteReader(bytes)
        guard let kind = ManifestEntry.Kind(rawValue: try r.u8()) else { throw DecodeError.invalid("unknown entry kind", offset: 0) }
        let path = try r.string(max: 1 << 16)
        func u32() throws -> UInt32 {
            let v = try r.varint()
            guard v <= UInt64(UInt32.max) else { throw DecodeError.invalid("value too large", offset: r.offset) }
            return UInt32(v)
        }
        let mode = try u32(), uid = try u32(), gid = try u32()
        let ms = try r.zigzag(), mn = Int64(try u32())
        let cs = try r.zigzag(), cn = Int64(try u32())
        let inode = try r.varint(), device = try r.varint(), size = try r.varint()
        let link = try r.string(max: 1 << 16)
        // Each xattr takes at least 2 bytes, but millions of tiny ones cost ~70 bytes of
        // memory each: the count and the bytes are bounded before anything is allocated.
        let nx = try r.count(max: r.remaining / 2)
        guard nx <= maxXattrs else {
            throw RecordInvalid(path: path, rule: "\(nx) extended attributes, more than the \(maxXattrs) a record may have")
        }
        var xattrs: [ManifestEntry.Xattr] = []
        xattrs.reserveCapacity(nx)
        var xattrBytes = 0
        for _ in 0..<nx {
            var lengths = r   // peek at both lengths before copying either
            let nameLength = try lengths.count(max: 1 << 20)
            try lengths.skip(nameLength)
            let valueLength = try lengths.count(max: 1 << 20)
            xattrBytes += nameLength + valueLength
            guard xattrBytes <= maxXattrBytes else {
                throw RecordInvalid(path: path, rule: "its extended attributes hold more than the \(maxXattrBytes) bytes of names and values a record may have")
            }
            xattrs.append(.init(name: try r.string(), value: try r.string()))
        }
        let nb = try r.count(max: r.remaining / 32)
        var blobs: [BlobID] = []
        blobs.reserveCapacity(nb)
        for _ in 0..<nb { blobs.append(try r.id()) }
        var list: ChunkList.Info? = nil
        if nb == 0 && !r.isAtEnd {
            let nl = try r.count(max: r.remaining / 32)
            guard nl > 0 else { throw DecodeError.invalid("chunk-list entry with no list blobs", offset: r.offset) }
            var refs: [BlobID] = []
            for _ in 0..<nl { refs.append(try r.id()) }
            list = ChunkList.Info(refs: refs, blobs: refs, base: [], generation: 0)
        }
        guard r.isAtEnd else { throw DecodeError.invalid("trailing bytes in entry", offset: r.offset) }
        var e = ManifestEntry(kind: kind, path: path, mode: mode, uid: uid, gid: gid, mtimeSec: ms, mtimeNsec: mn,
                              ctimeSec: cs, ctimeNsec: cn, inode: inode, device: device, size: size,
                              linkTarget: link, xattrs: xattrs, blobs: blobs)
        e.list = list
        return e
    }
}

/// Encodes entries into the manifest stream and cuts it into blobs with the
/// `manifest` chunker profile as it grows, so memory stays bounded and an
/// unchanged part of a tree yields the same blobs as last time.
public final class ManifestWriter {
    private var pending = ByteWriter()
    private var chunker: FastCDC
    private let store: (UnsafeRawBufferPointer) throws -> BlobID
    public private(set) var blobs: [BlobID] = []
    public private(set) var entryCount = 0
    /// The readers' rules (FORMAT.md, "Validity"), applied to every entry
    /// appended: a backup fails naming the path rather than write a snapshot
    /// every reader refuses.
    private var validator = ManifestValidator()

    private let lists: ((UnsafeRawBufferPointer) throws -> BlobID)?
    private let storeNear: ((UnsafeRawBufferPointer, BlobID) throws -> BlobID)?
    /// Where in `pending` each record with an anchor starts, and the anchor:
    /// the parent manifest's blob in which the same path's record starts.
    private var anchors: [(offset: Int, blob: BlobID)] = []
    /// The anchor of the last record before `pending`'s first byte.
    private var lastAnchor: BlobID?

    /// `store` keeps a piece of the manifest stream. With `lists`, entries
    /// of `ChunkList.threshold` blobs or more keep their content list in
    /// chunk-list blobs stored by `lists`, as a delta on their parent's list
    /// where that is small. With `storeNear`, a piece near which a record
    /// was given an `anchor` is kept by `storeNear` with the anchor as a
    /// likely delta base (the parent manifest's piece it most likely replaced).
    public init(gear: GearTable, store: @escaping (UnsafeRawBufferPointer) throws -> BlobID,
                lists: ((UnsafeRawBufferPointer) throws -> BlobID)? = nil,
                storeNear: ((UnsafeRawBufferPointer, BlobID) throws -> BlobID)? = nil) {
        chunker = FastCDC(profile: .manifest, gear: gear)
        self.store = store
        self.lists = lists
        self.storeNear = storeNear
        pending.raw(ManifestCodec.magic)
    }

    /// Appends an entry; entries must come in strictly increasing tree order.
    /// `parent` is the same path's entry in the parent snapshot, if any.
    /// `mayBeLinked` false says no later hard link names this file (a backup
    /// knows: only a file of more than one link can be named), which spares
    /// the writer's check its hard-link set entry; a hard link to such a file
    /// fails the backup as a link to no file would.
    /// `anchor` is the parent manifest's blob in which `parent`'s record starts.
    public func append(_ e: ManifestEntry, parent: ManifestEntry? = nil, mayBeLinked: Bool = true, anchor: BlobID? = nil) throws {
        // Readers reject a record of more ids (FORMAT.md, "Validity"): fail the backup, not the restore.
        guard e.blobs.count <= ChunkList.maxIDs else {
            throw DecodeError.invalid("\(e.path.displayPath) has \(e.blobs.count) chunks, more than the \(ChunkList.maxIDs) a manifest record may have: back it up with a profile of larger chunks", offset: 0)
        }
        do {
            _ = try validator.check(e, listCount: nil, mayBeLinked: mayBeLinked)
            guard e.xattrs.count <= ManifestCodec.maxXattrs,
                  e.xattrs.reduce(0, { $0 + $1.name.count + $1.value.count }) <= ManifestCodec.maxXattrBytes else {
                throw ManifestValidator.Invalid("more than \(ManifestCodec.maxXattrs) extended attributes or \(ManifestCodec.maxXattrBytes) bytes of them")
            }
        } catch let invalid as ManifestValidator.Invalid {
            throw ManifestError.invalid(snapshot: nil, record: validator.record, path: e.path,
                                        rule: "\(invalid.rule) (the backup wrote no snapshot: readers would refuse it)")
        }
        var e = e
        e.list = nil
        if let lists, e.blobs.count >= ChunkList.threshold {
            let refs = try ChunkList.store(e.blobs, parent: parent, store: lists)
            e.list = ChunkList.Info(refs: refs, blobs: refs, base: [], generation: 0)
        }
        if let anchor, storeNear != nil { anchors.append((pending.bytes.count, anchor)) }
        ManifestCodec.encode(e, into: &pending)
        entryCount += 1
        if pending.bytes.count >= 2 * ChunkerProfile.manifest.max { try cut(eof: false) }
    }

    private func cut(eof: Bool) throws {
        var consumed = 0
        try pending.bytes.withUnsafeBytes { buf in
            let base = buf.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var a = 0
            while consumed < buf.count {
                guard let len = chunker.nextBoundary(base + consumed, count: buf.count - consumed, eof: eof) else { break }
                let end = consumed + len
                // The base: the parent piece that most of this piece's bytes came from. Each
                // byte is credited to the anchor of the last record with one that starts at
                // or before it (records new in this snapshot go with their predecessor).
                var credits: [(blob: BlobID, bytes: Int)] = []
                func credit(_ blob: BlobID?, _ n: Int) {
                    guard let blob, n > 0 else { return }
                    if let i = credits.firstIndex(where: { $0.blob == blob }) { credits[i].bytes += n } else { credits.append((blob, n)) }
                }
                var from = consumed
                while a < anchors.count && anchors[a].offset < end {
                    credit(lastAnchor, anchors[a].offset - from)
                    lastAnchor = anchors[a].blob
                    from = anchors[a].offset
                    a += 1
                }
                credit(lastAnchor, end - from)
                let near = credits.max(by: { $0.bytes < $1.bytes })?.blob
                let piece = UnsafeRawBufferPointer(rebasing: buf[consumed..<end])
                if let near, let storeNear { blobs.append(try storeNear(piece, near)) } else { blobs.append(try store(piece)) }
                consumed = end
            }
            if a > 0 { anchors.removeFirst(a) }
        }
        pending.bytes.removeFirst(consumed)
        if consumed > 0 { for i in anchors.indices { anchors[i].offset -= consumed } }
    }

    /// Stores what remains; returns the manifest's blob ids.
    public func finish() throws -> [BlobID] {
        try cut(eof: true)
        return blobs
    }
}

/// Reads a manifest stream entry by entry, loading its blobs one at a time,
/// and checks every record against FORMAT.md's validity rules
/// (`ManifestValidator`) before returning it or reading its chunk list: a
/// path that is not absolute and canonical, records out of tree order or
/// repeated, an entry below a non-directory, a hard link to anything but an
/// earlier regular file, a blob count its size cannot have, all throw
/// `ManifestError.invalid` naming the snapshot, the record and the path.
public struct ManifestReader {
    private let ids: [BlobID]
    private var nextBlob = 0
    private var buffer: [UInt8] = []
    private var position = 0
    /// The stream offset of `buffer[0]`, and where each loaded blob starts
    /// in the stream: they tell which blob a record starts in.
    private var bufferStart = 0
    private var blobStarts: [Int] = []
    private var recordBlobIndex = 0
    /// The blob in which the record `next` returned last starts (its
    /// RecordLength's first byte): a backup stores the new manifest piece
    /// holding the same path as a delta on it (`ManifestWriter.append`'s `anchor`).
    public var recordBlob: BlobID? { blobStarts.isEmpty ? nil : ids[recordBlobIndex] }
    private let load: (BlobID) throws -> [UInt8]
    private var started = false
    private var validator = ManifestValidator()
    /// Chunk-list counts and the last full list, kept between records.
    private let lists = ChunkList.Cache()
    /// The snapshot the stream belongs to, named in errors.
    public let snapshot: SnapshotID?
    /// When a record's chunk list cannot be loaded (a blob missing or
    /// damaged), return the entry with `listError` set and no blobs instead
    /// of throwing: a restore or check then goes on with the other entries.
    /// Off by default. A record that breaks a validity rule always throws,
    /// including a chunk list longer than its record allows.
    public var tolerateListErrors = false
    /// Tests only: false skips the validity rules (chunk lists are still
    /// bounded by `ChunkList.maxIDs`), so a hostile manifest reaches its
    /// reader as written and a test can show that the restore layer confines
    /// it by itself. Nothing outside the tests may set it.
    @_spi(Testing) public var validates = true
    /// How much of FORMAT.md's validity rules `next` applies.
    public enum Validation: Sendable {
        /// Every rule: what restore, ls, dump, check, prune, sync and serve read.
        case full
        /// Tree order and the bounds on blob counts and chunk lists only
        /// (`ManifestValidator.checkOrderAndCounts`): for a backup's read of
        /// its parent, which creates nothing from the entries and takes one
        /// only for the same live path. A record that breaks these still throws.
        case orderAndCounts
    }
    public var validation = Validation.full

    public init(blobs: [BlobID], snapshot: SnapshotID? = nil, load: @escaping (BlobID) throws -> [UInt8]) {
        ids = blobs
        self.snapshot = snapshot
        self.load = load
    }

    /// Makes at least `n` unread bytes available, if the stream has them.
    private mutating func fill(_ n: Int) throws -> Bool {
        while buffer.count - position < n {
            guard nextBlob < ids.count else { return false }
            if position > 0 { buffer.removeFirst(position); bufferStart += position; position = 0 }
            blobStarts.append(bufferStart + buffer.count)
            buffer.append(contentsOf: try load(ids[nextBlob]))
            nextBlob += 1
        }
        return true
    }

    /// The next entry, or nil at the end of the stream.
    public mutating func next() throws -> ManifestEntry? {
        if !started {
            started = true
            guard try fill(ManifestCodec.magic.count), Array(buffer[0..<5]) == ManifestCodec.magic else {
                throw DecodeError.invalid("manifest stream does not start with ACMF version 1", offset: 0)
            }
            position = 5
        }
        _ = try fill(10)
        if position >= buffer.count { return nil }
        let recordStart = bufferStart + position
        while recordBlobIndex + 1 < blobStarts.count && blobStarts[recordBlobIndex + 1] <= recordStart { recordBlobIndex += 1 }
        let (length, used) = try buffer.withUnsafeBytes { b -> (Int, Int) in
            var r = ByteReader(UnsafeRawBufferPointer(rebasing: b[position...]))
            let l = try r.count(max: ManifestCodec.maxRecordLength)
            return (l, r.offset)
        }
        position += used
        guard try fill(length) else { throw DecodeError.truncated(offset: position) }
        var entry: ManifestEntry
        do {
            entry = try buffer.withUnsafeBytes { try ManifestCodec.decodeRecord(UnsafeRawBufferPointer(rebasing: $0[position..<position + length])) }
        } catch let e as ManifestCodec.RecordInvalid {
            throw ManifestError.invalid(snapshot: snapshot, record: validator.record + 1, path: e.path, rule: e.rule)
        }
        position += length
        var bounds = 0...ChunkList.maxIDs
        if validates {
            do {
                bounds = validation == .full ? try validator.check(entry, listCount: entry.list?.refs.count)
                    : try validator.checkOrderAndCounts(entry, listCount: entry.list?.refs.count)
            } catch let e as ManifestValidator.Invalid {
                throw invalid(entry, e.rule)
            }
        }
        if let refs = entry.list?.refs {
            do {
                (entry.blobs, entry.list) = try ChunkList.resolve(refs, maxIDs: bounds.upperBound, cache: lists, load: load)
                try ManifestValidator.checkCount(entry.blobs.count, bounds, entry)
            } catch let e as ChunkList.TooLong {
                throw invalid(entry, "\(e)")
            } catch let e as ManifestValidator.Invalid {
                throw invalid(entry, e.rule)
            } catch {
                let e = ManifestError.chunkListUnreadable(path: entry.path, error: error)
                guard tolerateListErrors else { throw e }
                entry.blobs = []
                entry.list = nil
                entry.listError = e.description
            }
        }
        return entry
    }

    private func invalid(_ e: ManifestEntry, _ rule: String) -> ManifestError {
        .invalid(snapshot: snapshot, record: validator.record, path: e.path, rule: rule)
    }
}

public enum ManifestError: Error, CustomStringConvertible {
    case chunkListUnreadable(path: RawPath, error: Error)
    /// A record breaks a validity rule (FORMAT.md, "Manifest", "Validity"):
    /// the snapshot is damaged or crafted. `record` counts from 1.
    case invalid(snapshot: SnapshotID?, record: Int, path: RawPath, rule: String)

    public var description: String {
        switch self {
        case .chunkListUnreadable(let path, let error):
            return "the chunk list of \(path.displayPath) is unreadable: \(error)"
        case .invalid(let snapshot, let record, let path, let rule):
            let which = snapshot.map { "snapshot \($0.short)" } ?? "a snapshot"
            return "\(which) is damaged: its manifest is invalid at record \(record), path \(ManifestError.quoted(path)): \(rule). "
                + "It was damaged or crafted and is read no further: forget it by id\(snapshot.map { " (`accord forget \($0.short)`)" } ?? "")"
        }
    }

    /// A path for a message: printable ASCII as is, every other byte as \xHH.
    static func quoted(_ p: RawPath) -> String {
        var s = "\""
        for b in p.prefix(512) {
            if b >= 0x20 && b < 0x7f && b != 0x22 && b != 0x5c { s.append(Character(Unicode.Scalar(b))) }
            else { s += "\\x" + String(b, radix: 16).leftPadded(2) }
        }
        if p.count > 512 { s += "…" }
        return s + "\""
    }
}

private extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
