import Foundation
import AccordCore
import AccordRuntime
import class AccordRuntime.Progress // over Foundation.Progress

public struct CheckOptions {
    /// Read every blob, inflate it and verify its SHA-256 (and each pack's id).
    public var readData = false
    /// With `readData`, read only this share of the packs (0 < p ≤ 100).
    public var readDataPercent: Double = 100
    public var threads = defaultThreadCount
    public var progress: Progress?
    public init() {}
}

/// What `check` found. `errors` make the command fail; `notes` are harmless
/// (e.g. a pack left by an interrupted backup, indexed by the next one).
public struct CheckReport {
    public var errors: [String] = []
    public var notes: [String] = []
    public var packs = 0
    public var blobs = 0
    public var snapshots = 0
    public var bytesRead: UInt64 = 0
    /// What could not be checked (an encrypted repository opened without its key).
    public var notChecked: [String] = []
    public var ok: Bool { errors.isEmpty }
}

/// Verifies a repository: config, every key file, every index file, every
/// pack header against the index, every snapshot and its manifest, every
/// referenced blob; with `readData`, every stored byte.
///
/// An encrypted repository opened without its key (`Repository.open(at:
/// withoutKey: true)`, a DR node that never holds it) is checked as far as
/// the key is not needed (Check+Keyless.swift): every file against its name,
/// pack headers against the index, delta bases; with `readData`, every pack
/// whole. Manifests and blob contents are then listed in `notChecked`.
///
/// `@unchecked Sendable`: the `readData` threads change `report` only under
/// that function's `lock` and read `usedBlobs`, which is set before they
/// start; everything else runs on the calling thread.
public final class Check: @unchecked Sendable {
    let repository: Repository
    let options: CheckOptions
    var report = CheckReport()
    /// Blobs some snapshot uses; nil when a manifest could not be read.
    var usedBlobs: Set<BlobID>?

    public init(repository: Repository, options: CheckOptions) {
        self.repository = repository
        self.options = options
    }

    public func run() throws -> CheckReport {
        // Snapshots are listed before the index is read: a backup committing meanwhile
        // wrote its index first, so every listed snapshot's blobs are in what we read.
        let snapshotIDs = try repository.listSnapshotIDs()
        if repository.config.isEncrypted { try checkKeyFiles() }
        let indexed = try loadIndexFiles()
        let onDisk = Set(try repository.listPacks())
        checkPacks(indexed, onDisk: onDisk)
        usedBlobs = keyless ? checkSealedSnapshots(snapshotIDs) : checkSnapshots(snapshotIDs)
        checkDeltaBases(used: usedBlobs, onDisk: onDisk)
        report.blobs = repository.index.blobCount
        if !report.errors.isEmpty && onDisk.subtracting(indexed.keys).count > 0 && report.errors.contains(where: { $0.contains("missing from the index") || $0.contains("in no pack") }) {
            report.errors.append("some packs are not in the index while blobs are missing from it: `accord repair index` rebuilds the index from the pack headers")
        }
        if options.readData { try readData(Array(onDisk).sorted()) }
        return report
    }

    /// Index files, one by one, so one bad file does not hide the rest; their
    /// entries go into the repository's index. Returns the entries per pack.
    func loadIndexFiles() throws -> [PackID: [PackEntry]] {
        var indexed: [PackID: [PackEntry]] = [:]
        repository.index.removeAll()   // what `loadIndex` left out (entries of missing packs) is checked too
        for id in try repository.listIndexFiles() {
            do {
                let file = try repository.readIndexFile(id)
                for p in file.packs { indexed[p.id, default: []].append(contentsOf: p.blobs) }
                repository.index.add(file)
            } catch {
                report.errors.append("\(error)")
            }
        }
        repository.index.seal()
        return indexed
    }

