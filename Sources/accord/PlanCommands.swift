import ArgumentParser
import Foundation
import AccordCore
import AccordEngine
import AccordPlans
import AccordSync
import AccordRuntime

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Show backup plans.", subcommands: [Show.self], defaultSubcommand: Show.self)

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the effective plan (built-in, or a YAML file merged over its base) as YAML.")
        @Option(help: "ae5 (default), ae5-repos, or a YAML plan file.")
        var plan: String = "ae5"
        func run() throws { print(try Plan.load(plan).yaml(), terminator: "") }
    }
}

/// Backs up a plan, then places the `restore` marker. Returns the result and the warnings.
func runPlanBackup(repository: Repository, plan: Plan, tags: [String], output: OutputOptions, threads: Int?) throws -> (BackupResult, [String]) {
    var warnings: [String] = []
    var base = BackupOptions()
    base.tags = tags
    if let t = threads { base.threads = t }
    base.progress = output.makeProgress("backup \(plan.name)")
    base.onError = { path, error in warn("cannot read \(path): \(error); skipped") }
    base.onWarning = { if !output.quiet { warn($0) } }
    let options = try PlanBackup(plan: plan).options(base: base) { message in
        warn(message)
        warnings.append(message)
    }
    let result = try runBackup(repository, options, placingMarker: true)
    return (result, warnings)
}

/// Restores a plan's snapshot (latest of that plan unless given) by running its restore steps.
/// Holds an exclusive lock throughout: a plan restore replaces live data, so a
/// second one (or a prune) must not run beside it. Its pre-restore snapshot is
/// a backup that PlanRestore runs on this same Repository under this same lock.
func runPlanRestore(_ repo: RepositoryOptions, plan: Plan, snapshot: String?, options: PlanRestoreOptions) throws {
    // psql or kubectl may exit early (an error in the dump) while we still write
    // to its stdin: the write must fail with EPIPE, so that its exit status and
    // stderr are reported, rather than end accord by signal.
    signal(SIGPIPE, SIG_IGN)
    Sys.umask(0o077)
    let repository = try repo.open(ae5: true)
    var o = options
    o.warn = warn
    o.retryLock = LockWait.seconds
    try PlanRestore.run(plan: plan, repository: repository, snapshot: snapshot, options: o)
}
