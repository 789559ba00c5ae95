/// Where a blob is stored: 16 bytes beside its 32-byte id.
public struct BlobLocation: Equatable, Sendable {
    /// Index into `MasterIndex.packs` (24 bits) | type << 24 | compression << 28.
    var packAndFlags: UInt32
    public var offset: UInt32
    public var storedLength: UInt32
    public var rawLength: UInt32

    init(pack: Int, entry e: PackEntry) {
        packAndFlags = UInt32(pack) | UInt32(e.type.rawValue) << 24 | UInt32(e.compression.rawValue) << 28
        offset = e.offset; storedLength = e.storedLength; rawLength = e.rawLength
    }

    public var packIndex: Int { Int(packAndFlags & 0x00ff_ffff) }
    public var type: BlobType { BlobType(rawValue: UInt8((packAndFlags >> 24) & 0xf)) ?? .data }
    public var compression: BlobCompression { BlobCompression(rawValue: UInt8(packAndFlags >> 28)) ?? .none }
}

/// The in-memory index of every blob in the repository.
///
/// Memory: loaded entries live in one sorted array of 48-byte records
/// (id + location) with no per-entry overhead, found through a table on
/// the id's first 8-16 bits (~32 records a slot) and a guess within the slot
/// from the next 32. Added entries are appended unsorted (48 bytes each, duplicates and
/// all) and sorted into place by `seal()` (an in-place radix sort), which
/// every writer calls before lookups: loading 10 million chunks peaks near
/// 48 bytes a blob, instead of a hash table's ~100 beside the array. Merging
/// new entries into a non-empty index copies the sorted array once.
/// Not thread-safe: callers that share it lock around each call (`BlobSink` does, under its `lock`).
public final class MasterIndex {
    struct Record { var id: BlobID; var location: BlobLocation }

    public private(set) var packs: [PackID] = []
    private var packNumbers: [PackID: Int] = [:]
    private var sorted: [Record] = []
    private var buckets: [UInt32] = []    // buckets[k] = first record whose id's top `bucketBits` bits ≥ k
    /// About 32 records a bucket (8 to 16 bits): a table small enough to stay
    /// in cache between lookups, so a lookup misses the cache once, on the record.
    private var bucketBits = 8
    /// Added since the last `seal()`: unsorted, may repeat ids.
    private var pending: [Record] = []
    /// Packs named by index files (some may be missing on disk: `check` reports it).
    public var packCount: Int { packs.count }
    /// Entries added since the last `seal()` (looked up by a linear search until then).
    public var hasUnsealedEntries: Bool { !pending.isEmpty }
    /// Distinct blobs (after `seal()`; before it, added copies count too).
    public var blobCount: Int { sorted.count + pending.count }

    public init() {}

    func packNumber(_ id: PackID) -> Int {
        if let n = packNumbers[id] { return n }
        packs.append(id)
        packNumbers[id] = packs.count - 1
        return packs.count - 1
    }

    public func containsPack(_ id: PackID) -> Bool { packNumbers[id] != nil }

    /// Adds every blob of an index file. Duplicates (a blob in two packs) keep
    /// the first, except that a copy stored whole replaces one stored as a
    /// delta: a delta's base must resolve to a whole copy.
    public func add(_ file: IndexFile) {
        for p in file.packs { add(pack: p.id, entries: p.blobs) }
    }

    public func add(pack: PackID, entries: [PackEntry]) {
        let n = packNumber(pack)
        for e in entries { pending.append(Record(id: e.id, location: BlobLocation(pack: n, entry: e))) }
        if pending.count > max(1 << 20, sorted.count) { seal() }   // bounds the unsorted part's lookups
    }

    /// Appends one entry of pack number `n` (`packNumber`); `seal()` sorts it in.
    func append(pack n: Int, _ e: PackEntry) {
        pending.append(Record(id: e.id, location: BlobLocation(pack: n, entry: e)))
    }

