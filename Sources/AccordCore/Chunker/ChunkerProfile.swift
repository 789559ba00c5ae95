/// Chunk size bounds for one source: FastCDC never cuts a chunk shorter than
/// `min` (except at end of input) or longer than `max`, and aims at `avg`.
/// A profile is recorded per source in each snapshot (FORMAT.md).
public struct ChunkerProfile: Codable, Equatable, Sendable, CustomStringConvertible {
    public var name: String
    public var min: Int
    public var avg: Int
    public var max: Int

    public init(name: String, min: Int, avg: Int, max: Int) {
        self.name = name; self.min = min; self.avg = avg; self.max = max
    }

    /// File trees: few, large chunks keep the manifest and index small.
    public static let tree = ChunkerProfile(name: "tree", min: 256 << 10, avg: 1 << 20, max: 8 << 20)
    /// Database dumps: scattered row changes would make large chunks store
    /// most of a dump again every day (ARCHITECTURE.md has the measurements).
    public static let dump = ChunkerProfile(name: "dump", min: 1 << 10, avg: 4 << 10, max: 32 << 10)
    /// The manifest stream itself: small chunks so unchanged parts of a tree cost nothing.
    public static let manifest = ChunkerProfile(name: "manifest", min: 4 << 10, avg: 16 << 10, max: 128 << 10)

    public static let builtIn: [ChunkerProfile] = [.tree, .dump, .manifest]

    public static func named(_ name: String) -> ChunkerProfile? {
        builtIn.first { $0.name == name }
    }

    /// Checks the bounds: powers of two for `avg`, min < avg < max, max ≤ 64 MiB.
    public func validate() throws {
        let ok = min >= 64 && min < avg && avg < max && max <= 64 << 20 && avg & (avg - 1) == 0
        if !ok { throw ChunkerError.badProfile(self) }
    }

    public var description: String { "\(name) (\(min)/\(avg)/\(max))" }
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
