import AccordCore

extension ChunkerProfile {
    /// The `dump` profile of accord 0.21 and earlier (1/4/32 KiB, the
    /// repository's level): FORMAT.md's chunker vectors and the golden chunk
    /// lists are cut with it, and engine tests that need many chunks from a
    /// few megabytes (chunk lists, hand-offs, delta chains) use it. Snapshots
    /// record their profile's numbers, so repositories keep reading either.
    public static let dump021 = ChunkerProfile(name: "dump", min: 1 << 10, avg: 4 << 10, max: 32 << 10)
}
