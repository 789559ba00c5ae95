import Foundation

/// Delta blobs (FORMAT.md, "Blob types and compression", compression 2): a
/// blob stored as the id of a *base* blob plus a program of copy and insert
/// operations that turns the base's bytes into the blob's.
///
///     Stored  = BaseID(32) || Op+
///     Op      = varint(n << 1) || varint(from)      copy base[from ..< from + n]
///             | varint(n << 1 | 1) || Byte × n       insert these n bytes
///
/// A row changed in a 4 KiB chunk of a database dump costs about 10 bytes of
/// program, where deflate needs ~200 bytes for the chunk alone (its matches
/// are at most 258 bytes long, so even a preset dictionary leaves ~90).
public enum DeltaCodec {
    /// Blobs larger than this (base or target) are never delta-encoded:
    /// the base and the encoder's table are held in memory per thread. The
    /// largest chunk any profile cuts (a tree file's, 8 MiB).
    public static let maxLength = ChunkerProfile.tree.max
    /// Shortest copy the encoder emits (a copy op costs 3-5 bytes).
    static let minMatch = 8
    /// Most bits of the encoder's table (4 MiB of positions): a larger base
    /// has only every `stride`-th position in it (below).
    static let maxTableBits = 20
    /// While the pending insert is shorter than this, a match is first looked
    /// for in the base from `localBehind` bytes before to `localAhead` after
    /// where the previous copy ended (a changed field shifts the rest of a
    /// row by a few bytes; a row of padding can match the row before or
    /// after for its length, and the longest run wins); then in the table of
    /// all the base's positions.
    static let localLiterals = 32
    static let localAhead = 256
    static let localBehind = 256
    /// A candidate in that window whose run reaches this length (or the
    /// blob's end) is taken without looking further; a shorter one only when
    /// the table of the base's positions offers none longer.
    static let localCap = 64
    /// A base up to this size has its table built at the first byte found
    /// nowhere near: cheap, and a small file's edits move its lines about.
    static let eagerTable = 64 << 10
    /// At most this many positions of that window are compared (a run of
    /// spaces there matches at every one of them).
    static let localCandidates = 24
    /// Runs are compared up to this length to pick the longest.
    static let localRun = 4096

    /// Encodes `target` against `base`; returns the program (without the
    /// base id), or nil when it would not be shorter than `limit` bytes.
    public static func encode(base: UnsafeRawBufferPointer, target: UnsafeRawBufferPointer, limit: Int) -> [UInt8]? {
        encode(base: base, target: target, limit: limit, indexesWindow: true)
    }

