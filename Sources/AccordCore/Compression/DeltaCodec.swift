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

    /// Encodes `target` against `base`; returns the program (without the
    /// base id), or nil when it would not be shorter than `limit` bytes.
    public static func encode(base: UnsafeRawBufferPointer, target: UnsafeRawBufferPointer, limit: Int) -> [UInt8]? {
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
        var bits = 4
        while (1 << bits) < b.count * 2 && bits < maxTableBits { bits += 1 }
        let stride = max(1, (b.count * 2 + (1 << bits) - 1) >> bits)
        let mask = (1 << bits) - 1
        var table = [Int32](repeating: -1, count: 1 << bits)
        @inline(__always) func key(_ p: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
            let v = UnsafeRawPointer(p.baseAddress! + i).loadUnaligned(as: UInt64.self)
            return Int(truncatingIfNeeded: (v &* 0x9E37_79B9_7F4A_7C15) >> UInt64(64 - bits)) & mask
        }
        var j = (b.count - minMatch) / stride * stride
        while j >= 0 { table[key(b, j)] = Int32(j); j -= stride }

        var literalStart = 0   // start of the pending insert
        var i = 0
        var expected = 0       // where the previous copy ended in the base: try it first
        func emitInsert(upTo end: Int) {
            guard end > literalStart else { return }
            w.varint(UInt64(end - literalStart) << 1 | 1)
            w.raw(UnsafeRawBufferPointer(rebasing: target[literalStart..<end]))
        }
        while i + minMatch <= t.count {
            var from = -1
            if expected + minMatch <= b.count && memcmp(b.baseAddress! + expected, t.baseAddress! + i, minMatch) == 0 {
                from = expected
            } else {
                let cand = Int(table[key(t, i)])
                if cand >= 0 && memcmp(b.baseAddress! + cand, t.baseAddress! + i, minMatch) == 0 { from = cand }
            }
            guard from >= 0 else {
                i += 1
                // The pending insert alone already costs the limit: give up (a
                // later copy could only take back bytes this scan found no match
                // for; a rewritten chunk is not scanned to its end).
                if i - literalStart + w.bytes.count >= limit { return nil }
                continue
            }
            // Extend forward, then backward over the pending literals.
            var n = minMatch
            while i + n < t.count && from + n < b.count && t[i + n] == b[from + n] { n += 1 }
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
