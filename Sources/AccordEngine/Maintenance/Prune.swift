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

    public func run() throws -> PruneReport {
        var report = PruneReport()
        let layout = repository.layout
        // Every index entry, per pack (the master index keeps one copy of each blob).
        var packEntries: [PackID: [PackEntry]] = [:]
        let oldIndexFiles = try repository.listIndexFiles()
        for id in oldIndexFiles {
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
            if let entries = try? PackReader.readHeader(path: layout.packPath(id)) { packEntries[id] = entries }
        }
        // Reads (manifests, a repacked delta's base) go to packs present on disk, adopted ones included.
        for (pack, entries) in packEntries { repository.index.add(pack: pack, entries: entries) }
        repository.index.seal()
        // Mark.
        var used = Set<BlobID>()
        var unreadable: [(SnapshotID, Error)] = []
        let snapshots = try repository.snapshots(onError: { id, e in unreadable.append((id, e)) })
        if let (id, e) = unreadable.first {
            // Its blobs would look unused: refuse rather than delete live data.
            throw RepositoryError.snapshotCorrupt(layout.snapshotPath(id), reason: "\(e); prune refuses to run while a snapshot is unreadable (forget it by id, or restore the file)")
        }
        for (sid, s) in snapshots {
            for m in s.manifestIDs { used.insert(m) }
            var reader = repository.manifestReader(s, id: sid)
            do {
                while let e = try reader.next() { for b in e.referencedBlobs { used.insert(b) } }
            } catch {
                throw RepositoryError.manifestCorrupt(sid, reason: "\(error); prune refuses to run on a damaged repository")
            }
        }
        // Which copy of each used blob we keep: one stored whole if there is
        // one (it may be a delta's base), else the first. A kept delta needs
        // its base: mark it and choose again until nothing new is needed.
        let order = packEntries.keys.sorted()
        var chosen: [BlobID: (pack: PackID, offset: UInt32, delta: Bool)] = [:]
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
            let bases = try deltaBases(of: chosen, packEntries, cache: &basesRead)
            let fresh = bases.filter { !used.contains($0) }
            if fresh.isEmpty { break }
            used.formUnion(fresh)
        }
        report.blobsUsed = used.count
        // Sweep: per pack the live entries (the chosen copies) and the live share.
        var plan: [(pack: PackID, live: [PackEntry], size: UInt64, liveBytes: UInt64)] = []
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
            let fileSize = (try? Sys.lstat(layout.packPath(pack)).size) ?? size
            report.bytesBefore += fileSize
            plan.append((pack, live, fileSize, liveBytes))
        }
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
        var newPacks: [IndexFile.Pack] = []
        if !toRepack.isEmpty {
            var writer: PackWriter? = nil
            let inflater = Inflater()
            var plain: [UInt8] = []
            for (pack, live) in toRepack {
                let bytes = try AtomicFile.read(layout.packPath(pack))
                for e in live {
                    let end = Int(e.offset) + Int(e.storedLength)
                    guard end <= bytes.count else { throw RepositoryError.packUnreadable(pack, reason: "blob \(e.id.short) runs past the end") }
                    try bytes.withUnsafeBytes { buf in
                        let stored = UnsafeRawBufferPointer(rebasing: buf[Int(e.offset)..<end])
                        try BlobDecoder.decode(stored: stored, id: e.id, compression: e.compression, rawLength: Int(e.rawLength),
                                               inflater: inflater, into: &plain, base: repository.readBase)
                        if writer == nil { writer = try PackWriter(layout: layout) }
                        try writer!.add(id: e.id, type: e.type, compression: e.compression, rawLength: Int(e.rawLength), stored: stored)
                    }
                    if writer!.size >= repository.config.packSize {
                        let id = try writer!.finish()
                        newPacks.append(.init(id: id, blobs: writer!.entries))
                        report.bytesAfter += UInt64(writer!.size)
                        writer = nil
                    }
                }
            }
            if let w = writer, !w.isEmpty {
                let id = try w.finish()
                newPacks.append(.init(id: id, blobs: w.entries))
                report.bytesAfter += UInt64(w.size)
            }
            report.packsWritten = newPacks.count
        }
        // (2) The new index, covering every kept and new pack.
        let newIndex = try repository.writeIndex(IndexFile(packs: keepPacks + newPacks))
        // (3) Old index files.
        for id in oldIndexFiles where id != newIndex { try Sys.unlink(layout.indexPath(id)) }
        try Sys.fsyncDirectory(layout.indexDirectory)
        // (4) Dead packs, and leftovers of interrupted writes.
        for p in toDelete where !newPacks.contains(where: { $0.id == p }) { try? Sys.unlink(layout.packPath(p)) }
        // Temp files of interrupted writes; recent ones may belong to a lock being taken right now.
        let cutoff = Sys.now().sec - 3600
        for name in (try? Sys.listDirectory(layout.tmpDirectory)) ?? [] {
            let p = layout.tmpDirectory + "/" + name
            if let st = try? Sys.lstat(p), st.mtimeSec < cutoff { try? Sys.unlink(p) }
        }
        return report
    }

    /// The bases the chosen delta copies name (their first 32 stored bytes).
    func deltaBases(of chosen: [BlobID: (pack: PackID, offset: UInt32, delta: Bool)], _ packEntries: [PackID: [PackEntry]],
                    cache: inout [BlobID: BlobID]) throws -> Set<BlobID> {
        var byPack: [PackID: [(BlobID, UInt32)]] = [:]
        var bases = Set<BlobID>()
        for (id, c) in chosen where c.delta {
            if let b = cache[id] { bases.insert(b) } else { byPack[c.pack, default: []].append((id, c.offset)) }
        }
        for (pack, blobs) in byPack {
            let path = repository.layout.packPath(pack)
            let fd = try Sys.open(path, Sys.O_RDONLY)
            defer { Sys.close(fd) }
            for (id, offset) in blobs.sorted(by: { $0.1 < $1.1 }) {
                guard let b = try PackReader.readDeltaBase(fd: fd, offset: offset, path: path) else {
                    throw RepositoryError.packUnreadable(pack, reason: "delta blob \(id.short) runs past the end; prune refuses to run: see `accord check`")
                }
                cache[id] = b
                bases.insert(b)
            }
        }
        return bases
    }
}

