/// Turns stored bytes back into a blob's bytes and verifies the id.
public enum BlobDecoder {
    /// Gives the bytes of a delta blob's base (a blob stored whole), verified.
    public typealias BaseReader = (BlobID) throws -> [UInt8]

    /// Inflates (if compressed) or applies the delta, and checks SHA-256 == id
    /// (with `idKey`, an encrypted repository's: HMAC-SHA256 under it == id).
    /// With `id` nil the hash is left to the caller. A delta blob needs `base`.
    public static func decode(stored: UnsafeRawBufferPointer, id: BlobID?, compression: BlobCompression, rawLength: Int,
                              inflater: Inflater, into output: inout [UInt8], base: BaseReader? = nil, idKey: HMACKey? = nil) throws {
        let shown = id ?? BlobID.zero
        // No chunk exceeds 64 MiB: a larger length is a damaged header, not a reason to allocate it.
        guard rawLength <= 64 << 20 else { throw BlobError.corrupt(shown, reason: "raw length \(rawLength) exceeds the 64 MiB chunk limit") }
        switch compression {
        case .none:
            guard stored.count == rawLength else { throw BlobError.corrupt(shown, reason: "stored length \(stored.count) ≠ \(rawLength)") }
            output.removeAll(keepingCapacity: true)
            output.append(contentsOf: stored)
        case .zlib:
            do { try inflater.inflate(stored, rawLength: rawLength, into: &output) } catch {
                throw BlobError.corrupt(shown, reason: "\(error)")
            }
        case .delta:
            guard stored.count > 32 else { throw BlobError.corrupt(shown, reason: "delta blob of \(stored.count) bytes has no program") }
            guard let base else { throw BlobError.corrupt(shown, reason: "\(DeltaError.noBase)") }
            let baseID = BlobID(bytes: stored.baseAddress!)
            let baseBytes: [UInt8]
            do { baseBytes = try base(baseID) } catch {
                throw BlobError.baseUnreadable(shown, base: baseID, underlying: error)
            }
            do {
                try baseBytes.withUnsafeBytes {
                    try DeltaCodec.apply(program: UnsafeRawBufferPointer(rebasing: stored[32...]), base: $0, rawLength: rawLength, into: &output)
                }
            } catch {
                throw BlobError.corrupt(shown, reason: "\(error)")
            }
        }
        guard let id else { return }
        let actual = output.withUnsafeBytes { b in idKey.map { BlobID(digest: $0.mac(b)) } ?? BlobID(hashing: b) }
        guard actual == id else { throw BlobError.corrupt(id, reason: "content hashes to \(actual.short)") }
    }

    /// The base id a delta blob's stored bytes name.
    public static func deltaBase(stored: UnsafeRawBufferPointer) -> BlobID? {
        stored.count > 32 ? BlobID(bytes: stored.baseAddress!) : nil
    }
}

public enum BlobError: Error, CustomStringConvertible {
    case corrupt(BlobID, reason: String)
    case notInIndex(BlobID)
    case inPack(BlobID, pack: PackID, offset: UInt32, underlying: Error)
    case baseUnreadable(BlobID, base: BlobID, underlying: Error)

    public var description: String {
        switch self {
        case .corrupt(let id, let reason): return "blob \(id) is corrupt (\(reason))"
        case .notInIndex(let id): return "blob \(id) is not in the index: the repository is missing data; run `accord check`"
        case .inPack(let id, let pack, let offset, let e): return "blob \(id) in pack \(pack) at offset \(offset): \(e); run `accord check --read-data`"
        case .baseUnreadable(let id, let base, let e): return "blob \(id.short) is stored as a delta on blob \(base.short), which cannot be read (\(e))"
        }
    }
}
