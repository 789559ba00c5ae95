import Foundation
import AccordCore
import AccordRuntime

/// `accord serve`: the destination side of a sync, on stdin/stdout.
///
/// Every blob is verified before it is accepted: in a plain repository it is
/// inflated and its SHA-256 compared to its id; an encrypted one (format
/// version 3) is served without its key (serve never needs or asks for a
/// passphrase), so there the SHA-256 of the sealed bytes is compared to the
/// one sent with them and the lengths are checked (SyncServerSealed.swift).
/// Accepted blobs go to packs; `flush` makes them durable (packs fsynced and
/// renamed, then an index file). A plain repository's snapshot is written only
/// when every blob it names is indexed (an encrypted one's names cannot be read
/// here: the client sends it after `flushed`), so an interrupted sync never leaves a
/// snapshot that cannot be restored; packs finished before the interruption
/// are adopted on the next connection and not sent again.
///
/// serve is the door into the DR node and trusts nothing it is sent: every
/// frame is bounded before it is buffered (FORMAT.md, "Sync protocol"),
/// reserved hello flags are refused, a snapshot is stored only if its manifest
/// reads back valid and its time is not far ahead of this node's clock, and a
/// session is closed, releasing its lock, when the client sends nothing for
/// `idleTimeout` seconds, takes longer than that to send one frame once its
/// first byte arrived, or reads none of serve's answers for that long. No
/// request deletes anything: serve only adds files.
public final class SyncServer {
    /// What the node's administrator sets (settings file, `--idle-timeout`).
    public struct Options {
        /// Seconds without a byte from the client (or for one frame to arrive
        /// whole, or for the client to take a byte of an answer) before the session is closed.
        public var idleTimeout: Double = 600
        /// How far (seconds) a snapshot's time may lie ahead of this node's clock.
        public var maxClockSkew: Int64 = 86_400
        public init() {}
    }

    let path: String
    let options: Options
    /// Blobs accepted before an index file is written even without `flush` (~100 bytes of memory each).
    static let maxPendingBlobs = 1 << 20
    let connection: FrameConnection
    var repository: Repository?
    var lock: RepositoryLock?
    /// The pack blobs are accepted into (made once the repository is open).
    var assembler: PackAssembler?
    var pendingPacks: [IndexFile.Pack] = []
    var pending = Set<BlobID>()
    var pendingPrefixes = Set<UInt64>()
    /// Prefixes of the last `have`, which `blob` frames index into.
    var lastBatch: [UInt64] = []
    var accepted = 0
    /// Key files received this session (bounded by `Frame.maxKeyFilesPerSession`).
    var keyFilesReceived = 0
    let inflater = Inflater()
    lazy var deflater = Deflater(level: CompressionLevel(Int32(repository?.config.compression.level ?? 1)))
    var plain: [UInt8] = []
    let log: (String) -> Void

    public init(path: String, options: Options = Options(), input: Int32 = 0, output: Int32 = 1, log: @escaping (String) -> Void = { _ in }) {
        self.path = path
        self.options = options
        connection = FrameConnection(input: input, output: output, peer: "client")
        self.log = log
        // A client that floods requests and reads no answer would otherwise hold
        // serve in write(), and its lock, forever.
        let idle = options.idleTimeout
        connection.writeTimeout = idle
        connection.onWriteTimeout = { SyncError.notReading(seconds: idle, repository: path) }
    }

    /// Serves one session. Errors are sent to the client as `error` frames and rethrown.
    public func run() throws {
        defer { assembler?.abandon(); lock?.release() }
        do {
            let idle = options.idleTimeout
            while let frame = try connection.receive(timeout: idle, onTimeout: { SyncError.idle(seconds: idle, repository: self.path) },
                                                     onSlowFrame: { SyncError.slowFrame(seconds: idle, received: $0, repository: self.path) }) {
                if try !handle(frame) { break }
            }
            try connection.flush()
        } catch {
            // (A client that reads nothing gets no error frame: the connection fails it at once.)
            try? connection.send(.error(for: error))
            try? connection.flush()
            throw error
        }
    }

    /// Answers a client this node will not serve (unusable settings, a repository
    /// other than the pinned one): reads its hello (waiting at most `wait`
    /// seconds for it, and for room to write), answers `error` with the reason, and returns.
    public static func refuse(_ error: Error, input: Int32 = 0, output: Int32 = 1, wait: Double = 10) {
        let c = FrameConnection(input: input, output: output, peer: "client")
        // Bounded as a session is: a hello trickled in, or a client that reads nothing, ends the wait.
        c.writeTimeout = wait
        _ = try? c.receive(timeout: wait, onSlowFrame: { _ in ProtocolError.connectionClosed("by the server: the hello took more than \(Int(wait)) s") })
        try? c.send(.error(for: error))
        try? c.flush()
    }