/// Rebuilds the index from the pack headers (after a lost or corrupt index).
public enum RepairIndex {
    public static func run(_ repository: Repository, log: (String) -> Void) throws -> (packs: Int, blobs: Int, unreadable: [PackID]) {
        var packs: [IndexFile.Pack] = []
        var bad: [PackID] = []
        for id in try repository.listPacks().sorted() {
            do { packs.append(.init(id: id, blobs: try PackReader.readHeader(path: repository.layout.packPath(id)))) } catch {
                log("pack \(id) is unreadable (\(error)); its blobs are lost")
                bad.append(id)
            }
        }
        // A delta whose base is stored whole nowhere cannot be read: index it and a backup
        // would reuse it. Left out (its pack stays), so the next backup stores that chunk again.
        let whole = Set(packs.flatMap { $0.blobs.filter { $0.compression != .delta }.map(\.id) })
        for i in packs.indices where packs[i].blobs.contains(where: { $0.compression == .delta }) {
            let path = repository.layout.packPath(packs[i].id)
            let fd = try Sys.open(path, Sys.O_RDONLY)
            defer { Sys.close(fd) }
            packs[i].blobs = try packs[i].blobs.filter { e in
                guard e.compression == .delta else { return true }
                let base = try PackReader.readDeltaBase(fd: fd, offset: e.offset, path: path)
                if let base, whole.contains(base) { return true }
                log("blob \(e.id) in pack \(packs[i].id) is a delta on " + (base.map { "blob \($0), which no pack holds whole" } ?? "a base cut off by the pack's end")
                    + ": left out of the index")
                return false
            }
        }
        let old = try repository.listIndexFiles()
        let newID = try repository.writeIndex(IndexFile(packs: packs))
        for id in old where id != newID { try Sys.unlink(repository.layout.indexPath(id)) }
        try Sys.fsyncDirectory(repository.layout.indexDirectory)
        return (packs.count, packs.reduce(0) { $0 + $1.blobs.count }, bad)
    }
}
