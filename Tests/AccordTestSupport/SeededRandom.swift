/// SplitMix64 for tests: the same seed gives the same bytes on every run, so
/// a failure reproduces and golden files stay stable. Shared by every test
/// target (each adds its own `text(_:)` flavour where it needs compressible data).
public struct SeededRandom: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `n` bytes: successive little-endian 64-bit words, the last one cut short.
    public mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        out.withUnsafeMutableBytes { buf in
            let words = n / 8
            let p = buf.baseAddress!
            var i = 0
            while i < words { p.storeBytes(of: next().littleEndian, toByteOffset: i &* 8, as: UInt64.self); i &+= 1 }
            var last = next()
            for j in (words * 8)..<n { buf[j] = UInt8(truncatingIfNeeded: last); last >>= 8 }
        }
        return out
    }

    /// 0 ..< n (n ≥ 1 assumed; 0 gives 0).
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
    public mutating func int(below n: Int) -> Int { below(n) }
    public mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &self) }
    public mutating func double(_ range: ClosedRange<Double>) -> Double { Double.random(in: range, using: &self) }
}
