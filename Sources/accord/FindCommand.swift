import ArgumentParser
import Foundation
import AccordCore
import AccordRuntime

/// `accord find GLOB…`: which snapshots hold a matching path. Each chosen
/// snapshot's manifest is streamed once (the validating reader), so memory
/// does not grow with the snapshots; nothing but manifests is read.
struct FindCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "find",
        abstract: "Find the snapshots that hold a path matching a glob.",
        discussion: """
        A pattern without "/" is matched against each entry's name (its last component), one with \
        "/" against the whole path: an absolute pattern from the root, a relative one against the \
        end of the path ('src/*.c' finds /home/a/src/x.c). `*` matches any bytes but "/", `**` \
        any bytes, `?` one byte, `[a-z]` and `[!a-z]` a set, `\\x` the byte x. Quote patterns from \
        the shell. Each match is printed with its snapshot (oldest first), kind, size, mtime and \
        path (escaped as by `accord ls`), then a summary. --json prints one JSON object a line: \
        each match, then the summary (schema in README.md, "Looking inside").
        """)
    @OptionGroup var repo: RepositoryOptions
    @Flag(help: "Print one JSON object a line (message_type match, then summary).")
    var json = false
    @Flag(name: [.short, .customLong("ignore-case")], help: "Match ASCII letters regardless of case.")
    var ignoreCase = false
    @Option(name: [.short, .customLong("snapshot")], help: "Search only this snapshot (id, unique prefix or 'latest'); repeatable. Default: all.")
    var snapshots: [String] = []
    @Argument(help: "Glob(s); a path matching any of them is printed.")
    var patterns: [String]

    func validate() throws {
        guard !patterns.isEmpty else { throw ValidationError("give a pattern, e.g. accord find '*.sql'") }
        do { for p in patterns { _ = try FindGlob(p) } } catch let e as FindGlob.Invalid { throw ValidationError(e.description) }
    }

    func run() throws {
        let globs = try patterns.map { try FindGlob($0, ignoreCase: ignoreCase) }
        let repository = try repo.open()
        let chosen = try open(repository)
        var out = OutputBuffer()
        var matches = 0, holding = 0
        for (id, s) in chosen {
            var reader = repository.manifestReader(s, id: id)
            var here = 0
            while let e = try reader.next() {
                let name = e.path[(e.path.lastIndex(of: 0x2f).map { $0 + 1 } ?? 0)...]
                guard globs.contains(where: { $0.wholePath ? $0.matches(e.path) : (!name.isEmpty && $0.matches(name)) }) else { continue }
                here += 1
                emit(e, id, s, &out)
                try out.flushIfLarge()
            }
            matches += here
            if here > 0 { holding += 1 }
        }
        try out.flush()
        if json {
            print(jsonLine(["message_type": "summary", "matches": matches, "snapshots_matching": holding, "snapshots_searched": chosen.count]))
        } else {
            print("\(matches) match(es) in \(holding) of \(chosen.count) snapshot(s)")
        }
    }

    /// The chosen snapshots, oldest first (`Repository.openSnapshots`).
    func open(_ repository: Repository) throws -> [(id: SnapshotID, snapshot: Snapshot)] {
        try repository.openSnapshots(snapshots, warn: warn).sorted { $0.snapshot.time < $1.snapshot.time }
    }

    func emit(_ e: ManifestEntry, _ id: SnapshotID, _ s: Snapshot, _ out: inout OutputBuffer) {
        let mtime = Timestamp(seconds: e.mtimeSec, nanoseconds: e.mtimeNsec)
        let size = DiffCommand.bytes(e)
        if json {
            out.line(jsonLine(entryJSON(e).merging(["message_type": "match", "snapshot": id.hex, "short_id": id.short, "time": s.time.rfc3339]) { $1 }))
        } else {
            let kind = DiffCommand.kindName(e.kind).padding(toLength: 8, withPad: " ", startingAt: 0)
            let link = e.kind == .symlink || e.kind == .hardlink ? " -> " + escapedName(e.linkTarget) : ""
            out.line("\(id.short)  \(s.time.short)  \(kind) \(formatBytes(size).leftPad(10))  \(mtime.short)  \(escapedName(e.path))\(link)")
        }
    }
}

/// An entry as `find --json` and `ls --json` print it: `path` (escaped as by
/// `accord ls`), `kind` (file, dir, symlink, hardlink, stream), `size` (files
/// and streams; 0 for other kinds), `mode` (permission bits), `uid`, `gid`,
/// `mtime` (RFC 3339, UTC), and `link_target` for symlinks and hard links.
func entryJSON(_ e: ManifestEntry) -> [String: Any] {
    var o: [String: Any] = ["path": escapedName(e.path), "kind": DiffCommand.kindName(e.kind), "size": DiffCommand.bytes(e),
                            "mode": e.mode, "uid": e.uid, "gid": e.gid,
                            "mtime": Timestamp(seconds: e.mtimeSec, nanoseconds: e.mtimeNsec).rfc3339]
    if e.kind == .symlink || e.kind == .hardlink { o["link_target"] = escapedName(e.linkTarget) }
    return o
}