    /// Empties the index (before `Repository.loadIndex` reloads it).
    public func removeAll() {
        packs = []; packNumbers = [:]; sorted = []; buckets = []; pending = []; bucketBits = 8
    }

    /// Room for `count` more entries before `seal()`, so loading does not regrow the array.
    public func reserve(_ count: Int) { pending.reserveCapacity(pending.count + count) }

    /// A copy of a blob replaces the one the index knows only when it is
    /// stored whole and the known one is a delta (a delta's base must
    /// resolve to a whole copy).
    @inline(__always)
    static func replaces(_ new: BlobLocation, _ old: BlobLocation) -> Bool {
        old.compression == .delta && new.compression != .delta
    }

    /// Of two copies added together, the one the index keeps: by `replaces`,
    /// else the one added first (lower pack number, then offset).
    @inline(__always)
    static func preferred(_ a: BlobLocation, over b: BlobLocation) -> Bool {
        if replaces(a, b) { return true }
        if replaces(b, a) { return false }
        return (a.packIndex, a.offset) < (b.packIndex, b.offset)
    }

    /// Sorts the entries added since the last call into place, keeping one
    /// copy of each blob (`preferred`).
    public func seal() {
        if pending.isEmpty && !buckets.isEmpty { return }
        // Sort only the new records, then merge: O(n + k log k), not a full re-sort.
        var fresh = pending
        pending = []
        Self.sortRecords(&fresh)
        var kept = 0
        for i in fresh.indices where kept == 0 || fresh[kept - 1].id != fresh[i].id {
            fresh[kept] = fresh[i]
            kept += 1
        }
        fresh.removeLast(fresh.count - kept)
        if sorted.isEmpty {
            sorted = fresh
        } else if !fresh.isEmpty {
            var merged: [Record] = []
            merged.reserveCapacity(sorted.count + fresh.count)
            var i = 0, j = 0
            while i < sorted.count && j < fresh.count {
                if sorted[i].id < fresh[j].id {
                    merged.append(sorted[i]); i += 1
                } else if fresh[j].id < sorted[i].id {
                    merged.append(fresh[j]); j += 1
                } else {
                    // Known already: the old copy stays unless the new one `replaces` it.
                    merged.append(Self.replaces(fresh[j].location, sorted[i].location) ? fresh[j] : sorted[i]); i += 1; j += 1
                }
            }
            merged.append(contentsOf: sorted[i...])
            merged.append(contentsOf: fresh[j...])
            sorted = merged
        }
        bucketBits = min(16, max(8, (Int.bitWidth - sorted.count.leadingZeroBitCount) - 5))
        let count = 1 << bucketBits, shift = UInt64(64 - bucketBits)
        buckets = [UInt32](repeating: 0, count: count + 1)
        var k = 0
        for (i, r) in sorted.enumerated() {
            let top = Int(r.id.w0 >> shift)
            while k <= top { buckets[k] = UInt32(i); k += 1 }
        }
        while k <= count { buckets[k] = UInt32(sorted.count); k += 1 }
    }

    @inline(__always)
    static func ordered(_ a: Record, _ b: Record) -> Bool {
        a.id != b.id ? a.id < b.id : preferred(a.location, over: b.location)
    }

