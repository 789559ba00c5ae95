import Foundation
import AccordCore

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
            repository.index.add(f)
        }
        repository.index.seal()
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
            var reader = repository.manifestReader(s)
            do {
                while let e = try reader.next() { for b in e.referencedBlobs { used.insert(b) } }
            } catch {
                throw RepositoryError.manifestCorrupt(sid, reason: "\(error); prune refuses to run on a damaged repository")
            }
        }
        // A blob stored as a delta needs its base: keep the base of every stored copy.
        try markDeltaBases(packEntries, used: &used)
        report.blobsUsed = used.count
        // Sweep: which copy of each used blob we keep, and per pack the live share.
        var kept = Set<BlobID>()
        var plan: [(pack: PackID, live: [PackEntry], size: UInt64, liveBytes: UInt64)] = []
        for (pack, entries) in packEntries.sorted(by: { $0.key < $1.key }) {
            var seenInPack = Set<BlobID>()
            var live: [PackEntry] = []
            var size: UInt64 = 0, liveBytes: UInt64 = 0
            for e in entries where seenInPack.insert(e.id).inserted {
                size += UInt64(e.storedLength)
                if used.contains(e.id) && kept.insert(e.id).inserted {
                    live.append(e)
                    liveBytes += UInt64(e.storedLength)
                }
            }
            let fileSize = (try? Sys.lstat(layout.packPath(pack)).size) ?? size
            report.bytesBefore += fileSize
            plan.append((pack, live, fileSize, liveBytes))
        }
        report.packsTotal = plan.count
        let missing = used.subtracting(kept)
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
                keepPacks.append(.init(id: p.pack, blobs: packEntries[p.pack]!.filter { kept.contains($0.id) || !used.contains($0.id) }))
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

    /// Adds to `used` the base of every stored copy of a used blob that is a
    /// delta. Bases are stored whole, so one pass is enough.
    func markDeltaBases(_ packEntries: [PackID: [PackEntry]], used: inout Set<BlobID>) throws {
        var bases: [BlobID] = []
        for (pack, entries) in packEntries {
            let deltas = entries.filter { $0.compression == .delta && used.contains($0.id) }
            if deltas.isEmpty { continue }
            let path = repository.layout.packPath(pack)
            let fd = try Sys.open(path, Sys.O_RDONLY)
            defer { Sys.close(fd) }
            var idBytes = [UInt8](repeating: 0, count: 32)
            for e in deltas {
                let n = try idBytes.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, 32, Int64(e.offset), path: path) }
                guard n == 32 else {
                    throw RepositoryError.packUnreadable(pack, reason: "delta blob \(e.id.short) runs past the end; prune refuses to run: see `accord check`")
                }
                bases.append(idBytes.withUnsafeBytes { ID(bytes: $0.baseAddress!) })
            }
        }
        for b in bases { used.insert(b) }
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
        let old = try repository.listIndexFiles()
        let newID = try repository.writeIndex(IndexFile(packs: packs))
        for id in old where id != newID { try Sys.unlink(repository.layout.indexPath(id)) }
        try Sys.fsyncDirectory(repository.layout.indexDirectory)
        return (packs.count, packs.reduce(0) { $0 + $1.blobs.count }, bad)
    }
}
