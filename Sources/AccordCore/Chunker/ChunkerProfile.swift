/// Chunk size bounds for one source: FastCDC never cuts a chunk shorter than
/// `min` (except at end of input) or longer than `max`, and aims at `avg`.
/// A profile is recorded per source in each snapshot (FORMAT.md).
public struct ChunkerProfile: Codable, Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var min: Int
    public var avg: Int
    public var max: Int
    /// The zlib level a chunk gets when the repository's level (1 by
    /// default, igzip's fastest) leaves it more than 1/`recompressRatio` of its size:
    /// large chunks of prose-like rows deflate ~10% smaller at libdeflate's
    /// level 6, while a dump's repetitive rows, which level 1 already shrinks
    /// 30×, are not deflated twice. Nil: every chunk at the repository's level.
    /// Recorded in the snapshot (`sources[].profile.level`) when set.
    public var level: Int32?

    public init(name: String, min: Int, avg: Int, max: Int, level: Int32? = nil) {
        self.name = name; self.min = min; self.avg = avg; self.max = max; self.level = level
    }

    /// A chunk stored at the repository's level is deflated again at `level`
    /// when its zlib stream is longer than 1/8 of it.
    public static let recompressRatio = 8

    /// File trees: few, large chunks keep the manifest and index small.
    public static let tree = ChunkerProfile(name: "tree", min: 256 << 10, avg: 1 << 20, max: 8 << 20)
    /// Database dumps (command sources, inline files, plan dumps). Chunks of 256 KiB
    /// on average deflate nearly as well as the whole stream, and a changed
    /// chunk is stored as a delta on the one it replaced, so scattered row
    /// updates cost a few bytes each all the same (Benchmarks/README.md,
    /// "Data efficiency", has the measurements). Until 0.21: 1/4/32 KiB,
    /// level 1, which took 2.3× restic's bytes for a dump's first copy.
    public static let dump = ChunkerProfile(name: "dump", min: 64 << 10, avg: 256 << 10, max: 1 << 20, level: 6)
    /// Dumps kept as files in a tree (`--dump-files`, `*.sql`): the `dump`
    /// bounds, so a changed file is stored as deltas all the same, at the
    /// repository's level, so the tree is backed up at a tree's speed. The
    /// second pass at level 6 costs ~4× a first backup's time on prose-like
    /// rows for ~10% fewer bytes (Benchmarks/README.md, "Session 25"):
    /// worth it for the database dump a plan streams every
    /// day (`--command`, `dump`), not for every `.sql` file of a tree.
    public static let dumpFile = ChunkerProfile(name: "dump", min: 64 << 10, avg: 256 << 10, max: 1 << 20)
    /// The manifest stream itself: small chunks so unchanged parts of a tree cost nothing.
    public static let manifest = ChunkerProfile(name: "manifest", min: 4 << 10, avg: 16 << 10, max: 128 << 10)

    public static let builtIn: [ChunkerProfile] = [.tree, .dump, .manifest]

    public static func named(_ name: String) -> ChunkerProfile? {
        builtIn.first { $0.name == name }
    }

    /// Checks the bounds: powers of two for `avg`, min < avg < max, max ≤ 64 MiB.
    public func validate() throws {
        let ok = min >= 64 && min < avg && avg < max && max <= 64 << 20 && avg & (avg - 1) == 0 && (level.map { (1...9).contains($0) } ?? true)
        if !ok { throw ChunkerError.badProfile(self) }
    }

    public var description: String { "\(name) (\(min)/\(avg)/\(max)\(level.map { ", level \($0)" } ?? ""))" }
}

public enum ChunkerError: Error, CustomStringConvertible {
    case badProfile(ChunkerProfile)
    public var description: String {
        switch self {
        case .badProfile(let p):
            return "chunker profile \(p.name) \(p.min)/\(p.avg)/\(p.max) is invalid: need 64 ≤ min < avg < max ≤ 64 MiB and avg a power of two"
        }
    }
}
