import ArgumentParser
import Foundation
import AccordCore
import AccordRuntime

/// `accord diff SNAP1 SNAP2`: both manifests are in tree order (the reader
/// refuses any other), so one merge pass over the two streams finds every
/// change with memory for two entries, whatever the snapshots' sizes.
struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Show what changed between two snapshots: added, removed, modified and metadata-only paths, with sizes.",
        discussion: """
        Each line is a change and a path (escaped as by `accord ls`): `+` added, `-` removed, `M` \
        modified (content, size, type or link target), `U` metadata only (mode, owner, mtime or \
        extended attributes; a directory whose entries changed shows here). ctime, inode and device \
        are not compared: a restore changes them. A summary follows. --json prints one JSON object \
        a line: each change, then the summary (schema in README.md, "Looking inside").
        """)
    @OptionGroup var repo: RepositoryOptions
    @Flag(help: "Print one JSON object a line (message_type change, then summary).")
    var json = false
    @Argument(help: "The older snapshot: id, unique id prefix, or 'latest'.")
    var snapshot1: String
    @Argument(help: "The newer snapshot: id, unique id prefix, or 'latest'.")
    var snapshot2: String

    enum Change: String { case added, removed, modified, metadata }

    struct Totals {
        var count: [Change: Int] = [:]
        var addedBytes: UInt64 = 0, removedBytes: UInt64 = 0, modifiedOldBytes: UInt64 = 0, modifiedNewBytes: UInt64 = 0
    }

    func run() throws {
        let repository = try repo.open()
        // The first snapshot is read, then the second is opened: the index is
        // loaded once, after both are read, so it covers every blob they name.
        let idA = try repository.resolveSnapshot(snapshot1, warn: warn)
        let a = try repository.loadSnapshot(idA)
        let (idB, b) = try repository.openSnapshot(snapshot2, warn: warn)
        var old = repository.manifestReader(a, id: idA), new = repository.manifestReader(b, id: idB)
        var totals = Totals()
        var out = OutputBuffer()
        var ea = try old.next(), eb = try new.next()
        while ea != nil || eb != nil {
            let order = ea == nil ? 1 : eb == nil ? -1 : ManifestEntry.compareTreeOrder(ea!.path, eb!.path)
            if order < 0 {
                emit(.removed, ea, nil, &totals, &out)
                ea = try old.next()
            } else if order > 0 {
                emit(.added, nil, eb, &totals, &out)
                eb = try new.next()
            } else {
                if let change = Self.classify(ea!, eb!) { emit(change, ea, eb, &totals, &out) }
                ea = try old.next()
                eb = try new.next()
            }
            try out.flushIfLarge()
        }
        try out.flush()
        printSummary(totals, idA, idB)
    }

    /// How `new` differs from `old` at the same path; nil when it does not.
    static func classify(_ old: ManifestEntry, _ new: ManifestEntry) -> Change? {
        if old.kind != new.kind || old.size != new.size || old.blobs != new.blobs || old.linkTarget != new.linkTarget { return .modified }
        if old.mode != new.mode || old.uid != new.uid || old.gid != new.gid || old.mtimeSec != new.mtimeSec
            || old.mtimeNsec != new.mtimeNsec || old.xattrs != new.xattrs { return .metadata }
        return nil
    }

    /// Bytes an entry stands for: files and streams (a hard link's bytes are its first name's).
    static func bytes(_ e: ManifestEntry?) -> UInt64 {
        guard let e, e.kind == .file || e.kind == .stream else { return 0 }
        return e.size
    }

    static func kindName(_ k: ManifestEntry.Kind) -> String {
        switch k {
        case .file: return "file"
        case .directory: return "dir"
        case .symlink: return "symlink"
        case .hardlink: return "hardlink"
        case .stream: return "stream"
        }
    }

    func emit(_ change: Change, _ old: ManifestEntry?, _ new: ManifestEntry?, _ t: inout Totals, _ out: inout OutputBuffer) {
        t.count[change, default: 0] += 1
        let (ob, nb) = (Self.bytes(old), Self.bytes(new))
        switch change {
        case .added: t.addedBytes += nb
        case .removed: t.removedBytes += ob
        case .modified: t.modifiedOldBytes += ob; t.modifiedNewBytes += nb
        case .metadata: break
        }
        let entry = (new ?? old)!
        if json {
            var o: [String: Any] = ["message_type": "change", "change": change.rawValue, "path": escapedName(entry.path),
                                    "kind": Self.kindName(entry.kind)]
            o["old_kind"] = old.map { Self.kindName($0.kind) } ?? NSNull()
            o["old_size"] = old.map { Self.bytes($0) } ?? NSNull()
            o["new_size"] = new.map { Self.bytes($0) } ?? NSNull()
            out.line(jsonLine(o))
        } else {
            let mark = ["added": "+", "removed": "-", "modified": "M", "metadata": "U"][change.rawValue]!
            var size = ""
            if change == .modified, ob != nb { size = "  (\(formatBytes(ob)) -> \(formatBytes(nb)))" }
            if change == .added, nb > 0 { size = "  (\(formatBytes(nb)))" }
            if change == .removed, ob > 0 { size = "  (\(formatBytes(ob)))" }
            out.line("\(mark) \(escapedName(entry.path))\(entry.kind == .directory ? "/" : "")\(size)")
        }
    }

    func printSummary(_ t: Totals, _ a: SnapshotID, _ b: SnapshotID) {
        let n = { (c: Change) in t.count[c] ?? 0 }
        if json {
            print(jsonLine(["message_type": "summary", "snapshot1": a.hex, "snapshot2": b.hex,
                            "added": ["entries": n(.added), "bytes": t.addedBytes],
                            "removed": ["entries": n(.removed), "bytes": t.removedBytes],
                            "modified": ["entries": n(.modified), "old_bytes": t.modifiedOldBytes, "new_bytes": t.modifiedNewBytes],
                            "metadata": ["entries": n(.metadata)]]))
            return
        }
        print("")
        print("\(a.short) -> \(b.short):")
        print("  added:         \(n(.added)) entries, \(formatBytes(t.addedBytes))")
        print("  removed:       \(n(.removed)) entries, \(formatBytes(t.removedBytes))")
        print("  modified:      \(n(.modified)) entries, \(formatBytes(t.modifiedOldBytes)) -> \(formatBytes(t.modifiedNewBytes))")
        print("  metadata only: \(n(.metadata)) entries")
    }
}

/// One JSON object on one line, keys sorted (a stable order for scripts and tests).
func jsonLine(_ o: [String: Any]) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}

/// Lines gathered and written to stdout in 64 KiB pieces (a diff of a large tree is many lines).
struct OutputBuffer {
    var bytes: [UInt8] = []
    mutating func line(_ s: String) { bytes += Array(s.utf8); bytes.append(0x0a) }
    mutating func flushIfLarge() throws { if bytes.count > 1 << 16 { try flush() } }
    mutating func flush() throws {
        try bytes.withUnsafeBytes { try Sys.writeStdout($0) }
        bytes.removeAll(keepingCapacity: true)
    }
}
