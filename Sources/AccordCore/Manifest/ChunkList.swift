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

    // MARK: Reading

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

    /// What a reader keeps between records while it resolves chunk lists,
    /// so a manifest naming the same list blobs again and again does not
    /// load and decode them again and again: the id count of each full list
    /// seen (a part before the ids a copy needs is skipped, not loaded) and
    /// the last full list decoded. Bounded: the counts are dropped after
    /// `maxCounts` entries (8 MiB or so).
    public final class Cache {
        static let maxCounts = 1 << 18
        var counts: [BlobID: Int] = [:]
        var lastFull: (id: BlobID, ids: [BlobID])?
        public init() {}
        func remember(_ id: BlobID, count: Int) {
            if counts.count >= Self.maxCounts { counts.removeAll(keepingCapacity: true) }
            counts[id] = count
        }
    }

    /// The content ids a record's list refs stand for, and what they need.
    /// `maxIDs` is the most ids the record may have (its size bound, at most
    /// `ChunkList.maxIDs`): the expansion stops with `TooLong` before it
    /// allocates more.
    ///
    /// A delta's base is expanded only where the delta copies from it: each
    /// level of a chain gets the ranges of ids the level above copies, so it
    /// builds at most as many ids as the record has and needs from its own
    /// base at most that many again. Resolving a record of N ids on a chain
    /// of depth g builds at most (g + 1) × N ids, however long the bases are
    /// or however their copies are aimed; a base's full parts wholly outside
    /// those ranges are not decoded (nor loaded, when `cache` knows their
    /// counts). What is read is checked as a whole list would be (every
    /// header, every delta blob of the chain, the generations, the copies
    /// that are used against their base's length), but the tail of a base
    /// that nothing copies is not expanded, so cannot make it too long.
    public static func resolve(_ refs: [BlobID], maxIDs: Int = ChunkList.maxIDs, cache: Cache? = nil,
                               load: (BlobID) throws -> [UInt8]) throws -> ([BlobID], Info) {
        let (pieces, info) = try expand(refs, needed: nil, depth: 0, maxIDs: Swift.min(maxIDs, Self.maxIDs),
                                        cache: cache ?? Cache(), load: load)
        return (pieces.first?.ids ?? [], info)
    }

    /// Ids `start ..< start + ids.count` of a list.
    typealias Piece = (start: Int, ids: [BlobID])

    /// Expands the list `refs` stands for: whole (`needed` nil, the record's
    /// own list, at most `maxIDs` ids), or only the ids in `needed` (sorted,
    /// disjoint, non-adjacent ranges; a base, whose length the cap bounds).
    /// Returns one piece per needed range (one for the whole list).
    static func expand(_ refs: [BlobID], needed: [Range<Int>]?, depth: Int, maxIDs: Int, cache: Cache,
                       load: (BlobID) throws -> [UInt8]) throws -> ([Piece], Info) {
        guard !refs.isEmpty else { throw DecodeError.invalid("chunk list with no list blobs", offset: 0) }
        // A writer puts at least one id in each full list, and a delta is alone: more refs than ids is too long.
        guard refs.count <= maxIDs else { throw TooLong(list: refs[0], limit: maxIDs) }
        if let end = needed?.last?.upperBound, end > maxIDs {
            throw DecodeError.invalid("chunk list \(refs[0].short): a delta copies id \(end - 1) of it, beyond the \(maxIDs) a list may hold", offset: 0)
        }
        let first: Decoded
        if let last = cache.lastFull, last.id == refs[0] {
            guard last.ids.count <= maxIDs else { throw TooLong(list: refs[0], limit: maxIDs) }
            first = .full(last.ids)
        } else {
            first = try decode(load(refs[0]), id: refs[0], maxIDs: maxIDs)
            if case .full(let ids) = first { cache.lastFull = (refs[0], ids) }
        }
        switch first {
        case .delta(let generation, let base, let total, let ops):
            guard refs.count == 1 else { throw DecodeError.invalid("chunk list \(refs[0].short): a delta must be the only list blob of its record", offset: 0) }
            guard depth < maxGeneration, generation >= 1, generation <= maxGeneration else {
                throw DecodeError.invalid("chunk list \(refs[0].short): deltas chained deeper than \(maxGeneration)", offset: 0)
            }
            // decode checked total ≤ maxIDs and that the runs add up to total.
            let want = needed ?? (total > 0 ? [0..<total] : [])
            if let end = want.last?.upperBound, end > total {
                throw DecodeError.invalid("chunk list \(refs[0].short): a delta copies id \(end - 1) of it, beyond its Total of \(total)", offset: 0)
            }
            var starts: [Int] = []
            starts.reserveCapacity(ops.count)
            var at = 0
            for op in ops { starts.append(at); at += op.count }
            /// Calls `body(op, lo, hi)` for each op overlapping `range`, with the overlap as offsets into the op.
            func overlaps(_ range: Range<Int>, _ body: (Op, Int, Int) throws -> Void) rethrows {
                // The last op starting at or before range.lowerBound.
                var lo = 0, hi = starts.count
                while hi - lo > 1 { let mid = (lo + hi) / 2; if starts[mid] <= range.lowerBound { lo = mid } else { hi = mid } }
                var k = lo
                while k < ops.count && starts[k] < range.upperBound {
                    let a = Swift.max(range.lowerBound, starts[k]) - starts[k]
                    let b = Swift.min(range.upperBound, starts[k] + ops[k].count) - starts[k]
                    if b > a { try body(ops[k], a, b) }
                    k += 1
                }
            }
            // What this level copies from its base, merged.
            var copied: [Range<Int>] = []
            for range in want {
                overlaps(range) { op, a, b in if case .copy(let from, _) = op { copied.append(from + a ..< from + b) } }
            }
            copied.sort { $0.lowerBound < $1.lowerBound }
            var merged: [Range<Int>] = []
            for r in copied {
                if let last = merged.last, r.lowerBound <= last.upperBound {
                    merged[merged.count - 1] = last.lowerBound ..< Swift.max(last.upperBound, r.upperBound)
                } else { merged.append(r) }
            }
            let (basePieces, baseInfo) = try expand(base, needed: merged, depth: depth + 1, maxIDs: Self.maxIDs, cache: cache, load: load)
            guard baseInfo.generation == generation - 1 else {
                throw DecodeError.invalid("chunk list \(refs[0].short): generation \(generation) on a base of generation \(baseInfo.generation)", offset: 0)
            }
            /// The base's ids `r`, which lie within one needed range, so one piece.
            func baseIDs(_ r: Range<Int>) -> ArraySlice<BlobID> {
                var lo = 0, hi = basePieces.count
                while hi - lo > 1 { let mid = (lo + hi) / 2; if basePieces[mid].start <= r.lowerBound { lo = mid } else { hi = mid } }
                let p = basePieces[lo]
                return p.ids[r.lowerBound - p.start ..< r.upperBound - p.start]
            }
            var pieces: [Piece] = []
            pieces.reserveCapacity(want.count)
            for range in want {
                var out: [BlobID] = []
                out.reserveCapacity(range.count)
                overlaps(range) { op, a, b in
                    switch op {
                    case .copy(let from, _): out.append(contentsOf: baseIDs(from + a ..< from + b))
                    case .insert(let ids): out.append(contentsOf: ids[ids.startIndex + a ..< ids.startIndex + b])
                    }
                }
                pieces.append((range.lowerBound, out))
            }
            if needed == nil && pieces.isEmpty { pieces = [(0, [])] }
            return (pieces, Info(refs: refs, blobs: refs + baseInfo.blobs, base: base, generation: generation))
        case .full(let ids):
            let info = Info(refs: refs, blobs: refs, base: [], generation: 0)
            cache.remember(refs[0], count: ids.count)
            guard let needed else {
                var out = ids
                for ref in refs.dropFirst() {
                    do { out.append(contentsOf: try fullIDs(ref, maxIDs: maxIDs - out.count, cache: cache, load: load)) } catch var e as TooLong {
                        e.limit = maxIDs   // the record's bound, not what was left of it
                        throw e
                    }
                }
                return ([(0, out)], info)
            }
            // Only the needed ranges: walk the parts, skipping those that lie before the
            // next range when their count is known, until the last range is complete.
            var pieces: [Piece] = needed.map { ($0.lowerBound, []) }
            var k = 0          // the first range not yet complete
            var offset = 0     // ids in the parts before `ref`
            for (i, ref) in refs.enumerated() {
                guard k < needed.count else { break }
                let part: [BlobID]
                if i == 0 { part = ids } else {
                    if let n = cache.counts[ref], offset + n <= needed[k].lowerBound, n <= maxIDs - offset {
                        offset += n
                        continue
                    }
                    do { part = try fullIDs(ref, maxIDs: maxIDs - offset, cache: cache, load: load) } catch var e as TooLong {
                        e.limit = maxIDs
                        throw e
                    }
                }
                let end = offset + part.count
                var j = k
                while j < needed.count && needed[j].lowerBound < end {
                    let a = Swift.max(needed[j].lowerBound, offset), b = Swift.min(needed[j].upperBound, end)
                    if b > a { pieces[j].ids.append(contentsOf: part[a - offset ..< b - offset]) }
                    if needed[j].upperBound <= end { k = j + 1 }
                    j += 1
                }
                offset = end
            }
            guard k == needed.count else {
                throw DecodeError.invalid("chunk list \(refs[0].short): a delta copies id \(needed[needed.count - 1].upperBound - 1) of it, beyond its \(offset) ids", offset: 0)
            }
            return (pieces, info)
        }
    }

    /// The ids of a list blob that must be a full list (a part after the first).
    static func fullIDs(_ ref: BlobID, maxIDs: Int, cache: Cache, load: (BlobID) throws -> [UInt8]) throws -> [BlobID] {
        let ids: [BlobID]
        if let last = cache.lastFull, last.id == ref {
            guard last.ids.count <= maxIDs else { throw TooLong(list: ref, limit: maxIDs) }
            ids = last.ids
        } else {
            guard case .full(let decoded) = try decode(load(ref), id: ref, maxIDs: maxIDs) else {
                throw DecodeError.invalid("chunk list \(ref.short): a delta must be the only list blob of its record", offset: 0)
            }
            ids = decoded
            cache.lastFull = (ref, ids)
        }
        cache.remember(ref, count: ids.count)
        return ids
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
