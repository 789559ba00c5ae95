import Foundation
import AccordCore
import AccordRuntime

/// What one sync sent.
public struct SyncStats: Sendable {
    public var snapshots = 0
    public var blobsSent = 0
    /// Stored (compressed) bytes of the blobs sent: the payload.
    public var payloadBytes: UInt64 = 0
    public var wireBytesSent: UInt64 = 0
    public var wireBytesReceived: UInt64 = 0
    /// Key files sent (encrypted repositories: all of them, every session).
    public var keyFiles = 0
    public var seconds: Double = 0
}

/// The sending side of a sync: asks the destination which blobs it lacks,
/// in batches, and streams those as stored (no recompression), then the snapshot.
/// An encrypted repository's blobs travel sealed (`sealedBlobs`), with their
/// ids and the SHA-256 of their stored bytes; its key files travel too
/// (SyncClientSealed.swift). The client needs the key: it reads the snapshots.
///
///     hello → helloOK
///     (keyFile → keyOK)*                  encrypted repositories: every key file
///     for each snapshot (oldest first):
///         (have → missing, then blob*)*   pipelined, one round trip per batch of ids
///         flush → flushed                 blobs durable on the destination
///         snapshot → snapshotOK           the commit point there
///     placeMarker → markerOK              (optional)
///     bye
public final class SyncClient {
    let repository: Repository
    let connection: FrameConnection
    public internal(set) var stats = SyncStats()
    public var progress: AccordRuntime.Progress?
    /// Blobs the destination is known to hold (from snapshots it has or we sent).
    var remoteKnown = Set<BlobID>()
    /// May delta blobs be sent as stored (the destination's format allows them)?
    var remoteTakesDeltas = false
    let inflater = Inflater()
    /// Sealed bytes opened to authenticate them before they are sent (discarded).
    var opened: [UInt8] = []
    lazy var deflater = Deflater(level: CompressionLevel(Int32(repository.config.compression.level)))
    private let started = Sys.monotonicSeconds()
    /// How long to wait for the destination's first answer (ssh connect + sudo + start).
    public var helloTimeout: Double = 60

    public init(repository: Repository, connection: FrameConnection) {
        self.repository = repository
        self.connection = connection
    }

    /// Opens the session; the destination creates its repository with our config if needed.
    public func hello(allowOtherRepository: Bool = false) throws {
        let config = try repository.backend.read(.config, "config")
        try connection.send(.hello(version: Frame.protocolVersion, flags: allowOtherRepository ? Frame.flagAllowOtherRepository : 0, config: config))
        let reply = try connection.expect("the reply to hello", timeout: helloTimeout)
        guard case .helloOK(let version, let config) = reply else { throw ProtocolError.unexpected(reply.kind, expecting: "helloOK") }
        guard version == Frame.protocolVersion else { throw ProtocolError.versionMismatch(version) }
        let remote = try? JSONDecoder().decode(RepositoryConfig.self, from: Data(config))
        // A version 1 destination (another repository, --allow-other-repository) takes no delta blobs.
        remoteTakesDeltas = remote?.allowsDeltaBlobs ?? false
        try checkEncryption(remote: remote)
        if repository.config.isEncrypted { try sendKeyFiles() }
    }

    public func remoteSnapshots() throws -> Set<SnapshotID> {
        try connection.send(.listSnapshots)
        let reply = try connection.expect("the snapshot list")
        guard case .snapshotList(let ids) = reply else { throw ProtocolError.unexpected(reply.kind, expecting: "snapshotList") }
        return Set(ids)
    }

    /// Every blob a snapshot needs: its manifest blobs and all content blobs.
    func blobs(of s: Snapshot) throws -> [BlobID] { try repository.referencedBlobs(snapshot: s) }

    /// Remembers the blobs of a snapshot the destination already has.
    public func assumeRemoteHas(_ s: Snapshot) throws {
        for b in try blobs(of: s) { remoteKnown.insert(b) }
    }

    /// Sends one snapshot and whatever blobs the destination lacks.
    public func send(_ id: SnapshotID) throws {
        // The file as stored (sealed in an encrypted repository), and what it says (opened with the key).
        let json: [UInt8]
        do { json = try repository.backend.read(.snapshot, id.hex) } catch BackendError.notFound {
            throw SystemError(errno: ENOENT, operation: "open", path: repository.layout.snapshotPath(id))
        }
        let s = repository.config.isEncrypted ? try repository.loadSnapshot(id) : try Snapshot.decode(json, name: repository.layout.snapshotPath(id))
        // Said here rather than by the destination after every blob has travelled.
        guard json.count <= Frame.maxSnapshotLength else {
            throw SyncError.snapshotRejected(id, reason: "it is \(json.count) bytes, above the \(Frame.maxSnapshotLength)-byte limit a destination accepts")
        }
        let all = try blobs(of: s)
        let candidates = all.filter { !remoteKnown.contains($0) }
        var start = 0
        // Indices in a `blobs` frame are u16: a batch must fit.
        assert(Frame.maxBatch <= Int(UInt16.max))
        while start < candidates.count {
            let batch = Array(candidates[start..<min(candidates.count, start + Frame.maxBatch)])
            start += batch.count
            try connection.send(.have(batch.map(\.w0)))
            let reply = try connection.expect("the reply to have")
            guard case .missing(let n, let bits) = reply, Int(n) == batch.count else {
                throw ProtocolError.unexpected(reply.kind, expecting: "missing for \(batch.count) ids")
            }
            var wanted: [(Int, BlobID, BlobLocation)] = []
            for (i, b) in batch.enumerated() where bits[i >> 3] & (1 << UInt8(i & 7)) != 0 {
                guard let l = repository.index.lookup(b) else { throw BlobError.notInIndex(b) }
                wanted.append((i, b, l))
            }
            try sendBlobs(wanted)
        }
        try connection.send(.flush)
        let flushed = try connection.expect("the reply to flush")
        guard case .flushed = flushed else { throw ProtocolError.unexpected(flushed.kind, expecting: "flushed") }
        try connection.send(.snapshot(json))
        let ok = try connection.expect("the reply to snapshot")
        guard case .snapshotOK(let rid) = ok, rid == id else { throw ProtocolError.unexpected(ok.kind, expecting: "snapshotOK \(id.short)") }
        for b in all { remoteKnown.insert(b) }
        stats.snapshots += 1
        progress?.addFile()
        updateWire()
    }

