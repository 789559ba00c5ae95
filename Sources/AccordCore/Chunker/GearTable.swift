/// The 256 random 64-bit words FastCDC's rolling hash adds per byte, derived
/// from the repository's `chunkerSeed` with SplitMix64 (FORMAT.md, "Chunker").
/// Different seeds give different boundaries, so chunk sizes leak less about
/// content shared between repositories.
///
/// `@unchecked Sendable`: no lock needed, `words` is filled in `init` and only read after.
public final class GearTable: @unchecked Sendable {
    public let seed: UInt64
    let words: UnsafeMutablePointer<UInt64>

    public init(seed: UInt64) {
        self.seed = seed
        words = .allocate(capacity: 256)
        var state = seed
        for i in 0..<256 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            words[i] = z ^ (z >> 31)
        }
    }

    /// A table of given words: an encrypted repository's, derived from its
    /// key (FORMAT.md, "Encryption"), so its chunk boundaries depend on a secret.
    public init(words given: [UInt64]) {
        precondition(given.count == 256)
        seed = 0
        words = .allocate(capacity: 256)
        for i in 0..<256 { words[i] = given[i] }
    }

    deinit { words.deallocate() }

    public subscript(i: Int) -> UInt64 { words[i] }
}
