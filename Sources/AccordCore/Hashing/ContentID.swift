/// What every kind of repository id shares: 32 bytes (a SHA-256 digest, `raw`),
/// lowercase hex as the object's name, a short form, byte order as sort order.
/// The kinds are distinct types so that a pack id cannot be passed where a
/// blob id is wanted; each is one stored `ID` (four words inline, no boxing),
/// and everything below is written once, here. The implementations are
/// `@inlinable` so that other modules' hot loops (hash sets of blob ids,
/// `w0` prefixes) specialize them and compare plain words, as they did when
/// every id was one `ID`.
///
/// Changing kind is explicit (`PackID(raw: blob.raw)`) and happens only where
/// the format says one digest names another thing; hashing bytes says what
/// the result names: `BlobID(hashing: chunk)`, `PackID(hashing: packBytes)`.
public protocol ContentID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The digest itself, for code that works on any kind (codecs, hex tables).
    var raw: ID { get set }
    init(raw: ID)
}

/// A blob's id: the SHA-256 of its uncompressed bytes (data, manifest or chunk list).
public struct BlobID: ContentID {
    public var raw: ID
    @inlinable public init(raw: ID) { self.raw = raw }
}

/// A pack's id and file name: the SHA-256 of the pack file's bytes.
public struct PackID: ContentID {
    public var raw: ID
    @inlinable public init(raw: ID) { self.raw = raw }
}

/// A snapshot's id and file name: the SHA-256 of its JSON file's bytes.
public struct SnapshotID: ContentID {
    public var raw: ID
    @inlinable public init(raw: ID) { self.raw = raw }
}

/// An index file's id and file name: the SHA-256 of the index file's bytes.
public struct IndexID: ContentID {
    public var raw: ID
    @inlinable public init(raw: ID) { self.raw = raw }
}

extension ContentID {
    @inlinable public static var zero: Self { Self(raw: .zero) }

    @inlinable public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.init(raw: ID(w0: w0, w1: w1, w2: w2, w3: w3))
    }

    /// Reads 32 bytes (big-endian words, so byte order == hex order == sort order).
    @inlinable public init(bytes p: UnsafeRawPointer) { self.init(raw: ID(bytes: p)) }

    /// `nil` unless exactly 32 bytes.
    @inlinable public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        guard let raw = ID(bytes: bytes) else { return nil }
        self.init(raw: raw)
    }

    /// `nil` unless exactly 64 lowercase hex digits (an object's name has one spelling).
    @inlinable public init?(hex: String) {
        guard let raw = ID(hex: hex) else { return nil }
        self.init(raw: raw)
    }

    /// The SHA-256 of these bytes, named as this kind: the caller says what the bytes are.
    @inlinable public init(hashing data: UnsafeRawBufferPointer) { self.init(raw: SHA256Hasher.hash(data)) }
    @inlinable public init(hashing data: [UInt8]) { self.init(raw: SHA256Hasher.hash(data)) }
    @inlinable public init<S: StringProtocol>(hashing text: S) { self.init(raw: SHA256Hasher.hash(text)) }

    /// The digest's four big-endian words (`w0` is the first 8 bytes: the prefix
    /// the index buckets on and the sync protocol announces).
    @inlinable public var w0: UInt64 { get { raw.w0 } set { raw.w0 = newValue } }
    @inlinable public var w1: UInt64 { get { raw.w1 } set { raw.w1 = newValue } }
    @inlinable public var w2: UInt64 { get { raw.w2 } set { raw.w2 = newValue } }
    @inlinable public var w3: UInt64 { get { raw.w3 } set { raw.w3 = newValue } }

    @inlinable public var bytes: [UInt8] { raw.bytes }
    @inlinable public func write(to p: UnsafeMutableRawPointer) { raw.write(to: p) }
    @inlinable public var hex: String { raw.hex }
    /// The first 8 hex digits, as `snapshots list` shows them.
    @inlinable public var short: String { raw.short }
    @inlinable public var description: String { raw.hex }

    @inlinable public static func < (a: Self, b: Self) -> Bool { a.raw < b.raw }
    @inlinable public static func == (a: Self, b: Self) -> Bool { a.raw == b.raw }
    /// The digest is already uniformly random: one word is enough (as `ID` hashes).
    @inlinable public func hash(into hasher: inout Hasher) { raw.hash(into: &hasher) }
}