    /// Sends the blobs the destination said it lacks (index in the `have`, id,
    /// location), as stored, several to a frame (up to ~1 MiB, ~8 bytes of
    /// header each in `blobs`, ~72 in `sealedBlobs`).
    func sendBlobs(_ list: [(Int, BlobID, BlobLocation)]) throws {
        var wanted = list
        // Read in pack order so each pack is read front to back.
        wanted.sort { ($0.2.packIndex, $0.2.offset) < ($1.2.packIndex, $1.2.offset) }
        var pending: [SyncBlob] = []
        var pendingSealed: [SealedSyncBlob] = []
        var pendingBytes = 0
        func sendPending() throws {
            if !pending.isEmpty { try connection.send(.blobs(pending)) }
            if !pendingSealed.isEmpty { try connection.send(.sealedBlobs(pendingSealed)) }
            pending.removeAll(keepingCapacity: true)
            pendingSealed.removeAll(keepingCapacity: true)
            pendingBytes = 0
        }
        let sealed = repository.config.isEncrypted
        // Encrypted: the destination says which bases it stores whole (it checks each sealed delta's base so).
        let wholeThere = sealed && remoteTakesDeltas ? try basesStoredWhole(wanted) : []
        for (i, b, l) in wanted {
            // A buffer of its own: the frame being filled keeps the bytes.
            var stored: [UInt8] = []
            try repository.readStored(b, location: l, into: &stored)
            var compression = l.compression
            // (A sealed delta keeps its base id in clear in front, as a plain one.)
            if compression == .delta, !remoteTakesDeltas
                || !(sealed ? wholeThere : remoteKnown).contains(stored.withUnsafeBytes { BlobDecoder.deltaBase(stored: $0) ?? .zero }) {
                // The destination may lack the base (or take no deltas): send the blob whole.
                (compression, stored) = sealed ? try expandSealed(b, location: l, stored: stored) : try expand(b, location: l, stored: stored)
            } else if sealed {
                try authenticate(b, location: l, stored: stored)
            }
            // A frame stays under Frame.maxLength: a large blob travels alone.
            if pendingBytes + stored.count > 1 << 20 { try sendPending() }
            if sealed {
                let hash = stored.withUnsafeBytes { SHA256Hasher.hash($0) }
                pendingSealed.append(SealedSyncBlob(index: UInt16(i), type: l.type, compression: compression, rawLength: l.rawLength,
                                                    id: b, storedHash: hash, stored: stored))
            } else {
                pending.append(SyncBlob(index: UInt16(i), type: l.type, compression: compression, rawLength: l.rawLength, stored: stored))
            }
            pendingBytes += stored.count
            if pendingBytes >= 1 << 20 { try sendPending() }
            stats.blobsSent += 1
            stats.payloadBytes += UInt64(stored.count)
            progress?.addBytes(stored.count)
        }
        try sendPending()
    }

    /// A delta blob's bytes recompressed whole (zlib at the repository's level, or raw).
    func expand(_ id: BlobID, location l: BlobLocation, stored: [UInt8]) throws -> (BlobCompression, [UInt8]) {
        var plain: [UInt8] = []
        try stored.withUnsafeBytes {
            try repository.decodeVerified(stored: $0, id: id, compression: l.compression, rawLength: Int(l.rawLength),
                                          inflater: inflater, into: &plain)
        }
        var out: [UInt8] = []
        let c = plain.withUnsafeBytes { deflater.compress($0, into: &out) }
        return c == .none ? (.none, plain) : (c, out)
    }

    public func placeMarker() throws {
        try connection.send(.placeMarker)
        let r = try connection.expect("the reply to placeMarker")
        guard case .markerOK = r else { throw ProtocolError.unexpected(r.kind, expecting: "markerOK") }
    }

    public func bye() throws {
        try connection.send(.bye)
        try connection.flush()
        updateWire()
    }

    func updateWire() {
        stats.wireBytesSent = connection.bytesSent
        stats.wireBytesReceived = connection.bytesReceived
        stats.seconds = Sys.monotonicSeconds() - started
    }

    /// Syncs snapshots (default: all the destination lacks), oldest first.
    public func syncAll(only: [SnapshotID]? = nil, marker: Bool = false) throws -> SyncStats {
        let remote = try remoteSnapshots()
        let local = try repository.openAllSnapshots()
        for (id, s) in local where remote.contains(id) {
            // The newest snapshot the destination has of each plan/host seeds what it holds.
            if local.last(where: { remote.contains($0.id) && $0.snapshot.plan == s.plan && $0.snapshot.host == s.host })?.id == id {
                try assumeRemoteHas(s)
            }
        }
        let wanted = local.filter { !remote.contains($0.id) && (only == nil || only!.contains($0.id)) }
        let bytesTotal = wanted.reduce(UInt64(0)) { $0 + $1.snapshot.summary.addedBytes }
        progress?.setTotals(files: wanted.count, bytes: bytesTotal)
        progress?.startReporting()
        defer { progress?.stop() }
        for (id, _) in wanted { try send(id) }
        if marker { try placeMarker() }
        try bye()
        return stats
    }
}