    func repo() throws -> Repository {
        guard let r = repository else { throw ProtocolError.connectionClosed("by the server: a request came before hello") }
        return r
    }

    func handle(_ frame: Frame) throws -> Bool {
        switch frame {
        case .hello(let version, let flags, let configBytes):
            guard version == Frame.protocolVersion else { throw ProtocolError.versionMismatch(version) }
            guard flags & ~Frame.knownFlags == 0 else { throw ProtocolError.reservedFlags(flags & ~Frame.knownFlags) }
            // A second hello would open the repository again and leave the first lock behind.
            guard repository == nil else { throw ProtocolError.connectionClosed("by the server: hello was sent twice") }
            try open(clientConfig: configBytes, allowOther: flags & Frame.flagAllowOtherRepository != 0)
            let r = try repo()
            try connection.send(.helloOK(version: Frame.protocolVersion, config: try r.backend.read(.config, "config")))
        case .have(let prefixes):
            let r = try repo()
            var bits = [UInt8](repeating: 0, count: (prefixes.count + 7) / 8)
            for (i, p) in prefixes.enumerated() where !r.index.containsPrefix(p) && !pendingPrefixes.contains(p) { bits[i >> 3] |= 1 << UInt8(i & 7) }
            lastBatch = prefixes
            try connection.send(.missing(count: UInt32(prefixes.count), bitmap: bits))
        case .blobs(let list):
            if try repo().config.isEncrypted { throw SyncError.wrongBlobFrame(encrypted: true) }
            for b in list {
                guard Int(b.index) < lastBatch.count else { throw ProtocolError.malformed(.blob, "index \(b.index) is outside the last have (\(lastBatch.count) ids)") }
                try accept(prefix: lastBatch[Int(b.index)], type: b.type, compression: b.compression, rawLength: b.rawLength, stored: b.stored)
            }
        case .sealedBlobs(let list):
            guard try repo().config.isEncrypted else { throw SyncError.wrongBlobFrame(encrypted: false) }
            for b in list {
                guard Int(b.index) < lastBatch.count else { throw ProtocolError.malformed(.sealedBlob, "index \(b.index) is outside the last have (\(lastBatch.count) ids)") }
                try acceptSealed(prefix: lastBatch[Int(b.index)], b)
            }
        case .haveBases(let ids):
            let r = try repo()
            var bits = [UInt8](repeating: 0, count: (ids.count + 7) / 8)
            for (i, id) in ids.enumerated() where r.index.lookup(id).map({ $0.compression == .delta }) ?? true { bits[i >> 3] |= 1 << UInt8(i & 7) }
            try connection.send(.missing(count: UInt32(ids.count), bitmap: bits))
        case .keyFile(let bytes):
            try connection.send(.keyOK(try storeKey(bytes)))
        case .flush:
            let packs = try flushPacks()
            try connection.send(.flushed(packs: UInt32(packs), blobs: UInt32(accepted)))
        case .snapshot(let json):
            let id = try storeSnapshot(json)
            try connection.send(.snapshotOK(id))
        case .listSnapshots:
            try connection.send(.snapshotList(try repo().listSnapshotIDs().sorted()))
        case .placeMarker:
            try repo().placeRestoreMarker()
            try connection.send(.markerOK)
        case .bye:
            _ = try flushPacks()
            return false
        default:
            throw ProtocolError.unexpected(frame.kind, expecting: "a request")
        }
        return true
    }

