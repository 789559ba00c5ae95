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
/// (id + location) with no per-entry overhead, found by binary search
/// narrowed through a 65,536-slot table on the id's first 16 bits; blobs
/// added during this session go to a small dictionary until `seal()`. So a
/// repository of 10 million chunks costs about 480 MB, 48 bytes a blob.
/// Not thread-safe: callers lock (see `BlobRegistry` in the engine).
public final class MasterIndex {
    struct Record { var id: ID; var location: BlobLocation }

    public private(set) var packs: [PackID] = []
    private var packNumbers: [PackID: Int] = [:]
    private var sorted: [Record] = []
    private var buckets: [UInt32] = []    // buckets[k] = first record whose id's top 16 bits ≥ k
    private var recent: [ID: BlobLocation] = [:]
    /// Packs named by index files (some may be missing on disk: `check` reports it).
    public var packCount: Int { packs.count }
    public var blobCount: Int { sorted.count + recent.count }

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
        for e in entries {
            guard let old = lookup(e.id) else { recent[e.id] = BlobLocation(pack: n, entry: e); continue }
            if old.compression == .delta && e.compression != .delta { replace(e.id, with: BlobLocation(pack: n, entry: e)) }
        }
        if recent.count > max(1 << 16, sorted.count / 4) { seal() }
    }

    private func replace(_ id: ID, with location: BlobLocation) {
        if recent[id] != nil { recent[id] = location; return }
        let top = Int(id.w0 >> 48)
        var lo = Int(buckets[top]), hi = Int(buckets[top + 1])
        while lo < hi {
            let mid = (lo + hi) >> 1
            if sorted[mid].id == id { sorted[mid].location = location; return }
            if sorted[mid].id < id { lo = mid + 1 } else { hi = mid }
        }
    }

    /// Moves recently added entries into the sorted array.
    public func seal() {
        if recent.isEmpty && !buckets.isEmpty { return }
        // Sort only the new records, then merge: O(n + k log k), not a full re-sort.
        var fresh = recent.map { Record(id: $0.key, location: $0.value) }
        fresh.sort { $0.id < $1.id }
        recent.removeAll(keepingCapacity: false)
        if sorted.isEmpty {
            sorted = fresh
        } else if !fresh.isEmpty {
            var merged: [Record] = []
            merged.reserveCapacity(sorted.count + fresh.count)
            var i = 0, j = 0
            while i < sorted.count && j < fresh.count {
                if sorted[i].id < fresh[j].id { merged.append(sorted[i]); i += 1 } else { merged.append(fresh[j]); j += 1 }
            }
            merged.append(contentsOf: sorted[i...])
            merged.append(contentsOf: fresh[j...])
            sorted = merged
        }
        buckets = [UInt32](repeating: 0, count: 65537)
        var k = 0
        for (i, r) in sorted.enumerated() {
            let top = Int(r.id.w0 >> 48)
            while k <= top { buckets[k] = UInt32(i); k += 1 }
        }
        while k <= 65536 { buckets[k] = UInt32(sorted.count); k += 1 }
    }

    public func lookup(_ id: ID) -> BlobLocation? {
        if let l = recent[id] { return l }
        if sorted.isEmpty { return nil }
        let top = Int(id.w0 >> 48)
        var lo = Int(buckets[top]), hi = Int(buckets[top + 1])
        while lo < hi {
            let mid = (lo + hi) >> 1
            let m = sorted[mid].id
            if m == id { return sorted[mid].location }
            if m < id { lo = mid + 1 } else { hi = mid }
        }
        return nil
    }

    public func contains(_ id: ID) -> Bool { lookup(id) != nil }

    /// Is there a blob whose id starts with these 8 bytes (`ID.w0`)?
    public func containsPrefix(_ w0: UInt64) -> Bool {
        if !recent.isEmpty && recent.keys.contains(where: { $0.w0 == w0 }) { return true }
        if sorted.isEmpty { return false }
        let top = Int(w0 >> 48)
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

    /// Every (id, location), in no particular order.
    public func forEach(_ body: (ID, BlobLocation) throws -> Void) rethrows {
        for r in sorted { try body(r.id, r.location) }
        for (id, l) in recent { try body(id, l) }
    }
}
