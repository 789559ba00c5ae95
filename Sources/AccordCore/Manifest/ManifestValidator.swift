import AccordRuntime
/// The rules a manifest stream must follow beyond its encoding (FORMAT.md,
/// "Manifest", "Validity"), checked record by record as `ManifestReader`
/// streams it, so nothing downstream (restore, ls, check, prune, sync,
/// serve) ever sees a path that leaves its tree or a count that is a bomb.
///
/// Memory: the path of the previous record, one (length, kind) pair per
/// ancestor of it that is itself a record (at most one per path component),
/// and one 8-byte hash per regular file seen so far, for hard links (`HashSet64`). The
/// hashes are Swift's `Hasher`, seeded per process: a crafted manifest cannot
/// choose paths that collide with an earlier file's.
struct ManifestValidator {
    /// The smallest chunk the format permits (`ChunkerProfile.validate`: min ≥ 64):
    /// a content of Size bytes has at most ⌈Size ÷ 64⌉ blobs.
    static let smallestChunk: UInt64 = 64
    /// The largest chunk the format permits (max ≤ 64 MiB): at least ⌈Size ÷ 64 MiB⌉ blobs.
    static let largestChunk: UInt64 = 64 << 20

    /// Records checked so far (the number of the last one, from 1).
    private(set) var record = 0
    private var last: RawPath = []
    /// Records that are `last` or an ancestor of it: path length and kind, outermost first.
    private var open: [(length: Int, kind: ManifestEntry.Kind)] = []
    private var files = HashSet64()

    /// How many content blobs an entry of this kind and size may have, or
    /// nil with the reason when none is possible.
    static func blobCountBounds(kind: ManifestEntry.Kind, size: UInt64) -> Result<ClosedRange<Int>, Invalid> {
        switch kind {
        case .file, .stream:
            let most = size / smallestChunk + (size % smallestChunk == 0 ? 0 : 1)
            let least = size / largestChunk + (size % largestChunk == 0 ? 0 : 1)
            guard least <= UInt64(ChunkList.maxIDs) else {
                return .failure(Invalid("a size of \(size) bytes needs more than \(ChunkList.maxIDs) blobs, the most a record may have"))
            }
            return .success(Int(least)...Int(min(most, UInt64(ChunkList.maxIDs))))
        case .directory, .symlink, .hardlink:
            guard size == 0 else { return .failure(Invalid("a \(kind) has size \(size); it must be 0")) }
            return .success(0...0)
        }
    }

    struct Invalid: Error {
        var rule: String
        init(_ rule: String) { self.rule = rule }
    }

    /// Checks one record as decoded (before its chunk list, if any, is
    /// read). Returns the most content ids it may have: a chunk list is
    /// expanded at most that far. `mayBeLinked` false (the writer only, for a
    /// file no later hard link can name) leaves the file out of the hard-link
    /// set: a hard link to it then fails as a link to nothing would.
    mutating func check(_ e: ManifestEntry, listCount: Int?, mayBeLinked: Bool = true) throws -> ClosedRange<Int> {
        record += 1
        let p = e.path
        if let why = Self.pathProblem(p) { throw Invalid("path \(why)") }
        try checkOrder(p)
        // Nearest earlier record that is an ancestor: it must be a directory.
        var common = 0
        let n = min(last.count, p.count)
        while common < n && last[common] == p[common] { common += 1 }
        while let top = open.last, !(top.length <= common && top.length < p.count && (top.length == 1 || p[top.length] == 0x2f)) { open.removeLast() }
        if let top = open.last, top.kind != .directory {
            throw Invalid("it lies below \(ManifestError.quoted(Array(p[0..<top.length]))), which is a \(top.kind), not a directory")
        }
        if p == [0x2f] && e.kind != .directory { throw Invalid("/ must be a directory, not a \(e.kind)") }
        open.append((p.count, e.kind))
        last = p

        guard e.mode <= 0o7777 else { throw Invalid("mode \(String(e.mode, radix: 8)) has bits above 0o7777") }
        guard (0...999_999_999).contains(e.mtimeNsec), (0...999_999_999).contains(e.ctimeNsec) else {
            throw Invalid("a nanosecond field is over 999999999")
        }
        for x in e.xattrs where x.name.isEmpty || x.name.contains(0) {
            throw Invalid("an extended attribute name is empty or holds a NUL byte")
        }
        switch e.kind {
        case .file, .stream, .directory:
            guard e.linkTarget.isEmpty else { throw Invalid("a \(e.kind) has a LinkTarget") }
        case .symlink:
            guard !e.linkTarget.isEmpty, !e.linkTarget.contains(0) else { throw Invalid("a symlink target is empty or holds a NUL byte") }
        case .hardlink:
            guard files.contains(Self.hash(e.linkTarget)) else {
                throw Invalid("hard link to \(ManifestError.quoted(e.linkTarget)), which is not an earlier regular file of this snapshot")
            }
        }
        if e.kind == .file && mayBeLinked { files.insert(Self.hash(p)) }
        return try Self.countBounds(e, listCount: listCount)
    }

    /// The rules a backup's read of its parent manifest keeps
    /// (`ManifestReader.Validation.orderAndCounts`): strictly increasing tree
    /// order, which the merge with the walk relies on, and the bounds on a
    /// record's blob count and chunk list, which keep memory bounded. The
    /// rest (canonical paths, kinds of ancestors, hard-link targets, modes,
    /// xattr names) guards what a restore creates; a backup creates nothing
    /// from its parent, and takes an entry only for the same, canonical, live
    /// path (`ParentCursor`), so they would cost it without protecting it.
    mutating func checkOrderAndCounts(_ e: ManifestEntry, listCount: Int?) throws -> ClosedRange<Int> {
        record += 1
        try checkOrder(e.path)
        last = e.path
        return try Self.countBounds(e, listCount: listCount)
    }

