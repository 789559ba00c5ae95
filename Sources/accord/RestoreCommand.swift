import ArgumentParser
import Foundation
import AccordCore
import AccordEngine
import AccordPlans
import AccordRuntime

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a snapshot under a target directory.",
        discussion: "Paths keep their absolute form under the target: /opt/x restored to --target /tmp/r lands in /tmp/r/opt/x.")
    @OptionGroup var repo: RepositoryOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var lockWait: LockWaitOptions
    @Argument(help: "Snapshot id, unique id prefix, or 'latest' (with --plan: default the plan's latest).")
    var snapshot: String?
    @Option(help: "Directory to restore into (created if missing).")
    var target: String?
    @Option(help: ArgumentHelp("Run a plan's restore steps (ae5, ae5-repos or a YAML file) instead of restoring files under --target.", valueName: "PLAN"))
    var plan: String?
    @Flag(help: "With --plan: restore even without the `restore` marker.")
    var override = false
    @Flag(help: "With --plan: do not restore the platform configmap.")
    var noConfig = false
    @Flag(help: "With --plan: restore the saved ingress objects too.")
    var ingress = false
    @Option(help: "With --plan: seconds to wait for each scale/pod wait.")
    var waitTimeout: Int?
    @Option(help: ArgumentHelp("Restore only this path and what is below it (repeatable).", valueName: "PATH"))
    var include: [String] = []
    @Flag(help: "Restore over the original paths (same as --target /).")
    var inPlace = false
    @Flag(help: "Print a JSON summary at the end.")
    var json = false
    @Option(help: "Worker threads (default: one per core).")
    var threads: Int?

    func validate() throws {
        if let t = threads, t < 1 || t > 256 { throw ValidationError("--threads must be between 1 and 256") }
        if plan != nil {
            if target != nil || inPlace || !include.isEmpty { throw ValidationError("--plan restores in place by its steps: no --target, --in-place or --include") }
            if let w = waitTimeout, w <= 0 { throw ValidationError("--wait-timeout must be a positive number of seconds") }
            return
        }
        if override || noConfig || ingress || waitTimeout != nil { throw ValidationError("--override, --no-config, --ingress and --wait-timeout go with --plan") }
        if snapshot == nil { throw ValidationError("give the SNAPSHOT to restore (an id, a prefix, or latest)") }
        if target == nil && !inPlace { throw ValidationError("give --target DIR, or --in-place to overwrite the original paths") }
        if target != nil && inPlace { throw ValidationError("--target and --in-place exclude each other") }
        if let t = target, t == "/" { throw ValidationError("--target / would overwrite the original paths: use --in-place to confirm") }
    }

    func run() throws {
        lockWait.apply()
        if let p = plan {
            var o = PlanRestoreOptions()
            o.override = override; o.noConfig = noConfig; o.ingress = ingress; o.waitTimeout = waitTimeout
            let quiet = output.quiet
            o.log = { if !quiet { print("restore: \($0)") } }
            try runPlanRestore(repo, plan: try Plan.load(p), snapshot: snapshot, options: o)
            return
        }
        let snapshot = self.snapshot!
        let repository = try repo.open()
        Sys.umask(0)
        let result: RestoreResult = try withLock(repository, readOnly: true, overlapsSettle: true, command: "restore") { settled in
            let (id, s) = try repository.openSnapshot(snapshot)
            let cwd = Sys.currentDirectory()
            let t = target.map { Array($0.utf8) } ?? [0x2f]
            var options = RestoreOptions(target: t.first == 0x2f ? t : cwd + [0x2f] + t)
            options.includes = include.map { Array($0.utf8) }
            if let n = threads { options.threads = n }
            options.progress = output.makeProgress("restore")
            options.onError = { path, error in Sys.writeStderr("error: cannot restore \(escapedText(path)): \(escapedText("\(error)"))\n") }
            options.beforeReplacing = settled
            let started = Sys.monotonicSeconds()
            let r = try Restore(repository: repository, options: options).run(s)
            if json {
                let o: [String: Any] = ["snapshot": id.hex, "files": r.files, "directories": r.directories, "bytes": r.bytes,
                                        "failed": r.failed, "seconds": Sys.monotonicSeconds() - started]
                if let d = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) { print(String(decoding: d, as: UTF8.self)) }
            } else if !output.quiet {
                print("restored snapshot \(id.short): \(r.files) files, \(r.directories) dirs, \(formatBytes(r.bytes))")
            }
            return r
        }
        if !result.failed.isEmpty {
            Sys.writeStderr("error: \(result.failed.count) path(s) could not be restored; run `accord check --read-data -d \(repo.path)`\n")
            throw ExitCode(1)
        }
    }
}
