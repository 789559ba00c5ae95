/// What every kind of repository id shares: a SHA-256 digest (32 bytes),
/// lowercase hex as the object's name, a short form, byte order as sort order.
/// The kinds are distinct types so that a pack id cannot be passed where a
/// blob id is wanted; each is one stored `ID` (four words inline, no boxing),
/// and everything below is written once, here. The implementations are
/// `@inlinable` so that other modules' hot loops (hash sets of blob ids,
/// `w0` prefixes) specialize them and compare plain words, as they did when
/// every id was one `ID`.
///
/// Hashing says what the bytes are: `BlobID(hashing: chunk)`,
/// `PackID(hashing: packBytes)`, `PackID(digest: hasher.finalize())`.
/// Changing kind would be as explicit (`SnapshotID(digest: id.digest)`), and
/// only where the format says one digest names another thing: no code needs to today.
public protocol ContentID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The digest itself, for code that works on any kind (codecs, hex tables).
    var digest: ID { get set }
    init(digest: ID)
}

/// A blob's id: the SHA-256 of its uncompressed bytes (data, manifest or chunk list).
public struct BlobID: ContentID {
    public var digest: ID
    @inlinable public init(digest: ID) { self.digest = digest }
}

/// A pack's id and file name: the SHA-256 of the pack file's bytes.
public struct PackID: ContentID {
    public var digest: ID
    @inlinable public init(digest: ID) { self.digest = digest }
}

/// A snapshot's id and file name: the SHA-256 of its JSON file's bytes.
public struct SnapshotID: ContentID {
    public var digest: ID
    @inlinable public init(digest: ID) { self.digest = digest }
}

/// An index file's id and file name: the SHA-256 of the index file's bytes.
public struct IndexID: ContentID {
    public var digest: ID
    @inlinable public init(digest: ID) { self.digest = digest }
}

/// A key file's id and file name: the SHA-256 of the key file's bytes.
public struct KeyID: ContentID {
    public var digest: ID
    @inlinable public init(digest: ID) { self.digest = digest }
}

extension ContentID {
    @inlinable public static var zero: Self { Self(digest: .zero) }

    @inlinable public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.init(digest: ID(w0: w0, w1: w1, w2: w2, w3: w3))
    }

    /// Reads 32 bytes (big-endian words, so byte order == hex order == sort order).
    @inlinable public init(bytes p: UnsafeRawPointer) { self.init(digest: ID(bytes: p)) }

    /// `nil` unless exactly 32 bytes.
    @inlinable public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        guard let digest = ID(bytes: bytes) else { return nil }
        self.init(digest: digest)
    }

    /// `nil` unless exactly 64 lowercase hex digits (an object's name has one spelling).
    @inlinable public init?(hex: String) {
        guard let digest = ID(hex: hex) else { return nil }
        self.init(digest: digest)
    }

    /// The SHA-256 of these bytes, named as this kind: the caller says what the bytes are.
    @inlinable public init(hashing data: UnsafeRawBufferPointer) { self.init(digest: SHA256Hasher.hash(data)) }
    @inlinable public init(hashing data: [UInt8]) { self.init(digest: SHA256Hasher.hash(data)) }
    @inlinable public init<S: StringProtocol>(hashing text: S) { self.init(digest: SHA256Hasher.hash(text)) }

    /// The digest's four big-endian words (`w0` is the first 8 bytes: the prefix
    /// the index buckets on and the sync protocol announces).
    @inlinable public var w0: UInt64 { get { digest.w0 } set { digest.w0 = newValue } }
    @inlinable public var w1: UInt64 { get { digest.w1 } set { digest.w1 = newValue } }
    @inlinable public var w2: UInt64 { get { digest.w2 } set { digest.w2 = newValue } }
    @inlinable public var w3: UInt64 { get { digest.w3 } set { digest.w3 = newValue } }

    @inlinable public var bytes: [UInt8] { digest.bytes }
    @inlinable public func write(to p: UnsafeMutableRawPointer) { digest.write(to: p) }
    @inlinable public var hex: String { digest.hex }
    /// The first 8 hex digits, as `snapshots list` shows them.
    @inlinable public var short: String { digest.short }
    @inlinable public var description: String { digest.hex }

    @inlinable public static func < (a: Self, b: Self) -> Bool { a.digest < b.digest }
    @inlinable public static func == (a: Self, b: Self) -> Bool { a.digest == b.digest }
    /// The digest is already uniformly random: one word is enough (as `ID` hashes).
    @inlinable public func hash(into hasher: inout Hasher) { digest.hash(into: &hasher) }
}
