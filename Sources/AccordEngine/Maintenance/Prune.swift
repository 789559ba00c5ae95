import Foundation
import AccordCore
import AccordRuntime

public struct PruneOptions {
    /// Repack a pack when more than this share of its bytes is unused.
    public var maxUnusedPercent: Double = 10
    public var dryRun = false
    public var log: (String) -> Void = { _ in }
    public init() {}
}

public struct PruneReport {
    public var packsTotal = 0
    public var packsDeleted = 0
    public var packsRepacked = 0
    public var packsWritten = 0
    public var blobsUsed = 0
    public var bytesBefore: UInt64 = 0
    public var bytesAfter: UInt64 = 0
    public var bytesFreed: UInt64 { bytesBefore > bytesAfter ? bytesBefore - bytesAfter : 0 }
}

/// Reclaims space: marks every blob reachable from a snapshot, deletes packs
/// with no live blob, repacks packs whose unused share is over the
/// threshold, writes the new index before deleting anything the old index
/// points to. Must run under an exclusive lock.
///
/// Crash safety, step by step: (1) new packs are written and fsynced — a
/// crash leaves unindexed packs, adopted later; (2) one new index file is
/// written — a crash leaves duplicate index entries, harmless; (3) old index
/// files are deleted — the new one covers every live blob; (4) dead packs are
/// deleted — a crash leaves unindexed packs `check` reports as harmless.
public final class Prune {
    let repository: Repository
    let options: PruneOptions

    public init(repository: Repository, options: PruneOptions) {
        self.repository = repository
        self.options = options
    }

    /// A blob copy prune keeps: where it is, and whether it is stored as a delta.
    typealias Choice = (pack: PackID, offset: UInt32, delta: Bool)
    /// Per pack: its live entries (the chosen copies), its size and their share.
    typealias PackPlan = (pack: PackID, live: [PackEntry], size: UInt64, liveBytes: UInt64)

    public func run() throws -> PruneReport {
        var report = PruneReport()
        let oldIndexFiles = try repository.listIndexFiles()
        let packEntries = try entriesByPack(oldIndexFiles)
        var used = try markUsed()
        // Which copy of each used blob we keep: one stored whole if there is
        // one (it may be a delta's base), else the first. A kept delta needs
        // its base: mark it and choose again until nothing new is needed.
        let order = packEntries.keys.sorted()
        var chosen: [BlobID: Choice] = [:]
        var basesRead: [BlobID: BlobID] = [:]   // chosen delta copy → its base, read once (the choice is the same every round)
        while true {
            chosen.removeAll(keepingCapacity: true)
            for pack in order {
                var seenInPack = Set<BlobID>()
                for e in packEntries[pack]! where used.contains(e.id) && seenInPack.insert(e.id).inserted {
                    let delta = e.compression == .delta
                    if let c = chosen[e.id], !(c.delta && !delta) { continue }
                    chosen[e.id] = (pack, e.offset, delta)
                }
            }
            let bases = try deltaBases(of: chosen, cache: &basesRead)
            let fresh = bases.filter { !used.contains($0) }
            if fresh.isEmpty { break }
            used.formUnion(fresh)
        }
        report.blobsUsed = used.count
        let plan = sweep(order, packEntries, chosen, &report)
        report.packsTotal = plan.count
        let missing = used.filter { chosen[$0] == nil }
        if !missing.isEmpty {
            throw RepositoryError.manifestCorrupt(nil, reason: "\(missing.count) blob(s) that snapshots use are missing from every pack (e.g. \(missing.first!)); prune refuses to run: see `accord check`")
        }
        var keepPacks: [IndexFile.Pack] = []
        var toDelete: [PackID] = []
        var toRepack: [(PackID, [PackEntry])] = []
        for p in plan {
            if p.live.isEmpty { toDelete.append(p.pack); continue }
            let unused = p.size > 0 ? Double(p.size - min(p.size, p.liveBytes)) * 100 / Double(p.size) : 0
            if unused > options.maxUnusedPercent && p.live.count < packEntries[p.pack]!.count {
                toRepack.append((p.pack, p.live))
                toDelete.append(p.pack)
            } else {
                // Indexed: the chosen copies, other whole copies of used blobs, and unused blobs
                // stored whole (reusable); never a delta whose base may not be kept.
                keepPacks.append(.init(id: p.pack, blobs: packEntries[p.pack]!.filter { e in
                    if let c = chosen[e.id], c.pack == p.pack, c.offset == e.offset { return true }
                    return e.compression != .delta
                }))
                report.bytesAfter += p.size
            }
        }
        report.packsDeleted = toDelete.count - toRepack.count
        report.packsRepacked = toRepack.count
        options.log("\(plan.count) packs: \(report.packsDeleted) unused, \(toRepack.count) to repack, \(keepPacks.count) kept; \(used.count) live blobs")
        if options.dryRun {
            for (_, live) in toRepack { report.bytesAfter += live.reduce(0) { $0 + UInt64($1.storedLength) } }
            return report
        }
        // (1) Repack live blobs as stored (no recompression), verifying each.
        let newPacks = try repack(toRepack, &report)
        // (2) The new index, covering every kept and new pack; (3) old index files.
        try repository.replaceIndex(oldIndexFiles, with: IndexFile(packs: keepPacks + newPacks))
        // (4) Dead packs, and leftovers of interrupted writes.
        for p in toDelete where !newPacks.contains(where: { $0.id == p }) { try? repository.deletePack(p) }
        // Temp files of interrupted writes; recent ones may belong to a lock being taken right now.
        repository.backend.removeTemporaryFiles(olderThan: 3600)
        return report
    }