    /// Packs: present, header readable and matching the index; unindexed ones noted.
    func checkPacks(_ indexed: [PackID: [PackEntry]], onDisk: Set<PackID>) {
        for (pack, entries) in indexed.sorted(by: { $0.key < $1.key }) {
            report.packs += 1
            guard onDisk.contains(pack) else {
                report.errors.append("pack \(pack) is missing: the index lists \(entries.count) blobs in it (index entry without pack); snapshots using them cannot be restored")
                continue
            }
            do {
                let header = try repository.readPackHeader(pack)
                let byID = Dictionary(header.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
                for e in entries where byID[e.id] != e {
                    report.errors.append("pack \(pack): blob \(e.id) is listed in the index but not at that place in the pack header")
                    break
                }
            } catch let e as PackError {
                report.errors.append("pack \(pack) is damaged (\(e)): run `accord check --read-data` to see which blobs are lost")
            } catch {
                report.errors.append("pack \(pack) is unreadable: \(error)")
            }
        }
        for pack in onDisk.subtracting(indexed.keys).sorted() {
            if (try? repository.readPackHeader(pack)) != nil {
                report.notes.append("pack \(pack) is not in the index (left by an interrupted backup or sync; harmless, the next backup indexes it)")
            } else {
                report.errors.append("pack \(pack) is not in the index and its header is unreadable (truncated pack from an interrupted write?): remove it or run `accord repair index`")
            }
        }
    }

    /// Snapshots and manifests: every referenced blob must be indexed.
    /// Returns the blobs snapshots use; nil when a manifest could not be read.
    func checkSnapshots(_ snapshotIDs: [SnapshotID]) -> Set<BlobID>? {
        var seen = Set<BlobID>()
        var allManifestsRead = true   // else `seen` may lack blobs a snapshot uses
        for sid in snapshotIDs {
            report.snapshots += 1
            let s: Snapshot
            do { s = try repository.loadSnapshot(sid) } catch {
                report.errors.append("snapshot \(sid): \(error)")
                allManifestsRead = false
                continue
            }
            var missing = 0
            for m in s.manifestIDs where !repository.index.contains(m) { missing += 1 }
            if missing > 0 {
                report.errors.append("snapshot \(sid.short): \(missing) of its manifest blobs are missing from the index; its manifest is unreadable")
                allManifestsRead = false
                continue
            }
            do {
                try repository.walkReferencedBlobs(snapshot: s, id: sid, tolerateListErrors: true, seen: &seen, entry: { e in
                    if let why = e.listError { report.errors.append("snapshot \(sid.short): \(why)"); allManifestsRead = false }
                }, blob: { b, e in
                    if let e, !repository.index.contains(b) {
                        report.errors.append("snapshot \(sid.short): \(e.path.displayPath) needs blob \(b), which is in no pack")
                    }
                })
            } catch let e as ManifestError {
                // A record breaking a validity rule: say so (the error names snapshot, record, path, rule).
                if case .invalid = e { report.errors.append("\(e)") }
                else { report.errors.append("snapshot \(sid.short): manifest is unreadable (\(e))") }
                allManifestsRead = false
            } catch {
                report.errors.append("snapshot \(sid.short): manifest is unreadable (\(error))")
                allManifestsRead = false
            }
        }
        return allManifestsRead ? seen : nil
    }

    /// Every blob stored as a delta needs its base, stored whole, in the index.
    /// A missing base is an error: snapshots using the blob cannot be restored,
    /// and a backup could reuse it (`used` only picks the message; nil: unknown).
    func checkDeltaBases(used: Set<BlobID>?, onDisk: Set<PackID>) {
        var lost: [(BlobID, String)] = []
        repository.index.forEach { id, l in
            guard l.compression == .delta, onDisk.contains(repository.index.pack(of: l)) else { return }
            let why: String
            do {
                let base = try repository.deltaBase(of: id, location: l)
                guard let bl = repository.index.lookup(base), onDisk.contains(repository.index.pack(of: bl)) else {
                    lost.append((id, "is stored as a delta on blob \(base), which is in no pack")); return
                }
                guard bl.compression != .delta else { lost.append((id, "is stored as a delta on blob \(base), itself a delta")); return }
                return
            } catch { why = "is stored as a delta whose base cannot be read (\(error))" }
            lost.append((id, why))
        }
        for (id, why) in lost.sorted(by: { $0.0 < $1.0 }) {
            if used?.contains(id) ?? true {
                report.errors.append("blob \(id) \(why): snapshots using it cannot be restored")
            } else {
                // No snapshot uses it, but a backup would reuse an indexed copy.
                report.errors.append("blob \(id) \(why); no snapshot uses it, but a backup could reuse it: run `accord prune`, which leaves it out of the index")
            }
        }
    }

    /// Reads packs whole: pack id = SHA-256 of the file, and each blob inflates to its id.
    func readData(_ packs: [PackID]) throws {
        let chosen: [PackID]
        if options.readDataPercent >= 100 { chosen = packs } else {
            let n = max(1, Int((Double(packs.count) * options.readDataPercent / 100).rounded(.up)))
            chosen = Array(packs.shuffled().prefix(n)).sorted()
        }
        let queue = BoundedQueue<PackID>(capacity: 64)
        let lock = NSLock()
        let workers = WorkerGroup()
        options.progress?.startReporting()
        defer { options.progress?.stop() }
        workers.spawn(options.threads, name: "check") { [unowned self] _ in
            let inflater = Inflater()
            var plain: [UInt8] = []
            while let pack = queue.pop() {
                let (errs, notes, bytes) = verifyPack(pack, inflater: inflater, plain: &plain)
                lock.withLock { report.errors.append(contentsOf: errs); report.notes.append(contentsOf: notes); report.bytesRead += bytes }
                options.progress?.addFile()
                options.progress?.addBytes(Int(bytes))
            }
        }
        for p in chosen { queue.push(p) }
        queue.close()
        workers.wait()
    }

    func verifyPack(_ pack: PackID, inflater: Inflater, plain: inout [UInt8]) -> (errors: [String], notes: [String], bytes: UInt64) {
        let bytes: [UInt8]
        do { bytes = try repository.readPack(pack) } catch { return (["pack \(pack) is unreadable: \(error)"], [], 0) }
        var errors: [String] = [], notes: [String] = []
        if PackID(hashing: bytes) != pack {
            errors.append("pack \(pack): content does not match its name (the file was altered or truncated)")
        }
        if bytes.count < PackFormat.trailerSize + 8 {
            return (errors + ["pack \(pack) is truncated to \(bytes.count) bytes (no header left): its blobs are lost; run `accord repair index`"], [], UInt64(bytes.count))
        }
        let entries: [PackEntry]
        do { entries = try bytes.withUnsafeBytes { try PackReader.decodeHeader(whole: $0, sealOverhead: repository.sealOverhead) } } catch {
            // Fall back to the index's view of the pack to name damaged blobs.
            errors.append("pack \(pack): header is damaged (\(error))")
            return (errors, [], UInt64(bytes.count))
        }
        for e in entries {
            let end = Int(e.offset) + Int(e.storedLength)
            guard end <= bytes.count else { errors.append("pack \(pack): blob \(e.id) at offset \(e.offset) runs past the end"); continue }
            if keyless { continue }   // the pack's id covers its bytes; opening a blob needs the key
            do {
                try bytes.withUnsafeBytes { buf in
                    try repository.decodeVerified(stored: UnsafeRawBufferPointer(rebasing: buf[Int(e.offset)..<end]), id: e.id,
                                                  compression: e.compression, rawLength: Int(e.rawLength), inflater: inflater, into: &plain)
                }
            } catch BlobError.baseUnreadable(_, let base, _) where usedBlobs.map({ !$0.contains(e.id) }) ?? false {
                // Left behind by prune with its base gone; not indexed, and no snapshot uses it.
                notes.append("pack \(pack): unused delta blob \(e.id.short) cannot be read (its base \(base.short) is gone); harmless, prune removes it with its pack")
            } catch BlobError.baseUnreadable(_, let base, let why) {
                errors.append("pack \(pack): blob \(e.id) at offset \(e.offset) is a delta on blob \(base), which cannot be read (\(why))")
            } catch {
                errors.append("pack \(pack): blob \(e.id) at offset \(e.offset) is corrupt (hash mismatch or bad compressed data)")
            }
        }
        return (errors, notes, UInt64(bytes.count))
    }
}
