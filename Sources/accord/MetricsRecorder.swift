// What a backup, sync, check, forget or prune reports to monitoring: the
// metrics file and the step log (README.md, "Monitoring"). A command wraps its
// work in `MonitorOptions.record`, which yields a `CommandRecorder`; the
// recorder runs each phase (`phase`), logs its steps and writes the metrics
// when it starts and when it ends, with success or failure alike.
import ArgumentParser
import AccordCore
import AccordS3
import AccordEngine
import AccordSync
import AccordPlans
import AccordRuntime

/// `--metrics-file` and `--log-file`, shared by the commands that report.
struct MonitorOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Write Prometheus metrics to FILE after the command, success or failure (a .prom file in node_exporter's textfile-collector directory; default: the settings' metrics.file).", valueName: "FILE"))
    var metricsFile: String?
    @Option(help: ArgumentHelp("Append one line per step to FILE (mode 0600; default: the settings' log.file).", valueName: "FILE"))
    var logFile: String?

    func validate() throws {
        if let m = metricsFile, let why = Settings.metricsFileProblem(m) { throw ValidationError("--metrics-file \(m): \(why)") }
        if let l = logFile, l.isEmpty || l.hasSuffix("/") { throw ValidationError("--log-file \(l): expected a file name") }
    }

    /// Runs `body` with a recorder for `repository`; the files come from the
    /// options, else from the settings file (read only when an option is missing).
    func record<T>(repository: String, _ body: (CommandRecorder) throws -> T) throws -> T {
        var metrics = metricsFile, log = logFile
        if metrics == nil || log == nil {
            let s = try Passphrase.settings()
            metrics = metrics ?? s.metrics.file
            log = log ?? s.log.file
        }
        return try body(CommandRecorder(metricsFile: metrics, logFile: log, repository: repository))
    }
}

/// Records a command's phases. Not Sendable: one command's thread uses it.
final class CommandRecorder {
    let metrics: MetricsFile?
    let log: StepLog
    /// The repository label: absolute, as the metrics of two runs from different directories must match.
    let repository: String
    private var phases: [Phase] = []
    private var warnedMetrics = false

    struct Phase {
        var command: String
        var plan: String?
        var values: [String: Double] = [:]
        /// The exit status recorded when the body returns: 3 after `markIncomplete`.
        var code: Int32 = 0
    }

    init(metricsFile: String?, logFile: String?, repository: String) {
        metrics = metricsFile.map(MetricsFile.init(path:))
        log = StepLog(path: logFile)
        let cwd = String(decoding: Sys.currentDirectory(), as: UTF8.self)
        // A bucket's address is its name wherever the command runs; a relative directory is made absolute.
        self.repository = repository.hasPrefix("s3:") ? S3Location.redacted(repository)
            : repository.hasPrefix("/") ? repository : (cwd == "/" ? "" : cwd) + "/" + repository
    }

    /// Runs `command`'s work: logs its start, writes its start time, runs
    /// `body`, then logs and writes its outcome, exit code, duration, the
    /// values `set` gave and the repository's size. A `dryRun` changes
    /// nothing and writes no metrics (it is logged).
    func phase<T>(_ command: String, plan: String? = nil, dryRun: Bool = false, _ body: () throws -> T) throws -> T {
        let start = Sys.now(), clock = Sys.monotonicSeconds()
        phases.append(Phase(command: command, plan: plan.flatMap { $0.isEmpty ? nil : $0 }))
        defer { phases.removeLast() }
        step("start", dryRun ? [("dry_run", "true")] : [])
        if !dryRun { writeMetrics([sample("last_start_timestamp_seconds", seconds(start))]) }
        let code: Int32
        var failure: Error?
        var result: T?
        do { result = try body(); code = phases.last!.code } catch {
            failure = error
            code = Accord.exitCode(for: error).rawValue
        }
        let end = Sys.now(), duration = Sys.monotonicSeconds() - clock
        var pairs = [("outcome", code == 0 ? "ok" : "failed"), ("exit", String(code)), ("seconds", String(format: "%.3f", duration))]
        // The error as stderr has it, but for the passphrase's: that may quote a
        // password command's stderr, which may hold anything.
        // A key error names its passphrase source (a password file's path): logged as a fixed text.
        if let e = failure, !(e is ExitCode) {
            pairs.append(("error", e is PassphraseError ? "no passphrase (why is on stderr, not logged)"
                                   : e is KeyError ? "the repository's key could not be used (why is on stderr, not logged)" : "\(e)"))
        }
        step("end", pairs)
        if !dryRun { finish(start: start, end: end, duration: duration, code: code) }
        if let e = failure { throw e }
        return result!
    }

    /// The current phase ends with exit status 3 (a snapshot saved with unreadable
    /// files) though its body returns: the legacy backup goes on to its sync.
    func markIncomplete() { phases[phases.count - 1].code = 3 }

    /// Logs one step of the current phase.
    func step(_ name: String, _ details: [(String, String)] = []) {
        var pairs = [("command", phases.last?.command ?? "accord")]
        if let p = phases.last?.plan { pairs.append(("plan", p)) }
        pairs += [("repository", repository), ("step", name)] + details
        log.line(pairs)
    }

