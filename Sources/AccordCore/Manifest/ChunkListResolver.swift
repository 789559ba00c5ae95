/// Reading a record's chunk list: resolving its list blobs (full parts, or a
/// delta chain) into content ids, under the record's bound (FORMAT.md,
/// "Chunk lists", "Bounds" and "Partial expansion"). The format itself,
/// encoding, decoding one list blob and the writer are in `ChunkList.swift`.
extension ChunkList {
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
            return try expandDelta(refs[0], generation: generation, base: base, total: total, ops: ops,
                                   needed: needed, depth: depth, cache: cache, load: load)
        case .full(let ids):
            cache.remember(refs[0], count: ids.count)
            let pieces = try expandFull(refs, first: ids, needed: needed, maxIDs: maxIDs, cache: cache, load: load)
            return (pieces, Info(refs: refs, blobs: refs, base: [], generation: 0))
        }
    }

    /// A delta list blob `ref` (already decoded, its generation checked):
    /// expands its base where the needed ranges copy from it, then builds
    /// those ranges from the copies and inserts.
    static func expandDelta(_ ref: BlobID, generation: Int, base: [BlobID], total: Int, ops: [Op], needed: [Range<Int>]?,
                            depth: Int, cache: Cache, load: (BlobID) throws -> [UInt8]) throws -> ([Piece], Info) {
        // decode checked total ≤ maxIDs and that the runs add up to total.
        let want = needed ?? (total > 0 ? [0..<total] : [])
        if let end = want.last?.upperBound, end > total {
            throw DecodeError.invalid("chunk list \(ref.short): a delta copies id \(end - 1) of it, beyond its Total of \(total)", offset: 0)
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
        let (basePieces, baseInfo) = try expand(base, needed: merged(copied), depth: depth + 1, maxIDs: Self.maxIDs,
                                                cache: cache, load: load)
        guard baseInfo.generation == generation - 1 else {
            throw DecodeError.invalid("chunk list \(ref.short): generation \(generation) on a base of generation \(baseInfo.generation)", offset: 0)
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
        return (pieces, Info(refs: [ref], blobs: [ref] + baseInfo.blobs, base: base, generation: generation))
    }

    /// `ranges` sorted and merged where they overlap or touch.
    static func merged(_ ranges: [Range<Int>]) -> [Range<Int>] {
        var merged: [Range<Int>] = []
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = merged.last, r.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound ..< Swift.max(last.upperBound, r.upperBound)
            } else { merged.append(r) }
        }
        return merged
    }

    /// Full list blobs `refs` (the first already decoded as `first`): all
    /// their ids (`needed` nil), or only the `needed` ranges.
    static func expandFull(_ refs: [BlobID], first ids: [BlobID], needed: [Range<Int>]?, maxIDs: Int, cache: Cache,
                           load: (BlobID) throws -> [UInt8]) throws -> [Piece] {
        guard let needed else {
            var out = ids
            for ref in refs.dropFirst() {
                do { out.append(contentsOf: try fullIDs(ref, maxIDs: maxIDs - out.count, cache: cache, load: load)) } catch var e as TooLong {
                    e.limit = maxIDs   // the record's bound, not what was left of it
                    throw e
                }
            }
            return [(0, out)]
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
        return pieces
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
}
