import ArgumentParser
import Foundation
import AccordCore
import AccordEngine
import AccordRuntime

struct ForgetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract: "Remove snapshots by id or by a retention policy (then `prune` reclaims space).",
        discussion: """
        A snapshot kept by any rule is kept. Rules apply per host and plan, newest first. Snapshots \
        tagged pre-restore are kept unless named explicitly. Snapshots dated more than a day after \
        this host's clock are suspect: they are kept, take no --keep slot (so they cannot push \
        genuine ones out) and are named in a warning; forget them by id.
        """)
    @OptionGroup var repo: RepositoryOptions
    @OptionGroup var monitor: MonitorOptions
    @Option(help: "Keep the N newest snapshots.") var keepLast: Int = 0
    @Option(help: "Keep the newest snapshot of each of the last N hours.") var keepHourly: Int = 0
    @Option(help: "Keep the newest snapshot of each of the last N days.") var keepDaily: Int = 0
    @Option(help: "Keep the newest snapshot of each of the last N weeks.") var keepWeekly: Int = 0
    @Option(help: "Keep the newest snapshot of each of the last N months.") var keepMonthly: Int = 0
    @Option(help: "Keep the newest snapshot of each of the last N years.") var keepYearly: Int = 0
    @Option(help: "Keep snapshots with this tag (repeatable).") var keepTag: [String] = []
    @Option(help: "Only consider snapshots of this plan.") var plan: String?
    @Flag(help: "Show what would be removed, remove nothing.") var dryRun = false
    @Flag(help: "Run prune afterwards.") var prune = false
    @OptionGroup var lockWait: LockWaitOptions
    @Flag(help: "Print one JSON object on stdout: every decision with its reasons, what was removed, warnings (schema in README.md).") var json = false
    @Argument(help: "Snapshots to forget explicitly (ids or prefixes).") var snapshots: [String] = []

    func validate() throws {
        for v in [keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, keepYearly] where v < 0 {
            throw ValidationError("--keep-* values must be 0 or more")
        }
        if snapshots.isEmpty && ![keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, keepYearly].contains(where: { $0 > 0 }) && keepTag.isEmpty {
            throw ValidationError("nothing to forget: give snapshot ids or at least one --keep-* rule")
        }
    }

    func run() throws {
        lockWait.apply()
        try monitor.record(repository: repo.path) { rec in
            var object = try rec.phase("forget", plan: plan, dryRun: dryRun) { try forget(rec) }
            if prune && !dryRun {
                let report = try PruneCommand.prune(repo, maxUnused: 10, dryRun: false, json: json, rec)
                object["prune"] = PruneCommand.jsonObject(report, dryRun: false)
            }
            if json { print(jsonLine(object)) }
        }
    }

    /// Forgets, printing each decision (unless --json); returns the `--json` object (schema in README.md).
    func forget(_ rec: CommandRecorder) throws -> [String: Any] {
        let repository = try repo.open()
        var warnings: [String] = []
        let note = { (m: String) in warn(m); warnings.append(escapedText(m)) }
        let say = { (line: String) in if !json { print(line) } }
        return try withLock(repository, exclusive: true, command: "forget") { () -> [String: Any] in
            let all = try repository.snapshots { id, e in note("snapshot \(id.short) is unreadable: \(e)") }
            var remove: [SnapshotID] = [], listed: [[String: Any]] = []
            if !snapshots.isEmpty {
                remove = try snapshots.map { try repository.resolveSnapshot($0, warn: note) }
                for id in remove {
                    say("remove \(id.short) (named)")
                    if let s = all.first(where: { $0.id == id }) { listed.append(Self.jsonObject(id, s.snapshot, keep: false, reasons: ["named"], suspect: false)) }
                }
            } else {
                var policy = RetentionPolicy()
                policy.last = keepLast; policy.hourly = keepHourly; policy.daily = keepDaily
                policy.weekly = keepWeekly; policy.monthly = keepMonthly; policy.yearly = keepYearly; policy.tags = keepTag
                let decisions = Forget.decide(all, policy: policy, plan: plan)
                for d in decisions {
                    let line = "\(d.id.short)  \(d.snapshot.time.short)  \(escapedText(d.snapshot.host))  \(escapedText(d.snapshot.plan))"
                    if d.keep { say("keep   \(line)  (\(d.reasons.joined(separator: ", ")))") } else { say("remove \(line)"); remove.append(d.id) }
                    listed.append(Self.jsonObject(d.id, d.snapshot, keep: d.keep, reasons: d.reasons, suspect: d.suspect))
                }
                for d in decisions where d.suspect {
                    note("snapshot \(d.id.short) is dated \(d.snapshot.time.short) UTC, in the future: kept as suspect and counted by no --keep rule; "
                         + "check the clock of host \(escapedText(d.snapshot.host)), and remove it with `accord forget \(d.id.short)` if it is not genuine")
                }
            }
            let object: [String: Any] = ["message_type": "forget", "dry_run": dryRun, "snapshots": listed, "removed": remove.map(\.hex),
                                         "kept": listed.filter { $0["keep"] as? Bool == true }.count, "warnings": warnings]
            if dryRun { say("dry run: \(remove.count) snapshot(s) would be removed"); return object }
            try Forget.remove(remove, from: repository)
            rec.set("accord_forget_removed_snapshots", Double(remove.count))
            rec.step("removed", [("snapshots", String(remove.count))])
            say("removed \(remove.count) snapshot(s)")
            return object
        }
    }

    /// One snapshot's decision in `forget --json`.
    static func jsonObject(_ id: SnapshotID, _ s: Snapshot, keep: Bool, reasons: [String], suspect: Bool) -> [String: Any] {
        ["id": id.hex, "short_id": id.short, "time": s.time.rfc3339, "host": escapedText(s.host), "plan": escapedText(s.plan),
         "tags": s.tags.map(escapedText), "keep": keep, "reasons": reasons, "suspect": suspect]
    }
}

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Delete data no snapshot uses; repack packs that are mostly unused (exclusive lock).")
    @OptionGroup var repo: RepositoryOptions
    @OptionGroup var monitor: MonitorOptions
    @Option(help: ArgumentHelp("Repack packs with more than this share unused.", valueName: "PERCENT")) var maxUnused: String = "10%"
    @Flag(help: "Show what would be done, change nothing.") var dryRun = false
    @OptionGroup var lockWait: LockWaitOptions
    @Flag(help: "Print one JSON object on stdout: packs and bytes removed and repacked (schema in README.md); prune's log goes to stderr.") var json = false

    func validate() throws {
        let text = maxUnused.hasSuffix("%") ? String(maxUnused.dropLast()) : maxUnused
        guard let p = Double(text), p >= 0, p <= 100 else { throw ValidationError("--max-unused \(maxUnused): expected a percentage like 10%") }
    }

    func run() throws {
        lockWait.apply()
        let p = Double(maxUnused.hasSuffix("%") ? String(maxUnused.dropLast()) : maxUnused)!   // validate() checked it
        try monitor.record(repository: repo.path) { rec in
            let report = try Self.prune(repo, maxUnused: p, dryRun: dryRun, json: json, rec)
            if json { print(jsonLine(Self.jsonObject(report, dryRun: dryRun))) }
        }
    }

    /// Runs prune as the phase "prune" of `rec` (also after `forget --prune`).
    /// With `json` its log goes to stderr and its summary is left to the caller.
    @discardableResult
    static func prune(_ repo: RepositoryOptions, maxUnused: Double, dryRun: Bool, json: Bool, _ rec: CommandRecorder) throws -> PruneReport {
        try rec.phase("prune", dryRun: dryRun) { try prune(repo, maxUnused: maxUnused, dryRun: dryRun, json: json, recordingTo: rec) }
    }

    private static func prune(_ repo: RepositoryOptions, maxUnused: Double, dryRun: Bool, json: Bool, recordingTo rec: CommandRecorder) throws -> PruneReport {
        Sys.umask(0o077)
        let repository = try repo.open()
        let report = try withLock(repository, exclusive: true, command: "prune") {
            var o = PruneOptions()
            o.maxUnusedPercent = maxUnused
            o.dryRun = dryRun
            if json { o.log = { Sys.writeStderr("prune: \(escapedText($0))\n") } } else { o.log = { print($0) } }
            return try Prune(repository: repository, options: o).run()
        }
        rec.set("accord_prune_freed_bytes", Double(report.bytesFreed))
        rec.step("pruned", [("freed_bytes", String(report.bytesFreed)), ("packs_deleted", String(report.packsDeleted)), ("packs_repacked", String(report.packsRepacked))])
        if !json {
            print("\(dryRun ? "would free" : "freed") \(formatBytes(report.bytesFreed)) (\(formatBytes(report.bytesBefore)) → \(formatBytes(report.bytesAfter))): "
                  + "\(report.packsDeleted) packs deleted, \(report.packsRepacked) repacked into \(report.packsWritten)")
        }
        return report
    }

    /// `prune --json` (and the `prune` member of `forget --prune --json`).
    static func jsonObject(_ r: PruneReport, dryRun: Bool) -> [String: Any] {
        ["message_type": "prune", "dry_run": dryRun, "packs_total": r.packsTotal, "packs_deleted": r.packsDeleted,
         "packs_repacked": r.packsRepacked, "packs_written": r.packsWritten, "blobs_used": r.blobsUsed,
         "bytes_before": r.bytesBefore, "bytes_after": r.bytesAfter, "bytes_freed": r.bytesFreed]
    }
}

struct Repair: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Repair parts of a repository.", subcommands: [Index.self])

    struct Index: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rebuild the index from the pack headers (after a lost or corrupt index).")
        @OptionGroup var repo: RepositoryOptions
        func run() throws {
            let repository = try repo.open()
            let r = try withLock(repository, exclusive: true, command: "repair index") {
                try RepairIndex.run(repository) { warn($0) }
            }
            print("rebuilt the index: \(r.packs) packs, \(r.blobs) blobs" + (r.unreadable.isEmpty ? "" : "; \(r.unreadable.count) unreadable pack(s), see above"))
            if !r.unreadable.isEmpty { throw ExitCode(1) }
        }
    }
}