    func open(clientConfig: [UInt8], allowOther: Bool) throws {
        Sys.umask(0o077)
        let client: RepositoryConfig
        do {
            client = try JSONDecoder().decode(RepositoryConfig.self, from: Data(clientConfig))
            try client.validate(repository: path, configPath: "the client's config")
        } catch {
            throw ProtocolError.malformed(.hello, "bad repository config (\(error))")
        }
        // A copy is created from a config that names its key (its MAC), never from one
        // that would need a passphrase to create a first key file.
        if client.isEncrypted && client.mac == nil { throw ProtocolError.malformed(.hello, "the config of an encrypted repository has no `mac`") }
        let layout = RepositoryLayout(root: path)
        if (try? Sys.lstat(layout.configPath)) == nil {
            try checkNewRepositoryPlace()
            do { try Sys.mkdirs(Array(path.utf8), mode: 0o700) } catch {
                throw SyncError.destinationNotWritable(path, reason: "\(error)")
            }
            if let st = try? Sys.stat(Array(path.utf8)), !st.isDirectory { throw RepositoryError.notADirectory(path) }
            // The same creation as `accord init` (checked config, written only if
            // no config appeared meanwhile), with the client's config.
            do {
                _ = try Repository.initialize(at: path, config: client)
                log("created repository \(client.id.prefix(8)) at \(path)")
            } catch RepositoryError.alreadyInitialized {
                // Created by a concurrent session: opened below.
            } catch let e as SystemError {
                throw SyncError.destinationNotWritable(path, reason: "\(e)")
            }
        }
        // Without the key: an encrypted repository's stored bytes are moved and checked, never opened.
        let r = try Repository.open(at: path, withoutKey: true)
        if r.config.id != client.id && !allowOther {
            throw SyncError.differentRepository(path, theirs: String(r.config.id.prefix(8)), ours: String(client.id.prefix(8)))
        }
        try Self.checkSameEncryption(path, ours: r.config, client: client)
        lock = try RepositoryLock.acquire(r.layout, exclusive: false, command: "serve", warn: log)
        let adopted = try r.prepareForWriting()
        if adopted > 0 { log("indexed \(adopted) pack(s) left by an interrupted sync") }
        repository = r
    }

    /// A repository is created only in a new directory, or in an existing empty
    /// one that is already private (so `init`'s chmod 0700 changes nothing a user
    /// set) and owned by serve's own user (the owner of a directory could later
    /// swap the `snapshots/` or `data/` of root's repository in it for symlinks):
    /// serve never takes over, or tightens, a directory holding other data.
    func checkNewRepositoryPlace() throws {
        guard let st = try? Sys.stat(Array(path.utf8)) else { return }   // absent: created below
        guard st.isDirectory else { throw RepositoryError.notADirectory(path) }
        let me = geteuid()
        guard st.uid == me else { throw SyncError.directoryNotOwned(path, owner: st.uid, serve: me) }
        let names: [String]
        do { names = try Sys.listDirectory(path) } catch { throw SyncError.destinationNotWritable(path, reason: "\(error)") }
        // Created by a concurrent session meanwhile: opened below.
        if (try? Sys.lstat(RepositoryLayout(root: path).configPath)) != nil { return }
        // A fresh file system's mount point holds lost+found. A creation cut short (a
        // session killed before the config was written) leaves only the empty
        // subdirectories, and a temporary file in tmp/: taken up again.
        // Those subdirectories must be real directories (not symlinks) of serve's
        // own user, and tmp/ may hold only regular files named as Accord's
        // temporary files are (AtomicFile, PackWriter).
        let layout = RepositoryLayout(root: path)
        let skeleton = Set(layout.subdirectories.map { ($0 as NSString).lastPathComponent })
        var others: [String] = []
        for name in names where name != "lost+found" {
            let sub = path + "/" + name
            guard skeleton.contains(name), let sst = try? Sys.lstat(Array(sub.utf8)), sst.isDirectory else { others.append(name); continue }
            guard sst.uid == me else { throw SyncError.directoryNotOwned(sub, owner: sst.uid, serve: me) }
            guard let inside = try? Sys.listDirectory(sub) else { others.append(name); continue }
            if name != "tmp" {
                if !inside.isEmpty { others.append(name) }
                continue
            }
            for t in inside {
                let f = try? Sys.lstat(Array((sub + "/" + t).utf8))
                guard Self.isTemporaryFileName(t), f?.isRegular == true, f?.uid == me else { others.append("tmp/" + t); continue }
            }
        }
        guard others.isEmpty else { throw SyncError.notARepositoryDirectory(path, entries: others.count) }
        guard st.permissions & 0o077 == 0 else { throw SyncError.directoryNotPrivate(path, mode: st.permissions) }
    }