    /// Every index entry, per pack (the master index keeps one copy of each
    /// blob), of packs present on disk, unindexed ones adopted; they also go
    /// into the repository's index, for the reads that follow.
    func entriesByPack(_ indexFiles: [IndexID]) throws -> [PackID: [PackEntry]] {
        var packEntries: [PackID: [PackEntry]] = [:]
        for id in indexFiles {
            let f = try repository.readIndexFile(id)
            for p in f.packs { packEntries[p.id, default: []].append(contentsOf: p.blobs) }
        }
        // Packs the index names but the disk lacks hold nothing to keep: leave them out,
        // so a surviving duplicate elsewhere is the copy kept.
        let present = Set(try repository.listPacks())
        for id in Array(packEntries.keys) where !present.contains(id) {
            options.log("pack \(id) is in the index but missing on disk; its blobs count as lost")
            packEntries[id] = nil
        }
        // Adopt packs nobody indexed (interrupted backups): they may hold live blobs.
        for id in present where packEntries[id] == nil {
            if let entries = try? repository.readPackHeader(id) { packEntries[id] = entries }
        }
        // Reads (manifests, a repacked delta's base) go to packs present on disk, adopted ones included.
        for (pack, entries) in packEntries { repository.index.add(pack: pack, entries: entries) }
        repository.index.seal()
        return packEntries
    }

    /// Every blob a snapshot references. An unreadable snapshot or manifest
    /// stops prune: its blobs would look unused.
    func markUsed() throws -> Set<BlobID> {
        var used = Set<BlobID>()
        var unreadable: [(SnapshotID, Error)] = []
        let snapshots = try repository.snapshots(onError: { id, e in unreadable.append((id, e)) })
        if let (id, e) = unreadable.first {
            throw RepositoryError.snapshotCorrupt(repository.layout.snapshotPath(id), reason: "\(e); prune refuses to run while a snapshot is unreadable (forget it by id, or restore the file)")
        }
        for (sid, s) in snapshots {
            do { used.formUnion(try repository.referencedBlobs(snapshot: s, id: sid)) } catch {
                throw RepositoryError.manifestCorrupt(sid, reason: "\(error); prune refuses to run on a damaged repository")
            }
        }
        return used
    }

    /// Per pack the live entries (the chosen copies) and the live share; counts `bytesBefore`.
    func sweep(_ order: [PackID], _ packEntries: [PackID: [PackEntry]], _ chosen: [BlobID: Choice], _ report: inout PruneReport) -> [PackPlan] {
        var plan: [PackPlan] = []
        for pack in order {
            var live: [PackEntry] = []
            var size: UInt64 = 0, liveBytes: UInt64 = 0
            var seenInPack = Set<BlobID>()
            for e in packEntries[pack]! where seenInPack.insert(e.id).inserted {
                size += UInt64(e.storedLength)
                if let c = chosen[e.id], c.pack == pack, c.offset == e.offset {
                    live.append(e)
                    liveBytes += UInt64(e.storedLength)
                }
            }
            let fileSize = (try? repository.packSize(pack)).map(UInt64.init) ?? size
            report.bytesBefore += fileSize
            plan.append((pack, live, fileSize, liveBytes))
        }
        return plan
    }

    /// Copies live blobs as stored (no recompression) into new packs,
    /// verifying each; counts the new packs' bytes. Durable on return.
    func repack(_ toRepack: [(PackID, [PackEntry])], _ report: inout PruneReport) throws -> [IndexFile.Pack] {
        var newPacks: [IndexFile.Pack] = []
        if toRepack.isEmpty { return newPacks }
        let assembler = repository.makePackAssembler()
        defer { assembler.abandon() }
        func keep(_ sealed: PackAssembler.Sealed?) {
            guard let sealed else { return }
            newPacks.append(sealed.pack)
            report.bytesAfter += UInt64(sealed.size)
        }
        let inflater = Inflater()
        var plain: [UInt8] = []
        for (pack, live) in toRepack {
            let bytes = try repository.readPack(pack)
            for e in live {
                let end = Int(e.offset) + Int(e.storedLength)
                guard end <= bytes.count else { throw RepositoryError.packUnreadable(pack, reason: "blob \(e.id.short) runs past the end") }
                let full = try bytes.withUnsafeBytes { buf -> PackWriter? in
                    let stored = UnsafeRawBufferPointer(rebasing: buf[Int(e.offset)..<end])
                    try repository.decodeVerified(stored: stored, id: e.id, compression: e.compression, rawLength: Int(e.rawLength),
                                                  inflater: inflater, into: &plain)
                    return try assembler.add(id: e.id, type: e.type, compression: e.compression, rawLength: Int(e.rawLength), stored: stored)
                }
                if let w = full { keep(try PackAssembler.seal(w)) }
            }
        }
        keep(try assembler.finish())
        report.packsWritten = newPacks.count
        return newPacks
    }

    /// The bases the chosen delta copies name (their first 32 stored bytes).
    func deltaBases(of chosen: [BlobID: Choice], cache: inout [BlobID: BlobID]) throws -> Set<BlobID> {
        var byPack: [PackID: [(BlobID, UInt32)]] = [:]
        var bases = Set<BlobID>()
        for (id, c) in chosen where c.delta {
            if let b = cache[id] { bases.insert(b) } else { byPack[c.pack, default: []].append((id, c.offset)) }
        }
        for (pack, blobs) in byPack {
            for (id, offset) in blobs.sorted(by: { $0.1 < $1.1 }) {
                guard let b = try repository.deltaBase(inPack: pack, offset: offset) else {
                    throw RepositoryError.packUnreadable(pack, reason: "delta blob \(id.short) runs past the end; prune refuses to run: see `accord check`")
                }
                cache[id] = b
                bases.insert(b)
            }
        }
        return bases
    }
}
