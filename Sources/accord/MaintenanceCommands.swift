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
        try monitor.record(repository: repo.path) { rec in
            try rec.phase("forget", plan: plan, dryRun: dryRun) { try forget(rec) }
            if prune && !dryRun { try PruneCommand.prune(repo, maxUnused: 10, dryRun: false, rec) }
        }
    }

    func forget(_ rec: CommandRecorder) throws {
        let repository = try repo.open()
        try withLock(repository, exclusive: true, command: "forget") {
            let all = try repository.snapshots { id, e in warn("snapshot \(id.short) is unreadable: \(e)") }
            var remove: [SnapshotID] = []
            if !snapshots.isEmpty {
                remove = try snapshots.map { try repository.resolveSnapshot($0, warn: warn) }
                for id in remove { print("remove \(id.short) (named)") }
            } else {
                var policy = RetentionPolicy()
                policy.last = keepLast; policy.hourly = keepHourly; policy.daily = keepDaily
                policy.weekly = keepWeekly; policy.monthly = keepMonthly; policy.yearly = keepYearly; policy.tags = keepTag
                let decisions = Forget.decide(all, policy: policy, plan: plan)
                for d in decisions {
                    let line = "\(d.id.short)  \(d.snapshot.time.short)  \(escapedText(d.snapshot.host))  \(escapedText(d.snapshot.plan))"
                    if d.keep { print("keep   \(line)  (\(d.reasons.joined(separator: ", ")))") } else { print("remove \(line)"); remove.append(d.id) }
                }
                for d in decisions where d.suspect {
                    warn("snapshot \(d.id.short) is dated \(d.snapshot.time.short) UTC, in the future: kept as suspect and counted by no --keep rule; "
                         + "check the clock of host \(escapedText(d.snapshot.host)), and remove it with `accord forget \(d.id.short)` if it is not genuine")
                }
            }
            if dryRun { print("dry run: \(remove.count) snapshot(s) would be removed"); return }
            try Forget.remove(remove, from: repository)
            rec.set("accord_forget_removed_snapshots", Double(remove.count))
            rec.step("removed", [("snapshots", String(remove.count))])
            print("removed \(remove.count) snapshot(s)")
        }
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

    func validate() throws {
        let text = maxUnused.hasSuffix("%") ? String(maxUnused.dropLast()) : maxUnused
        guard let p = Double(text), p >= 0, p <= 100 else { throw ValidationError("--max-unused \(maxUnused): expected a percentage like 10%") }
    }

    func run() throws {
        let p = Double(maxUnused.hasSuffix("%") ? String(maxUnused.dropLast()) : maxUnused)!   // validate() checked it
        try monitor.record(repository: repo.path) { rec in try Self.prune(repo, maxUnused: p, dryRun: dryRun, rec) }
    }

    /// Runs prune as the phase "prune" of `rec` (also after `forget --prune`).
    static func prune(_ repo: RepositoryOptions, maxUnused: Double, dryRun: Bool, _ rec: CommandRecorder) throws {
        try rec.phase("prune", dryRun: dryRun) { try prune(repo, maxUnused: maxUnused, dryRun: dryRun, recordingTo: rec) }
    }

    private static func prune(_ repo: RepositoryOptions, maxUnused: Double, dryRun: Bool, recordingTo rec: CommandRecorder) throws {
        Sys.umask(0o077)
        let repository = try repo.open()
        let report = try withLock(repository, exclusive: true, command: "prune") {
            var o = PruneOptions()
            o.maxUnusedPercent = maxUnused
            o.dryRun = dryRun
            o.log = { print($0) }
            return try Prune(repository: repository, options: o).run()
        }
        rec.set("accord_prune_freed_bytes", Double(report.bytesFreed))
        rec.step("pruned", [("freed_bytes", String(report.bytesFreed)), ("packs_deleted", String(report.packsDeleted)), ("packs_repacked", String(report.packsRepacked))])
        print("\(dryRun ? "would free" : "freed") \(formatBytes(report.bytesFreed)) (\(formatBytes(report.bytesBefore)) → \(formatBytes(report.bytesAfter))): "
              + "\(report.packsDeleted) packs deleted, \(report.packsRepacked) repacked into \(report.packsWritten)")
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