    /// Strictly increasing tree order after `last`, so each path once.
    private func checkOrder(_ p: RawPath) throws {
        if record > 1 {
            let c = ManifestEntry.compareTreeOrder(last, p)
            if c == 0 { throw Invalid("the path appears twice (records must be in strictly increasing tree order)") }
            if c > 0 { throw Invalid("out of tree order: it follows \(ManifestError.quoted(last))") }
        }
    }

    /// The content blobs `e` may have (see `check`), its inline count or its
    /// chunk list's `listCount` checked against them.
    private static func countBounds(_ e: ManifestEntry, listCount: Int?) throws -> ClosedRange<Int> {
        let bounds: ClosedRange<Int>
        switch Self.blobCountBounds(kind: e.kind, size: e.size) {
        case .success(let b): bounds = b
        case .failure(let f): throw f
        }
        if let listCount {
            guard bounds.upperBound > 0 else { throw Invalid("a \(e.kind) has a chunk list") }
            guard listCount <= bounds.upperBound else {
                throw Invalid("\(listCount) chunk-list blobs for a size of \(e.size) bytes, which allows at most \(bounds.upperBound) content blobs")
            }
        } else {
            try Self.checkCount(e.blobs.count, bounds, e)
        }
        return bounds
    }

    static func checkCount(_ count: Int, _ bounds: ClosedRange<Int>, _ e: ManifestEntry) throws {
        guard !bounds.contains(count) else { return }
        if bounds == 0...0 { throw Invalid("a \(e.kind) has \(count) content blobs; it must have none") }
        throw Invalid("\(count) content blobs for a size of \(e.size) bytes: it must have \(bounds.lowerBound) to \(bounds.upperBound) (chunks are 64 bytes to 64 MiB, at most \(ChunkList.maxIDs) per record)")
    }

    /// Why a path is not absolute and canonical, or nil when it is. One pass
    /// over the bytes: it runs for every record a reader or the writer sees
    /// (twice per entry in a restore). Bytes above "/" (letters, digits, most
    /// of a name) are passed over at once; only NUL, "/" and "." need a look.
    static func pathProblem(_ p: RawPath) -> String? {
        p.withUnsafeBufferPointer { b -> String? in
            guard let base = b.baseAddress, b.count > 0 else { return "is empty" }
            guard base[0] == 0x2f else { return "is not absolute" }
            let n = b.count
            if n == 1 { return nil }
            var start = 1   // first byte of the current component
            var i = 1
            while true {
                while i < n && base[i] > 0x2f { i += 1 }
                let c: UInt8 = i < n ? base[i] : 0x2f   // the end closes the last component
                if c == 0 { return "holds a NUL byte" }
                if c == 0x2f {
                    switch i - start {
                    case 0: return i == n ? "ends in /" : "has an empty component (//)"
                    case 1 where base[start] == 0x2e: return "has a . component"
                    case 2 where base[start] == 0x2e && base[start + 1] == 0x2e: return "has a .. component"
                    default: break
                    }
                    if i == n { return nil }
                    start = i + 1
                }
                i += 1
            }
        }
    }

    static func hash(_ p: RawPath) -> Int {
        var h = Hasher()
        p.withUnsafeBytes { h.combine(bytes: $0) }
        return h.finalize()
    }
}

extension ManifestEntry {
    /// Why `path` is not a valid manifest Path (absolute and canonical:
    /// "/" alone or "/a/b", no empty, "." or ".." component, no NUL, no
    /// trailing "/"), e.g. "has a .. component"; nil when it is valid.
    public static func canonicalPathProblem(_ path: RawPath) -> String? {
        ManifestValidator.pathProblem(path)
    }
}

/// A set of `ManifestValidator.hash` values: open addressing with linear
/// probing over a power-of-two table (at most 3/4 full), keyed by the value
/// itself. A `Set<Int>` hashes every value once more, which was a fifth of
/// validating a restore's manifest; these values are spread already (seeded
/// SipHash). 0 marks a free slot, so a value of 0 is kept as 1.
struct HashSet64 {
    private var slots: [UInt64] = []
    private var count = 0

    mutating func insert(_ value: Int) {
        if (count + 1) * 4 > slots.count * 3 { grow() }
        put(Self.key(value))
    }

    func contains(_ value: Int) -> Bool {
        guard !slots.isEmpty else { return false }
        let k = Self.key(value), mask = slots.count - 1
        var i = Int(truncatingIfNeeded: k) & mask
        while slots[i] != 0 {
            if slots[i] == k { return true }
            i = (i + 1) & mask
        }
        return false
    }

    private static func key(_ value: Int) -> UInt64 {
        let k = UInt64(bitPattern: Int64(value))
        return k == 0 ? 1 : k
    }

    private mutating func put(_ k: UInt64) {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: k) & mask
        while slots[i] != 0 {
            if slots[i] == k { return }
            i = (i + 1) & mask
        }
        slots[i] = k
        count += 1
    }

    private mutating func grow() {
        let old = slots
        slots = [UInt64](repeating: 0, count: Swift.max(64, old.count * 2))
        count = 0
        for k in old where k != 0 { put(k) }
    }
}
