/// Chunk lists: how a file with many chunks keeps its content ids out of
/// the manifest stream (FORMAT.md, "Chunk lists").
///
/// A database dump cut into 4 KiB chunks has ~250 ids per MB of dump. Kept
/// inline, those ids (32 incompressible bytes each) fill every manifest blob,
/// and a day's scattered row updates touch every one of them: the manifest
/// would be re-stored whole each day, outweighing the changed data. So a
/// long list is stored in list blobs (type tree) instead:
///
/// - a *full* list: the ids themselves, in parts of at most `partSize` ids;
/// - a *delta* on the parent snapshot's list (full or itself a delta): copy
///   runs from it plus the ids that are new. Day 2 costs the changed ids.
///
/// Deltas chain at most `maxGeneration` deep (a reader loads at most that
/// many list blobs plus the full parts); a delta is written only while at
/// most `maxDeltaShare` of its ids are new, otherwise a full list again.
///
/// This file holds the format (encoding and decoding one list blob) and the
/// writer; `ChunkListResolver.swift` turns a record's list refs into its ids.
public enum ChunkList {
    public static let magic: [UInt8] = Array("ACCL".utf8) + [1]
    /// Files with at least this many chunks store their list in list blobs.
    public static let threshold = 1024
    /// Ids per full part (2 MiB of ids).
    public static let partSize = 65536
    /// A delta is written only if at most this share of its ids are new.
    public static let maxDeltaShare = 0.3
    /// Largest list blob written: a full part is at most ~2 MiB; a delta that
    /// would be larger than this is written as full parts instead.
    public static let maxBlobBytes = 4 << 20
    /// Longest chain of deltas on a full list; the next list is full again.
    public static let maxGeneration = 32

    enum Form: UInt8 { case full = 0, delta = 1 }

    /// What a reader learned about an entry's list blobs.
    public struct Info: Sendable, Equatable {
        /// The ids in the manifest record (full parts, or one delta).
        public var refs: [BlobID]
        /// Every blob the list needs: `refs` and, for a delta, its whole chain.
        public var blobs: [BlobID]
        /// For a delta: the refs it applies to (the parent's list); empty for a full list.
        public var base: [BlobID]
        /// 0 for a full list; n for a delta n deep.
        public var generation: Int
        public init(refs: [BlobID], blobs: [BlobID], base: [BlobID], generation: Int) {
            self.refs = refs; self.blobs = blobs; self.base = base; self.generation = generation
        }
    }

    // MARK: Encoding

    static func encodeFull(_ ids: ArraySlice<BlobID>) -> [UInt8] {
        var w = ByteWriter(capacity: 16 + ids.count * 32)
        w.raw(magic)
        w.u8(Form.full.rawValue)
        w.varint(UInt64(ids.count))
        for id in ids { w.id(id) }
        return w.bytes
    }

    enum Op: Equatable {
        case copy(from: Int, count: Int)
        case insert(ArraySlice<BlobID>)
        var count: Int {
            switch self {
            case .copy(_, let n): return n
            case .insert(let ids): return ids.count
            }
        }
    }

    static func encodeDelta(generation: Int, base: [BlobID], total: Int, ops: [Op]) -> [UInt8] {
        var w = ByteWriter(capacity: 64 + base.count * 32 + ops.count * 8)
        w.raw(magic)
        w.u8(Form.delta.rawValue)
        w.varint(UInt64(generation))
        w.varint(UInt64(base.count))
        for b in base { w.id(b) }
        w.varint(UInt64(total))
        w.varint(UInt64(ops.count))
        for op in ops {
            switch op {
            case .copy(let from, let count):
                w.varint(UInt64(count) << 1)
                w.varint(UInt64(from))
            case .insert(let ids):
                w.varint(UInt64(ids.count) << 1 | 1)
                for id in ids { w.id(id) }
            }
        }
        return w.bytes
    }

    /// Copy runs and inserts that turn `base` into `new`: greedy, each new id
    /// looked up by its 8-byte prefix among the base ids, then the run extended
    /// as far as both lists agree. Content-defined chunks resynchronize right
    /// after a change, so runs are long and inserts are the changed chunks.
    static func diff(base: [BlobID], new: [BlobID]) -> (ops: [Op], inserted: Int) {
        var position: [UInt64: Int32] = [:]
        position.reserveCapacity(base.count)
        for (i, id) in base.enumerated().reversed() { position[id.w0] = Int32(i) }
        var ops: [Op] = []
        var inserted = 0
        var pendingStart = -1
        var i = 0
        func flushInsert(upTo end: Int) {
            if pendingStart >= 0 {
                ops.append(.insert(new[pendingStart..<end]))
                inserted += end - pendingStart
                pendingStart = -1
            }
        }
        while i < new.count {
            if let p = position[new[i].w0].map(Int.init), base[p] == new[i] {
                var n = 1
                while i + n < new.count, p + n < base.count, base[p + n] == new[i + n] { n += 1 }
                flushInsert(upTo: i)
                ops.append(.copy(from: p, count: n))
                i += n
            } else {
                if pendingStart < 0 { pendingStart = i }
                i += 1
            }
        }
        flushInsert(upTo: new.count)
        return (ops, inserted)
    }

    // MARK: Writing

