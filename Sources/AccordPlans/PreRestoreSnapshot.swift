import AccordCore
import AccordEngine
import AccordRuntime

extension PlanRestore {
    /// Backs up the paths about to be replaced (those that exist), tagged
    /// `pre-restore` and the plan's name, before `replace-storage` deletes them.
    /// It runs on this restore's own `Repository` under the exclusive lock the
    /// caller holds for the whole restore: no second lock (it would wait on
    /// ours) and no second open. Its packs and index file join the loaded index,
    /// which the restore may then read from too: blobs are named by content, so
    /// any copy is the right one.
    func preRestoreSnapshot() throws {
        let existing = replacedPaths.filter { (try? Sys.lstat($0)) != nil }
        if existing.isEmpty { return }
        var b = BackupOptions()
        b.paths = existing
        b.plan = "pre-restore"
        b.tags = ["pre-restore", plan.name]
        let warn = options.warn
        b.onError = { p, e in warn("pre-restore snapshot: cannot read \(p): \(e)") }
        // As every backup: packs an interrupted backup left are indexed first, so their data is reused.
        try repository.prepareForWriting()
        let result = try Backup(repository: repository, options: b).run()
        // Replacing storage deletes it: every file must be in the safety snapshot first.
        guard !result.incomplete else { throw PlanRunError.preRestoreIncomplete(unreadable: result.snapshot.summary.errors) }
        options.log("pre-restore snapshot \(result.id.short) holds the replaced data (tag pre-restore)")
    }
}