    /// `indexesWindow` false: every search of the window near the last copy
    /// scans it (the tests check that the index gives the same programs).
    static func encode(base: UnsafeRawBufferPointer, target: UnsafeRawBufferPointer, limit: Int,
                       indexesWindow: Bool) -> [UInt8]? {
        let b = base.bindMemory(to: UInt8.self), t = target.bindMemory(to: UInt8.self)
        guard !t.isEmpty, t.count <= maxLength, b.count <= maxLength else { return nil }
        var w = ByteWriter(capacity: 64)
        if b.count < minMatch || t.count < minMatch {
            w.varint(UInt64(t.count) << 1 | 1)
            w.raw(UnsafeRawBufferPointer(target))
            return w.bytes.count < limit ? w.bytes : nil
        }
        // Positions of the base's 8-byte windows, by hash (earlier positions
        // win). A base of up to 512 KiB has every position in the table; a
        // larger one every `stride`-th (2 for 1 MiB, 16 for 8 MiB), so the
        // table stays at 4 MiB: every target position is still looked up, so
        // a common run of minMatch + stride - 1 bytes or more is always found.
        // Built on first need: a blob with a few rows changed resynchronises
        // near where its previous copy ended (below) and never needs it.
        var bits = 4
        while (1 << bits) < b.count * 2 && bits < maxTableBits { bits += 1 }
        let stride = max(1, (b.count * 2 + (1 << bits) - 1) >> bits)
        let mask = (1 << bits) - 1
        var table: [Int32] = []
        @inline(__always) func key(_ p: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
            let v = UnsafeRawPointer(p.baseAddress! + i).loadUnaligned(as: UInt64.self)
            return Int(truncatingIfNeeded: (v &* 0x9E37_79B9_7F4A_7C15) >> UInt64(64 - bits)) & mask
        }
        func buildTable() {
            table = [Int32](repeating: -1, count: 1 << bits)
            var j = (b.count - minMatch) / stride * stride
            while j >= 0 { table[key(b, j)] = Int32(j); j -= stride }
        }
        /// How many bytes `t[i...]` and `b[from...]` have in common, up to `cap`.
        func common(_ i: Int, _ from: Int, cap: Int) -> Int {
            var n = 0
            let most = min(cap, t.count - i, b.count - from)
            while n + 8 <= most {
                let x = UnsafeRawPointer(t.baseAddress! + i + n).loadUnaligned(as: UInt64.self)
                    ^ UnsafeRawPointer(b.baseAddress! + from + n).loadUnaligned(as: UInt64.self)
                if x != 0 { return n + x.littleEndian.trailingZeroBitCount >> 3 }
                n += 8
            }
            while n < most && t[i + n] == b[from + n] { n += 1 }
            return n
        }
        // The window `find` searches stays put while an insert is pending
        // (it is placed by `expected`, which moves only with a copy): its
        // first search scans it; a second one in the same window indexes its
        // 8-byte words once (chains in increasing position), so the pending
        // insert's next bytes cost a lookup each, not a scan. The candidates,
        // their order and the result are the scan's exactly. Positions are
        // Int16: the window (localBehind + localAhead + minMatch) must stay
        // under 32768 bytes.
        assert(localBehind + localAhead + minMatch < 1 << 15, "the window index's Int16 positions")
        let windowBits = 10
        var windowLo = -1, windowHi = -1, windowIndexed = false
        var windowHead: [Int16] = [], windowNext: [Int16] = []
        @inline(__always) func windowKey(_ v: UInt64) -> Int {
            Int(truncatingIfNeeded: (v &* 0x9E37_79B9_7F4A_7C15) >> UInt64(64 - windowBits))
        }
        /// Where in `b[lo ..< hi]` the longest run equal to `t[i...]` (at
        /// least minMatch bytes; counted up to `localRun`) starts, and its
        /// length, or (-1, 0): the first occurrence of a row's padding is
        /// seldom the row, and the padding of the row before or after gives a
        /// run of a row's length.
        func find(_ i: Int, _ lo: Int, _ hi: Int) -> (Int, Int) {
            guard hi - lo >= minMatch else { return (-1, 0) }
            let want = UnsafeRawPointer(t.baseAddress! + i).loadUnaligned(as: UInt64.self)
            let base = UnsafeRawPointer(b.baseAddress!)
            var best = -1, bestLength = 0, candidates = 0
            /// Takes a candidate; true when the search is over.
            @inline(__always) func take(_ p: Int) -> Bool {
                let n = common(i, p, cap: localRun)
                if n > bestLength { best = p; bestLength = n; if n >= localRun { return true } }
                // Padding matches everywhere: a few candidates are enough.
                candidates += 1
                return candidates == localCandidates
            }
            if !indexesWindow || lo != windowLo || hi != windowHi {
                windowLo = lo; windowHi = hi; windowIndexed = false
                var p = lo
                while p + minMatch <= hi {
                    if base.loadUnaligned(fromByteOffset: p, as: UInt64.self) == want, take(p) { break }
                    p += 1
                }
                return (best, bestLength)
            }
            if !windowIndexed {
                if windowHead.isEmpty {
                    windowHead = [Int16](repeating: -1, count: 1 << windowBits)
                    windowNext = [Int16](repeating: -1, count: localBehind + localAhead + minMatch)
                } else {
                    for k in windowHead.indices { windowHead[k] = -1 }
                }
                var p = hi - minMatch
                while p >= lo {
                    let k = windowKey(base.loadUnaligned(fromByteOffset: p, as: UInt64.self))
                    windowNext[p - lo] = windowHead[k]
                    windowHead[k] = Int16(p - lo)
                    p -= 1
                }
                windowIndexed = true
            }
            var e = Int(windowHead[windowKey(want)])
            while e >= 0 {
                let p = lo + e
                if base.loadUnaligned(fromByteOffset: p, as: UInt64.self) == want, take(p) { break }
                e = Int(windowNext[e])
            }
            return (best, bestLength)
        }

        var literalStart = 0   // start of the pending insert
        var i = 0
        var expected = 0       // where the previous copy ended in the base: try it first
        func emitInsert(upTo end: Int) {
            guard end > literalStart else { return }
            w.varint(UInt64(end - literalStart) << 1 | 1)
            w.raw(UnsafeRawBufferPointer(rebasing: target[literalStart..<end]))
        }
        while i + minMatch <= t.count {
            // The longest run of: where the previous copy ended (bytes
            // inserted), as far past it as the pending insert is long (bytes
            // replaced), and, while the pending insert is short, anywhere near
            // it (a changed field shifts the rest of its row). Nothing there:
            // this byte is new, and the table is not built for every byte of
            // a changed field; a long pending insert, or a short run, asks the
            // table of all the base's positions.
            var from = -1, run = 0
            func consider(_ p: Int) {
                guard p >= 0, p + minMatch <= b.count, p != from,
                      memcmp(b.baseAddress! + p, t.baseAddress! + i, minMatch) == 0 else { return }
                let n = common(i, p, cap: localRun)
                if n > run { from = p; run = n }
            }
            consider(expected)
            if i > literalStart { consider(expected + (i - literalStart)) }
            let local = i - literalStart < localLiterals
            if local && run < localRun {
                let (p, n) = find(i, max(0, expected - localBehind), min(b.count, expected + localAhead + minMatch))
                // Ties: the earlier position (a shorter varint, and what the table would give).
                if n > run || (n == run && p >= 0 && p < from) { from = p; run = n }
            }
            if !local || (from < 0 && b.count <= eagerTable) || (from >= 0 && run < localCap && i + run < t.count) {
                if table.isEmpty { buildTable() }
                consider(Int(table[key(t, i)]))
            }
            guard from >= 0 else {
                i += 1
                // The pending insert alone already costs the limit: give up (a
                // later copy could only take back bytes this scan found no match
                // for; a rewritten chunk is not scanned to its end).
                if i - literalStart + w.bytes.count >= limit { return nil }
                continue
            }
            // Extend forward (8 bytes at a time), then backward over the pending literals.
            let n = run < localRun ? run : localRun + common(i + localRun, from + localRun, cap: .max)
            var start = i, bstart = from
            while start > literalStart && bstart > 0 && t[start - 1] == b[bstart - 1] { start -= 1; bstart -= 1 }
            emitInsert(upTo: start)
            let len = n + (i - start)
            w.varint(UInt64(len) << 1)
            w.varint(UInt64(bstart))
            if w.bytes.count >= limit { return nil }
            i = start + len
            literalStart = i
            expected = bstart + len
        }
        emitInsert(upTo: t.count)
        return w.bytes.count < limit ? w.bytes : nil
    }

