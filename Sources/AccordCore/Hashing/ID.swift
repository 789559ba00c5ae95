/// The raw 32 bytes of a SHA-256 digest, as `SHA256Hasher` returns them. It
/// names nothing by itself: the repository's names are the typed ids over it
/// (`BlobID`, `PackID`, `SnapshotID`, `IndexID`, see `ContentID`), and code
/// that holds one of those says which kind it means. Stored inline as four
/// words so ids are cheap to hash, compare and keep by the million.
public struct ID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    public static let zero = ID(w0: 0, w1: 0, w2: 0, w3: 0)

    public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3
    }

    /// Reads 32 bytes (big-endian words, so byte order == hex order == sort order).
    public init(bytes p: UnsafeRawPointer) {
        w0 = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        w1 = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        w2 = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        w3 = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }

    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        guard bytes.count == 32 else { return nil }
        let a = Array(bytes)
        self = a.withUnsafeBytes { ID(bytes: $0.baseAddress!) }
    }

    public init?(hex: String) {
        let u = Array(hex.utf8)
        guard u.count == 64 else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 {
            // Lowercase only: ids name files, and a name has one spelling.
            guard let hi = lowerHexValue(u[2 * i]), let lo = lowerHexValue(u[2 * i + 1]) else { return nil }
            out[i] = hi << 4 | lo
        }
        self.init(bytes: out)
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBytes { write(to: $0.baseAddress!) }
        return out
    }

    public func write(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: w0.bigEndian, toByteOffset: 0, as: UInt64.self)
        p.storeBytes(of: w1.bigEndian, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: w2.bigEndian, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: w3.bigEndian, toByteOffset: 24, as: UInt64.self)
    }

    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 64)
        var i = 0
        for w in [w0, w1, w2, w3] {
            for shift in stride(from: 60, through: 0, by: -4) {
                out[i] = digits[Int((w >> UInt64(shift)) & 0xf)]
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }
    /// The first 8 hex digits, as `snapshots list` shows them.
    public var short: String { String(hex.prefix(8)) }

    @inlinable public static func < (a: ID, b: ID) -> Bool {
        if a.w0 != b.w0 { return a.w0 < b.w0 }
        if a.w1 != b.w1 { return a.w1 < b.w1 }
        if a.w2 != b.w2 { return a.w2 < b.w2 }
        return a.w3 < b.w3
    }

    @inlinable public func hash(into hasher: inout Hasher) {
        // The id is already uniformly random: one word is enough.
        hasher.combine(w1)
    }

    @inlinable public static func == (a: ID, b: ID) -> Bool {
        a.w0 == b.w0 && a.w1 == b.w1 && a.w2 == b.w2 && a.w3 == b.w3
    }
}

@inline(__always)
func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
}

@inline(__always)
func lowerHexValue(_ c: UInt8) -> UInt8? {
    c >= UInt8(ascii: "A") && c <= UInt8(ascii: "F") ? nil : hexValue(c)
}

public func hexString<C: Sequence>(_ bytes: C) -> String where C.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xf)]) }
    return String(decoding: out, as: UTF8.self)
}

public func bytesFromHex(_ s: String) -> [UInt8]? { bytesFromHex(s, digit: hexValue) }

/// Lowercase hex to bytes (key files and configs write lowercase: another
/// spelling is another file); nil on any other character or an odd length.
public func hexBytes(_ s: String) -> [UInt8]? { bytesFromHex(s, digit: lowerHexValue) }

@inline(__always)
func bytesFromHex(_ s: String, digit: (UInt8) -> UInt8?) -> [UInt8]? {
    let u = Array(s.utf8)
    guard u.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(u.count / 2)
    var i = 0
    while i < u.count {
        guard let hi = digit(u[i]), let lo = digit(u[i + 1]) else { return nil }
        out.append(hi << 4 | lo)
        i += 2
    }
    return out
}
