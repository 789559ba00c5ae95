import ArgumentParser
import Foundation
import AccordCore
import AccordRuntime

/// `accord stats [SNAP…]`: sizes from the manifests (what a restore writes)
/// and from the index (what the blobs take, raw and stored), per snapshot and
/// for the set. Two passes over the manifests: the first counts, for every
/// blob, how many of the chosen snapshots use it; the second adds up what only
/// one snapshot uses (what forgetting it alone and pruning would free).
struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Show sizes, deduplication and compression, per snapshot and for the repository.",
        discussion: """
        Logical size: the files and streams as a restore writes them. Raw and stored: the distinct \
        blobs a snapshot needs (content, chunk lists and manifest) before and after compression. \
        Deduplication ratio = logical / raw; compression ratio = raw / stored. Exclusive: the blobs \
        no other of the chosen snapshots needs (by default all snapshots: what forgetting that one \
        snapshot and pruning would free). --json: one object (schema in README.md, "Looking inside").
        """)
    @OptionGroup var repo: RepositoryOptions
    @Flag(help: "Print one JSON object.")
    var json = false
    @Argument(help: "Snapshots (id, unique id prefix, or 'latest'); default: all.")
    var snapshots: [String] = []

    struct Sizes {
        var files = 0, directories = 0, symlinks = 0
        var logicalBytes: UInt64 = 0
        var references = 0
        var blobs = 0, rawBytes: UInt64 = 0, storedBytes: UInt64 = 0
        var exclusiveBlobs = 0, exclusiveStoredBytes: UInt64 = 0
        var missingBlobs = 0

        static func ratio(_ a: UInt64, _ b: UInt64) -> Double { b == 0 ? 0 : (Double(a) / Double(b) * 100).rounded() / 100 }
        var deduplication: Double { Self.ratio(logicalBytes, rawBytes) }
        var compression: Double { Self.ratio(rawBytes, storedBytes) }
    }

    func run() throws {
        let repository = try repo.open()
        let chosen = try open(repository)
        var uses: [BlobID: UInt32] = [:]
        var per: [Sizes] = []
        for (id, s) in chosen {
            var sizes = Sizes()
            let blobs = try distinctBlobs(repository, id, s, &sizes)
            for b in blobs {
                uses[b, default: 0] += 1
                add(b, repository, to: &sizes)
            }
            per.append(sizes)
        }
        var total = Sizes()
        for s in per { total.files += s.files; total.directories += s.directories; total.symlinks += s.symlinks; total.logicalBytes += s.logicalBytes; total.references += s.references }
        for b in uses.keys { add(b, repository, to: &total) }
        if chosen.count > 1 {
            for (i, (id, s)) in chosen.enumerated() {
                var ignored = Sizes()
                for b in try distinctBlobs(repository, id, s, &ignored) where uses[b] == 1 {
                    per[i].exclusiveBlobs += 1
                    per[i].exclusiveStoredBytes += UInt64(repository.index.lookup(b)?.storedLength ?? 0)
                }
            }
        } else if !per.isEmpty {
            (per[0].exclusiveBlobs, per[0].exclusiveStoredBytes) = (per[0].blobs, per[0].storedBytes)
        }
        if total.missingBlobs > 0 { warn("\(total.missingBlobs) blob(s) the snapshots name are not in the index: run `accord check`") }
        report(chosen, per, total, repository)
    }

    /// The chosen snapshots (`Repository.openSnapshots`).
    func open(_ repository: Repository) throws -> [(id: SnapshotID, snapshot: Snapshot)] {
        try repository.openSnapshots(snapshots, warn: warn)
    }

    /// Every blob the snapshot needs, once; counts its entries into `sizes`.
    func distinctBlobs(_ repository: Repository, _ id: SnapshotID, _ s: Snapshot, _ sizes: inout Sizes) throws -> Set<BlobID> {
        var blobs = Set(s.manifestIDs)
        var reader = repository.manifestReader(s, id: id)
        while let e = try reader.next() {
            switch e.kind {
            case .file, .stream: sizes.files += 1; sizes.logicalBytes += e.size
            case .hardlink: sizes.files += 1
            case .directory: sizes.directories += 1
            case .symlink: sizes.symlinks += 1
            }
            let refs = e.referencedBlobs
            sizes.references += refs.count
            for b in refs { blobs.insert(b) }
        }
        return blobs
    }

    func add(_ b: BlobID, _ repository: Repository, to sizes: inout Sizes) {
        sizes.blobs += 1
        guard let loc = repository.index.lookup(b) else { sizes.missingBlobs += 1; return }
        sizes.rawBytes += UInt64(loc.rawLength)
        sizes.storedBytes += UInt64(loc.storedLength)
    }

    func report(_ chosen: [(id: SnapshotID, snapshot: Snapshot)], _ per: [Sizes], _ total: Sizes, _ repository: Repository) {
        var repoBlobs = 0, repoRaw: UInt64 = 0, repoStored: UInt64 = 0
        repository.index.forEach { _, loc in repoBlobs += 1; repoRaw += UInt64(loc.rawLength); repoStored += UInt64(loc.storedLength) }
        if json {
            func object(_ s: Sizes) -> [String: Any] {
                ["files": s.files, "directories": s.directories, "symlinks": s.symlinks, "logical_bytes": s.logicalBytes,
                 "blob_references": s.references, "unique_blobs": s.blobs, "raw_bytes": s.rawBytes, "stored_bytes": s.storedBytes,
                 "deduplication_ratio": s.deduplication, "compression_ratio": s.compression, "missing_blobs": s.missingBlobs]
            }
            let list: [[String: Any]] = zip(chosen, per).map { c, s in
                object(s).merging(["id": c.id.hex, "short_id": c.id.short, "time": c.snapshot.time.short, "plan": c.snapshot.plan,
                                   "exclusive_blobs": s.exclusiveBlobs, "exclusive_stored_bytes": s.exclusiveStoredBytes]) { a, _ in a }
            }
            print(jsonLine(["snapshots": list, "total": object(total).merging(["snapshots": chosen.count]) { a, _ in a },
                            "repository": ["blobs": repoBlobs, "raw_bytes": repoRaw, "stored_bytes": repoStored,
                                           "packs": repository.index.packCount, "compression_ratio": Sizes.ratio(repoRaw, repoStored)]]))
            return
        }
        var rows = [["ID", "Time (UTC)", "Files", "Logical", "Raw", "Stored", "Exclusive", "Dedup", "Compr"]]
        for (c, s) in zip(chosen, per) {
            rows.append([c.id.short, c.snapshot.time.short, String(s.files), formatBytes(s.logicalBytes), formatBytes(s.rawBytes),
                         formatBytes(s.storedBytes), formatBytes(s.exclusiveStoredBytes), String(s.deduplication), String(s.compression)])
        }
        printTable(rows)
        print("\(chosen.count) snapshot(s): \(formatBytes(total.logicalBytes)) logical in \(total.files) files; \(total.blobs) distinct blobs, "
              + "\(formatBytes(total.rawBytes)) raw, \(formatBytes(total.storedBytes)) stored; deduplication \(total.deduplication)x, compression \(total.compression)x")
        print("repository: \(repoBlobs) blobs in \(repository.index.packCount) packs, \(formatBytes(repoRaw)) raw, \(formatBytes(repoStored)) stored")
    }
}