    /// Runs a program against `base`; the result must be exactly `rawLength`
    /// bytes. Throws on any op that reads outside the base or the program.
    public static func apply(program: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer, rawLength: Int,
                             into output: inout [UInt8]) throws {
        output.removeAll(keepingCapacity: true)
        guard rawLength >= 0 else { throw DeltaError.malformed("negative blob length \(rawLength)") }
        output.reserveCapacity(rawLength)
        var r = ByteReader(program)
        guard r.remaining > 0 else { throw DeltaError.malformed("empty program") }
        while r.remaining > 0 {
            let v = try r.varint()
            let n64 = v >> 1
            guard n64 >= 1, n64 <= UInt64(rawLength - output.count) else {
                throw DeltaError.malformed("an op of \(n64) bytes at program offset \(r.offset) overruns the blob's \(rawLength) bytes")
            }
            let n = Int(n64)
            if v & 1 == 0 {
                let from = try r.varint()
                guard from <= UInt64(base.count), UInt64(n) <= UInt64(base.count) - from else {
                    throw DeltaError.malformed("copy of \(n) bytes from \(from) lies outside the \(base.count)-byte base")
                }
                output.append(contentsOf: UnsafeRawBufferPointer(rebasing: base[Int(from)..<Int(from) + n]))
            } else {
                guard r.remaining >= n else { throw DeltaError.malformed("insert of \(n) bytes runs past the program's end") }
                output.append(contentsOf: UnsafeRawBufferPointer(rebasing: program[r.offset..<r.offset + n]))
                try r.skip(n)
            }
        }
        guard output.count == rawLength else {
            throw DeltaError.malformed("program yields \(output.count) bytes, the blob has \(rawLength)")
        }
    }
}

public enum DeltaError: Error, CustomStringConvertible, Equatable {
    case malformed(String)
    case noBase
    case baseIsDelta(BlobID)

    public var description: String {
        switch self {
        case .malformed(let m): return "delta program is corrupt: \(m)"
        case .noBase: return "delta blob read without access to its base"
        case .baseIsDelta(let b): return "its base \(b.short) is itself stored as a delta (a base must be stored whole)"
        }
    }
}