    /// A value of the current phase, one of `MetricName.values`.
    func set(_ name: String, _ value: Double) {
        assert(MetricName.values[name] != nil, "\(name) is not in MetricName.values")
        if !phases.isEmpty { phases[phases.count - 1].values[name] = value }
    }

    func record(backup r: BackupResult) {
        let s = r.snapshot.summary
        set("accord_backup_read_bytes", Double(s.bytesRead))
        set("accord_backup_added_bytes", Double(s.addedBytes))
        set("accord_backup_files", Double(s.files))
        step("snapshot", [("id", r.id.short), ("files", String(s.files)), ("read_bytes", String(s.bytesRead)),
                          ("added_bytes", String(s.addedBytes)), ("unreadable", String(s.errors.count))])
    }

    func record(sync s: SyncStats) {
        set("accord_sync_sent_bytes", Double(s.wireBytesSent))
        set("accord_sync_snapshots", Double(s.snapshots))
        step("synced", [("snapshots", String(s.snapshots)), ("blobs", String(s.blobsSent)), ("sent_bytes", String(s.wireBytesSent))])
    }

    func record(check r: CheckReport) {
        set("accord_check_errors", Double(r.errors.count))
        step("checked", [("snapshots", String(r.snapshots)), ("packs", String(r.packs)), ("blobs", String(r.blobs)), ("errors", String(r.errors.count))])
    }

    private func seconds(_ t: (sec: Int64, nsec: Int64)) -> Double { Double(t.sec) + Double(t.nsec / 1_000_000) / 1000 }

    private func labels(plan: Bool) -> [(String, String)] {
        var l: [(String, String)] = []
        if plan, let p = phases.last?.plan { l.append(("plan", p)) }
        l.append(("repository", repository))
        return l
    }

    private func sample(_ suffix: String, _ value: Double) -> MetricSample {
        MetricSample(name: MetricName.command(phases.last!.command, suffix), labels: labels(plan: true), value: value)
    }

    private func finish(start: (sec: Int64, nsec: Int64), end: (sec: Int64, nsec: Int64), duration: Double, code: Int32) {
        let phase = phases.last!
        var samples = [sample("last_start_timestamp_seconds", seconds(start)), sample("duration_seconds", (duration * 1000).rounded() / 1000),
                       sample("exit_code", Double(code)), sample(code == 0 ? "last_success_timestamp_seconds" : "last_failure_timestamp_seconds", seconds(end))]
        // The other outcome is kept from the file; a first run writes 0 there ("never"), so that an alert sees it.
        let never = [sample(code == 0 ? "last_failure_timestamp_seconds" : "last_success_timestamp_seconds", 0)]
        for (name, v) in phase.values.sorted(by: { $0.key < $1.key }) {
            samples.append(MetricSample(name: name, labels: labels(plan: true), value: v))
        }
        if let (snapshots, bytes) = repositoryGauges(repository) {
            samples.append(MetricSample(name: "accord_repository_snapshots", labels: labels(plan: false), value: Double(snapshots)))
            samples.append(MetricSample(name: "accord_repository_size_bytes", labels: labels(plan: false), value: Double(bytes)))
        }
        writeMetrics(samples, ifAbsent: never)
    }

    private func writeMetrics(_ samples: [MetricSample], ifAbsent: [MetricSample] = []) {
        guard let m = metrics else { return }
        do { try m.update(samples, ifAbsent: ifAbsent) } catch {
            // The command's own outcome stands: a stale file shows as no recent success.
            if !warnedMetrics { warn("cannot write the metrics file \(m.path) (\(error)); its series are not updated") }
            warnedMetrics = true
        }
    }
}

/// The `plan` label of a plan backup: the plan's name, as its snapshots and
/// `forget --plan` know it; the argument itself when the plan cannot be
/// loaded (the backup then fails, and that failure is recorded under it).
func planLabel(_ nameOrPath: String?) -> String? {
    guard let p = nameOrPath else { return nil }
    return (try? Plan.load(p))?.name ?? p
}

/// Snapshots and bytes of a repository, from its directory alone (no key, no
/// index): nil when `root` holds no repository. Locks and temporary files do not count.
func repositoryGauges(_ root: String) -> (snapshots: Int, bytes: UInt64)? {
    let layout = RepositoryLayout(root: root)
    guard let config = try? Sys.lstat(layout.configPath), config.isRegular else { return nil }
    var bytes = config.size
    func sizes(_ dir: String, depth: Int) -> Int {
        var files = 0
        for name in (try? Sys.listDirectory(dir)) ?? [] where !name.hasPrefix(".") {
            guard let st = try? Sys.lstat(dir + "/" + name) else { continue }
            if st.isRegular { bytes += st.size; files += 1 } else if st.isDirectory, depth > 0 { files += sizes(dir + "/" + name, depth: depth - 1) }
        }
        return files
    }
    _ = sizes(layout.dataDirectory, depth: 1)
    _ = sizes(layout.indexDirectory, depth: 0)
    _ = sizes(layout.keyDirectory, depth: 0)
    let snapshots = sizes(layout.snapshotDirectory, depth: 0)
    return (snapshots, bytes)
}