    /// `<16 hex>.tmp` (AtomicFile) or `pack-<16 hex>.tmp` (PackWriter).
    static func isTemporaryFileName(_ name: String) -> Bool {
        var n = Substring(name)
        guard n.hasSuffix(".tmp") else { return false }
        n = n.dropLast(4)
        if n.hasPrefix("pack-") { n = n.dropFirst(5) }
        return n.utf8.count == 16 && n.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// Verifies a blob (its content's SHA-256 must start with the prefix the
    /// client announced) and appends it to the current pack.
    func accept(prefix: UInt64, type: BlobType, compression: BlobCompression, rawLength: UInt32, stored: [UInt8]) throws {
        let r = try repo()
        guard Int(rawLength) <= Frame.maxBlobLength else {
            throw SyncError.corruptBlob(BlobID.zero, reason: "claims a raw length of \(rawLength) bytes")
        }
        if compression == .delta && !r.config.allowsDeltaBlobs {
            throw SyncError.corruptBlob(BlobID(w0: prefix, w1: 0, w2: 0, w3: 0), reason: "it is a delta blob, which this format version \(r.config.version) repository cannot hold")
        }
        // A delta's base must be stored here already (the client sends a delta only then).
        // If our only copy of it is itself a delta, the blob is verified through it and stored whole.
        var storeWhole = false
        do {
            try stored.withUnsafeBytes {
                try r.decodeVerified(stored: $0, id: nil, compression: compression, rawLength: Int(rawLength),
                                     inflater: inflater, into: &plain, base: { base in
                                         if let l = r.index.lookup(base), l.compression == .delta { storeWhole = true; return try r.readBlob(base) }
                                         return try r.readBase(base)
                                     })
            }
        } catch {
            throw SyncError.corruptBlob(BlobID(w0: prefix, w1: 0, w2: 0, w3: 0), reason: "\(error)")
        }
        let id = plain.withUnsafeBytes { BlobID(hashing: $0) }
        guard id.w0 == prefix else {
            throw SyncError.corruptBlob(BlobID(w0: prefix, w1: 0, w2: 0, w3: 0), reason: "its content hashes to \(id.short)…, not the announced id")
        }
        if r.index.contains(id) || pending.contains(id) { return }
        if assembler == nil { assembler = r.makePackAssembler() }
        let full: PackWriter?
        if storeWhole {
            var out: [UInt8] = []
            let c = plain.withUnsafeBytes { deflater.compress($0, into: &out) }
            full = try (c == .none ? plain : out).withUnsafeBytes { try assembler!.add(id: id, type: type, compression: c, rawLength: Int(rawLength), stored: $0) }
        } else {
            full = try stored.withUnsafeBytes { try assembler!.add(id: id, type: type, compression: compression, rawLength: Int(rawLength), stored: $0) }
        }
        pending.insert(id)
        pendingPrefixes.insert(prefix)
        accepted += 1
        if let w = full, let sealed = try PackAssembler.seal(w) { pendingPacks.append(sealed.pack) }
        // A client that never flushes must not grow these sets without bound: make them durable now.
        if pending.count >= Self.maxPendingBlobs { _ = try flushPacks() }
    }

    func closePack() throws {
        if let sealed = try assembler?.finish() { pendingPacks.append(sealed.pack) }
    }

    /// Makes every accepted blob durable: packs, then one index file.
    func flushPacks() throws -> Int {
        guard let r = repository else { return 0 }
        try closePack()
        let n = pendingPacks.count
        if n > 0 {
            let file = IndexFile(packs: pendingPacks)
            try r.writeIndex(file)
            r.index.add(file)
            r.index.seal()
            pendingPacks.removeAll()
            pending.removeAll()
            pendingPrefixes.removeAll()
        }
        return n
    }

    /// Writes a snapshot after checking it: at most `Frame.maxSnapshotLength`
    /// bytes, valid JSON, a time not more than `maxClockSkew` ahead of this
    /// node's clock, every record of its manifest valid (the manifest reader
    /// validates each), and every blob it needs indexed here.
    func storeSnapshot(_ json: [UInt8]) throws -> SnapshotID {
        let r = try repo()
        if r.config.isEncrypted { return try storeSealedSnapshot(json) }
        let id = SnapshotID(hashing: json)
        guard json.count <= Frame.maxSnapshotLength else { throw SyncError.snapshotRejected(id, reason: "it is \(json.count) bytes, above the \(Frame.maxSnapshotLength)-byte limit") }
        let s: Snapshot
        do { s = try Snapshot.decode(json, name: "snapshot \(id.short) from the client") } catch {
            throw SyncError.snapshotRejected(id, reason: "\(error)")
        }
        let now = Timestamp.now()
        if s.time.seconds > now.seconds + options.maxClockSkew {
            throw SyncError.snapshotInFuture(id, time: s.time.rfc3339, now: now.rfc3339, skew: options.maxClockSkew)
        }
        var record = 0
        var seen = Set<BlobID>()
        do {
            try r.walkReferencedBlobs(snapshot: s, id: id, seen: &seen, entry: { _ in record += 1 }) { b, _ in
                guard r.index.contains(b) else { throw SyncError.snapshotIncomplete(id, missing: b) }
            }
        } catch let e as SyncError {
            throw e
        } catch {
            throw SyncError.snapshotRejected(id, reason: "its manifest was refused after \(record) valid record(s): \(error)")
        }
        try json.withUnsafeBytes { try r.backend.write(.snapshot, id.hex, $0) }
        log("stored snapshot \(id.short)")
        return id
    }
}