    /// Stores `ids` as list blobs and returns the refs for the manifest
    /// record: the parent's refs again when nothing changed, else a delta on
    /// the parent's list when it is small, else a full list.
    public static func store(_ ids: [BlobID], parent: ManifestEntry?,
                             store: (UnsafeRawBufferPointer) throws -> BlobID) throws -> [BlobID] {
        if let p = parent, let info = p.list {
            if p.blobs == ids { return info.refs }
            if info.generation < maxGeneration {
                let (ops, inserted) = diff(base: p.blobs, new: ids)
                if Double(inserted) <= maxDeltaShare * Double(ids.count) {
                    let bytes = encodeDelta(generation: info.generation + 1, base: info.refs, total: ids.count, ops: ops)
                    if bytes.count <= maxBlobBytes {
                        return [try bytes.withUnsafeBytes { try store($0) }]
                    }
                }
            }
        }
        var refs: [BlobID] = []
        var start = 0
        while start < ids.count {
            let end = Swift.min(ids.count, start + partSize)
            let bytes = encodeFull(ids[start..<end])
            refs.append(try bytes.withUnsafeBytes { try store($0) })
            start = end
        }
        return refs
    }

    // MARK: Reading one list blob

    /// Most content ids one record may have, inline or in a chunk list, and
    /// most ids any level of a delta chain may expand to (FORMAT.md,
    /// "Manifest", "Validity"): 2^25 ids are 1 GiB of ids in memory, a
    /// 128 GiB dump at the `dump` profile's 4 KiB average chunk, a 32 TiB
    /// file at the `tree` profile's 1 MiB. It is also what the largest
    /// record a reader accepts (`ManifestCodec.maxRecordLength`) holds inline.
    public static let maxIDs = 1 << 25
    /// Largest chunk-list blob a reader accepts: the largest delta written
    /// (`maxBlobBytes`); a full part (`partSize` ids) is about half of it.
    public static let maxListBlobBytes = maxBlobBytes

    /// A chunk list that holds, or would expand to, more ids than its record
    /// allows: the record is invalid, however readable its blobs are.
    public struct TooLong: Error, CustomStringConvertible {
        public var list: BlobID
        public var limit: Int
        public var description: String {
            "chunk list \(list.short) holds more than the \(limit) content ids its record allows"
        }
    }

    enum Decoded {
        case full([BlobID])
        case delta(generation: Int, base: [BlobID], total: Int, ops: [Op])
    }

    /// Decodes one list blob. Counts come from stored bytes: each is checked
    /// against `maxIDs` (the most ids the list may still add) and the blob's
    /// length before anything is allocated for it.
    static func decode(_ bytes: [UInt8], id: BlobID, maxIDs: Int = ChunkList.maxIDs) throws -> Decoded {
        guard bytes.count <= maxListBlobBytes else {
            throw DecodeError.invalid("chunk list \(id.short) is \(bytes.count) bytes, over the \(maxListBlobBytes) a list blob may have", offset: 0)
        }
        return try bytes.withUnsafeBytes { buf in
            var r = ByteReader(buf)
            guard buf.count >= magic.count, Array(buf[0..<magic.count]) == magic else {
                throw DecodeError.invalid("blob \(id.short) is not a chunk list (no ACCL version 1 header)", offset: 0)
            }
            try r.skip(magic.count)
            switch Form(rawValue: try r.u8()) {
            case .full:
                let n = try r.count(max: r.remaining / 32)
                guard n <= maxIDs else { throw TooLong(list: id, limit: maxIDs) }
                var ids: [BlobID] = []
                ids.reserveCapacity(n)
                for _ in 0..<n { ids.append(try r.id()) }
                guard r.isAtEnd else { throw DecodeError.invalid("chunk list \(id.short): trailing bytes", offset: r.offset) }
                return .full(ids)
            case .delta:
                let generation = try r.count(max: Int(Int32.max))
                let nb = try r.count(max: r.remaining / 32)
                var base: [BlobID] = []
                base.reserveCapacity(nb)
                for _ in 0..<nb { base.append(try r.id()) }
                let total = try r.count(max: Int(Int32.max))
                guard total <= maxIDs else { throw TooLong(list: id, limit: maxIDs) }
                // Every op holds at least one id and takes at least 2 bytes.
                let nops = try r.count(max: r.remaining / 2)
                guard nops <= total else {
                    throw DecodeError.invalid("chunk list \(id.short): \(nops) runs for \(total) ids", offset: r.offset)
                }
                var ops: [Op] = []
                ops.reserveCapacity(nops)
                var sum = 0
                for _ in 0..<nops {
                    let h = try r.varint()
                    // A run longer than what is left of Total is refused before its ids are read.
                    guard h >> 1 >= 1, h >> 1 <= UInt64(total - sum) else {
                        throw DecodeError.invalid("chunk list \(id.short): a run of \(h >> 1) ids where \(total - sum) of its Total of \(total) are left (runs hold 1 id or more and add up to Total)", offset: r.offset)
                    }
                    let count = Int(h >> 1)
                    sum += count
                    if h & 1 == 0 {
                        ops.append(.copy(from: try r.count(max: Int(Int32.max)), count: count))
                    } else {
                        guard count <= r.remaining / 32 else { throw DecodeError.truncated(offset: r.offset) }
                        var ids: [BlobID] = []
                        ids.reserveCapacity(count)
                        for _ in 0..<count { ids.append(try r.id()) }
                        ops.append(.insert(ids[...]))
                    }
                }
                guard sum == total else {
                    throw DecodeError.invalid("chunk list \(id.short): its runs hold \(sum) ids, header says \(total)", offset: r.offset)
                }
                guard r.isAtEnd else { throw DecodeError.invalid("chunk list \(id.short): trailing bytes", offset: r.offset) }
                return .delta(generation: generation, base: base, total: total, ops: ops)
            case nil:
                throw DecodeError.invalid("chunk list \(id.short): unknown form", offset: magic.count)
            }
        }
    }
}