    /// Sorts records by id (copies of one blob: `preferred` first) in place,
    /// in O(n): ids are SHA-256 hashes, so their top 16 bits spread records
    /// evenly over 65,536 buckets. One counting pass, one in-place permutation
    /// into buckets (American flag sort: no second array, unlike a merge
    /// sort's n/2 scratch), then each small bucket is sorted on its own.
    static func sortRecords(_ records: inout [Record]) {
        if records.count < 4096 { records.sort(by: ordered); return }
        records.withUnsafeMutableBufferPointer { buf in
            let buckets = 1 << 16
            var next = [Int](repeating: 0, count: buckets + 1)
            for r in buf { next[Int(r.id.w0 >> 48) + 1] += 1 }
            for k in 0..<buckets { next[k + 1] += next[k] }
            let start = next   // start[k] ..< start[k + 1] is bucket k
            for k in 0..<buckets {
                let end = start[k + 1]
                while next[k] < end {
                    // Carry the record at the bucket's first unfilled place to its
                    // bucket, taking the one there along, until one belongs here.
                    var r = buf[next[k]]
                    var b = Int(r.id.w0 >> 48)
                    while b != k {
                        swap(&r, &buf[next[b]])
                        next[b] += 1
                        b = Int(r.id.w0 >> 48)
                    }
                    buf[next[k]] = r
                    next[k] += 1
                }
            }
            for k in 0..<buckets where start[k + 1] - start[k] > 1 {
                let lo = start[k], hi = start[k + 1]
                if hi - lo > 32 {
                    var bucket = UnsafeMutableBufferPointer(rebasing: buf[lo..<hi])
                    bucket.sort(by: ordered)
                    continue
                }
                for i in (lo + 1)..<hi {   // insertion sort: buckets hold ~n/65,536 records
                    let r = buf[i]
                    var j = i
                    while j > lo && ordered(r, buf[j - 1]) { buf[j] = buf[j - 1]; j -= 1 }
                    buf[j] = r
                }
            }
        }
    }

    public func lookup(_ id: BlobID) -> BlobLocation? {
        if !pending.isEmpty, let l = lookupPending(id) { return l }
        return lookupSorted(id)
    }

    private func lookupSorted(_ id: BlobID) -> BlobLocation? {
        if sorted.isEmpty { return nil }
        let top = Int(id.w0 >> UInt64(64 - bucketBits))
        let lo = Int(buckets[top]), hi = Int(buckets[top + 1])
        if lo == hi { return nil }
        // Ids are uniform, so the next 32 bits place one within its bucket:
        // start there and step towards it (a few records off, within a cache
        // line or two), instead of a binary search's scattered reads.
        let guess = lo + Int((((id.w0 << UInt64(bucketBits)) >> 32) &* UInt64(hi - lo)) >> 32)
        return sorted.withUnsafeBufferPointer { s in
            var i = guess
            if s[i].id < id {
                i += 1
                while i < hi {
                    let m = s[i].id
                    if m == id { return s[i].location }
                    if id < m { return nil }
                    i += 1
                }
            } else {
                while i >= lo {
                    let m = s[i].id
                    if m == id { return s[i].location }
                    if m < id { return nil }
                    i -= 1
                }
            }
            return nil
        }
    }

    public func contains(_ id: BlobID) -> Bool { lookup(id) != nil }

    /// An entry added but not yet sealed (a linear search: writers seal
    /// before they look up; this keeps a lookup in between correct).
    private func lookupPending(_ id: BlobID) -> BlobLocation? {
        var best: BlobLocation?
        for r in pending where r.id == id {
            if let b = best, !Self.preferred(r.location, over: b) { continue }
            best = r.location
        }
        guard let b = best else { return nil }
        if let old = lookupSorted(id), !Self.replaces(b, old) { return old }
        return b
    }

    /// Is there a blob whose id starts with these 8 bytes (`BlobID.w0`)?
    public func containsPrefix(_ w0: UInt64) -> Bool {
        if pending.contains(where: { $0.id.w0 == w0 }) { return true }
        if sorted.isEmpty { return false }
        let top = Int(w0 >> UInt64(64 - bucketBits))
        var lo = Int(buckets[top]), hi = Int(buckets[top + 1])
        while lo < hi {
            let mid = (lo + hi) >> 1
            let m = sorted[mid].id.w0
            if m == w0 { return true }
            if m < w0 { lo = mid + 1 } else { hi = mid }
        }
        return false
    }

    public func pack(of location: BlobLocation) -> PackID { packs[location.packIndex] }

    /// Every (id, location), in no particular order (each id once after `seal()`).
    public func forEach(_ body: (BlobID, BlobLocation) throws -> Void) rethrows {
        for r in sorted { try body(r.id, r.location) }
        for r in pending { try body(r.id, r.location) }
    }
}
