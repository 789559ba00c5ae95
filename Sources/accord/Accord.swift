import ArgumentParser
import AccordCore
import AccordEngine
import AccordPlans
import AccordSync
import AccordRuntime
import AccordS3

@main
enum Main {
    /// `accord -a backup|restore …` is the original tool's command line; it is
    /// parsed by `Legacy` so its flags never collide with the subcommands'.
    static func main() {
        Sys.tuneMalloc()
        let args = Array(CommandLine.arguments.dropFirst())
        // Flags first (as the original tool took them) → the original command line;
        // help, version, completions and the dump `make man` reads describe the subcommands.
        if let first = args.first, first.hasPrefix("-"), !["-h", "--help", "--version", "--generate-completion-script", "--experimental-dump-help"].contains(first) {
            run(Legacy.self, args)
        } else {
            run(Accord.self, args)
        }
    }

    /// `C.main(args)`, but an error of a command's own (exit status 1) is printed
    /// through `escapedText`: it may quote a name from a snapshot, which must
    /// not fake lines or send escape sequences to the terminal.
    static func run<C: ParsableCommand>(_ type: C.Type, _ args: [String]) {
        do {
            var command = try type.parseAsRoot(args)
            try command.run()
        } catch {
            if !(error is ExitCode), type.exitCode(for: error) == .failure {
                let message = type.fullMessage(for: error)
                if !message.isEmpty { Sys.writeStderr(escapedText(message) + "\n") }
                type.exit(withError: ExitCode.failure)
            }
            type.exit(withError: error)
        }
    }
}

struct Accord: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "accord",
        abstract: "Content-addressed, incremental backup and disaster recovery for Anaconda Enterprise 5.",
        usage: """
        accord -a backup [-d DIR] [--repos-only] [-s -u USER -n NODE] [--ingress]
        accord -a restore [-d DIR] [--repos-only] [--no-config] [--override] [--ingress]
        accord <subcommand> [options]
        """,
        discussion: """
        The original accord command line still works: `accord -a backup` backs up the whole AE5 \
        cluster with the built-in ae5 plan (or ae5-repos with --repos-only), `accord -a restore` \
        restores it. The repository (default /opt/anaconda_backup, or $ACCORD_REPOSITORY, or -d DIR) \
        holds deduplicated, compressed snapshots. Other typical use:

          accord backup -d /backups /opt/anaconda/storage
          accord snapshots list -d /backups
          accord restore -d /backups latest --target /tmp/restored
          accord sync -d /backups --to root@dr-node
          accord check -d /backups --read-data
          accord key list -d /backups          (new repositories are encrypted: see `accord key --help`)

        Exit codes: 0 success, 1 error, 3 backup completed but some files could not be read.
        """,
        version: AccordVersion.text,
        subcommands: [Init.self, BackupCommand.self, Key.self, Snapshots.self, Ls.self, DumpCommand.self,
                      RestoreCommand.self, CheckCommand.self, Unlock.self, SyncCommand.self, Serve.self,
                      PlanCommand.self, ForgetCommand.self, PruneCommand.self, Repair.self, DiffCommand.self, StatsCommand.self, FindCommand.self, MountCommand.self, VersionCommand.self]
    )
}

/// The original accord command line: `accord -a backup|restore [flags]`.
struct Legacy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "accord",
        abstract: "The original accord command line: back up or restore a whole AE5 cluster.",
        usage: """
        accord -a backup [-d DIR] [--repos-only] [-s -u USER -n NODE] [--ingress] [--plan PLAN]
        accord -a restore [-d DIR] [--repos-only] [--no-config] [--override] [--ingress] [--wait-timeout S]
        """,
        discussion: "See `accord --help` for the subcommands (backup, restore, snapshots, sync, check, …).",
        version: AccordVersion.text)

    @Option(name: [.customShort("a"), .customLong("action")], help: ArgumentHelp("The original tool's action: backup or restore.", valueName: "ACTION"))
    var action: String?
    @OptionGroup var repo: RepositoryOptions
    @OptionGroup var output: OutputOptions
    @Flag(help: "Only the package repository (plan ae5-repos): its database and object tree.")
    var reposOnly = false
    @Option(help: "Plan to use instead of ae5/ae5-repos: a built-in name or a YAML file.")
    var plan: String?
    @Flag(name: [.customShort("s"), .customLong("sync")], help: "After the backup, sync it to NODE (needs -u and -n).")
    var sync = false
    @Option(name: [.customShort("u"), .customLong("user")], help: "ssh user on the DR node.")
    var user: String?
    @Option(name: [.customShort("n"), .customLong("node")], help: "DR node to sync the backup to (its repository is the same -d).")
    var node: String?
    @Flag(help: "Restore the saved ingress objects too.")
    var ingress = false
    @Flag(help: "Do not restore the platform configmap.")
    var noConfig = false
    @Flag(help: "Restore even without the `restore` marker.")
    var override = false
    @Option(help: "Seconds to wait for each scale/pod wait (overrides the plan's timeouts).")
    var waitTimeout: Int?
    @Option(help: "Snapshot to restore (default: the latest of the plan).")
    var snapshot: String?
    @OptionGroup var syncOptions: SyncOptions
    @OptionGroup var monitor: MonitorOptions
    @OptionGroup var lockWait: LockWaitOptions

    func validate() throws {
        guard let a = action else {
            if reposOnly || sync || user != nil || node != nil || noConfig || override || ingress || plan != nil || waitTimeout != nil || snapshot != nil {
                throw ValidationError("these flags belong to -a backup|restore: give -a backup or -a restore")
            }
            return
        }
        guard a == "backup" || a == "restore" else { throw ValidationError("-a must be backup or restore, not \(a)") }
        if (user == nil) != (node == nil) { throw ValidationError("-u USER and -n NODE go together") }
        if sync && node == nil { throw ValidationError("-s needs -u USER and -n NODE") }
        if a == "restore" && (sync || node != nil) { throw ValidationError("-s/-u/-n apply to -a backup; run the restore on the DR node itself") }
        if let t = waitTimeout, t <= 0 { throw ValidationError("--wait-timeout must be a positive number of seconds") }
        if let n = node, n.isEmpty || n.contains(" ") { throw ValidationError("-n \(n) is not a host name") }
        if node != nil && repo.isS3 {
            throw ValidationError("-n sends the repository to the same directory on the DR node, and \(repo.path) is a bucket: "
                                  + "back up, then send it with `accord sync -d \(repo.path) --to USER@NODE:DIR --marker`")
        }
    }

    func run() throws {
        guard let a = action else {
            print(Legacy.helpMessage())
            return
        }
        let name = plan ?? (reposOnly ? "ae5-repos" : "ae5")
        lockWait.apply()
        if a == "backup" {
            try monitor.record(repository: repo.path) { rec in try legacyBackup(name, rec) }
        } else { try legacyRestore(try Plan.load(name)) }
    }

    /// The backup, then the sync: two phases, so that a failed sync leaves the backup's success recorded.
    func legacyBackup(_ name: String, _ rec: CommandRecorder) throws {
        let (repository, result, warnings, dest) = try rec.phase("backup", plan: planLabel(name)) { try legacyBackupOnly(try Plan.load(name), rec) }
        if let d = dest {
            try rec.phase("sync", plan: planLabel(name)) {
                let stats = try withLock(repository, command: "sync") {
                    return try runSync(repository, to: d, syncOptions, only: [result.id], marker: true, progress: output.makeProgress("sync"))
                }
                rec.record(sync: stats)
                printSyncStats(stats, to: d, json: false, quiet: output.quiet)
            }
        }
        if result.incomplete || !warnings.isEmpty { throw ExitCode(3) }
    }

    /// Probes the DR node (before any backup work, as the original did), then backs up the plan.
    func legacyBackupOnly(_ plan: Plan, _ rec: CommandRecorder) throws -> (Repository, BackupResult, [String], Destination?) {
        let repository = try repo.open(create: true, ae5: true)
        var dest: Destination?
        if let n = node {
            let d = Destination(user: user, host: n, directory: repo.path)
            // As the original did: test the DR node before any backup work.
            try withLock(repository, command: "sync probe") { try probeSync(repository, to: d, syncOptions) }
            rec.step("sync probe", [("outcome", "ok")])
            if !output.quiet { print("DR node \(d) reachable; destination repository ready") }
            dest = d
        }
        let (result, warnings) = try runPlanBackup(repository: repository, plan: plan, tags: [], output: output, threads: nil)
        rec.record(backup: result)
        if result.incomplete || !warnings.isEmpty { rec.markIncomplete() }   // exit 3 recorded; the sync still runs
        report(result, json: false, quiet: output.quiet)
        return (repository, result, warnings, dest)
    }

    func legacyRestore(_ plan: Plan) throws {
        var o = PlanRestoreOptions()
        o.override = override
        o.noConfig = noConfig
        o.ingress = ingress
        o.waitTimeout = waitTimeout
        let quiet = output.quiet
        o.log = { if !quiet { print("restore: \($0)") } }
        try runPlanRestore(repo, plan: plan, snapshot: snapshot, options: o)
    }
}

/// The repository options every command shares: where it is, and where its passphrase comes from.
struct RepositoryOptions: ParsableArguments {
    @Option(name: [.customShort("d"), .customLong("directory"), .customLong("repo")],
            help: ArgumentHelp("Repository directory, or s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX] for a bucket (credentials from $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY or $AWS_PROFILE, or with $ACCORD_S3_CREDENTIALS=instance-metadata from an instance's IAM role; default: $ACCORD_REPOSITORY or /opt/anaconda_backup).", valueName: "DIR"))
    var directory: String?
    @Option(name: .customLong("s3-ca-file"), help: ArgumentHelp("PEM file of the CAs that sign an s3: repository's TLS certificate, instead of the system's (default: $ACCORD_S3_CA_FILE).", valueName: "PATH"))
    var s3CAFile: String?
    @Option(name: .customLong("s3-bucket-lookup"), help: ArgumentHelp("How requests to an s3: repository name its bucket: path (HOST/BUCKET/KEY), dns (BUCKET.HOST/KEY, virtual-hosted: BUCKET.HOST must resolve) or auto: dns for an Amazon S3 endpoint without a port, else path (default: $ACCORD_S3_BUCKET_LOOKUP, else auto).", valueName: "auto|path|dns"))
    var s3BucketLookup: S3BucketLookup?
    @Flag(name: .customLong("no-cache"), help: "Do not use the local cache of an s3: repository's index files, snapshots and tree blobs ($ACCORD_CACHE_DIR, else $XDG_CACHE_HOME/accord or ~/.cache/accord).")
    var noCache = false
    @Option(help: ArgumentHelp("Read the passphrase of an encrypted repository from FILE (one line; as root it must be root's, with no group or other access: chmod 600). Else $ACCORD_PASSWORD_FILE, $ACCORD_PASSWORD_COMMAND, the settings file's repository.password-file, or a prompt: see `accord key --help`.", valueName: "FILE"))
    var passwordFile: String?

    var path: String {
        if let d = directory, !d.isEmpty { return d }
        if let env = Sys.environment("ACCORD_REPOSITORY"), !env.isEmpty { return env }
        return "/opt/anaconda_backup"
    }

    /// Where the passphrase comes from (`Passphrase`); `ae5` adds the AE5 flows' default key file.
    func keyOrigin(ae5: Bool = false) throws -> Passphrase.Origin {
        try Passphrase.origin(option: passwordFile, ae5: ae5) { try Passphrase.settings() }
    }

    /// Opens the repository with files 0600, dirs 0700. With `create`, a
    /// missing (or empty) repository is created as `createRepository` says.
    func open(create: Bool = false, ae5: Bool = false, encryption: String? = nil) throws -> Repository {
        Sys.umask(0o077)
        if create, try isVacant() { return try createRepository(ae5: ae5, encryption: encryption, compression: .default, racing: true) }
        var origin = try keyOrigin(ae5: ae5)
        // A default key file that does not exist configures nothing: a plain repository opens.
        if case .defaultFile(let f) = origin, !pathExists(f) { origin = .prompt }
        return try openRepository(key: Passphrase.source(origin, repository: path))
    }

    /// Opens the repository as it is, with `key` or, without one, keyless
    /// (`Repository.open(at:)` or, for an `s3:` location, `open(backend:)`).
    func openRepository(key: KeySource?, withoutKey: Bool = false) throws -> Repository {
        if isS3 { return try Repository.open(backend: try cachedS3Backend(), key: key, withoutKey: withoutKey) }
        return try Repository.open(at: path, key: key, withoutKey: withoutKey)
    }

    /// Creates a repository: encrypted unless `encryption` (else $ACCORD_ENCRYPTION,
    /// else the settings' repository.encryption) says none. An AE5 flow whose
    /// key file (the settings' password-file, else /etc/accord/repository.key)
    /// is missing creates it first. `racing`: a
    /// backup's first use, where a concurrent first backup may have created it.
    func createRepository(ae5: Bool, encryption: String?, compression: CompressionLevel, racing: Bool = false) throws -> Repository {
        Sys.umask(0o077)
        let (encrypted, why) = try Self.encryption(encryption)
        let origin = try keyOrigin(ae5: ae5)
        // The AE5 flows' key file (the settings' password-file, else the default)
        // counts only once it exists: they create it for an encrypted repository.
        var nodeKeyFile: String?
        switch origin {
        case .settings(let f, _) where ae5, .defaultFile(let f): nodeKeyFile = f
        default: break
        }
        let configured = nodeKeyFile.map(pathExists) ?? (origin != .prompt)
        if !encrypted, configured {
            throw CommandFailure("\(why) asks for a plain repository, but a passphrase is configured (\(origin.description)), and a client with a passphrase refuses a plain repository: drop one of the two")
        }
        if encrypted, let file = nodeKeyFile, !pathExists(file) {
            try Passphrase.createKeyFile(file, repository: path)
        }
        let config = RepositoryConfig.new(compression: compression, encrypted: encrypted)
        let key = Passphrase.source(origin, repository: path, confirm: true)
        do {
            if isS3 { return try Repository.initialize(backend: try s3Backend(), config: config, key: encrypted ? key : nil) }
            return try Repository.initialize(at: path, config: config, key: encrypted ? key : nil)
        } catch RepositoryError.alreadyInitialized where racing {
            return try openRepository(key: Passphrase.source(origin, repository: path))
        }
    }

    /// True when `path` holds no repository yet: missing, or an empty directory
    /// (dot files and a `restore` marker aside), as `Repository.open(create:)` decides;
    /// for an `s3:` location, no config object under its prefix.
    func isVacant() throws -> Bool {
        if isS3 { return try s3Backend().list(.config).isEmpty }
        guard let st = try? Sys.stat(Array(path.utf8)) else { return true }
        guard st.isDirectory, !pathExists(path + "/config") else { return false }
        return (try? Sys.listDirectory(path))?.allSatisfy { $0.hasPrefix(".") || $0 == "restore" } ?? false
    }

    /// Whether a new repository is encrypted, and what decided it (for messages).
    static func encryption(_ option: String?) throws -> (Bool, String) {
        if let o = option { return (o != "none", "--encryption \(o)") }
        if let e = Sys.environment(Passphrase.encryptionVariable), !e.isEmpty {
            guard Passphrase.encryptions.contains(e) else {
                throw CommandFailure("$\(Passphrase.encryptionVariable)=\(e) is not one of \(Passphrase.encryptions.joined(separator: ", "))")
            }
            return (e != "none", "$\(Passphrase.encryptionVariable)=\(e)")
        }
        let s = try Passphrase.settings()
        if let e = s.repository.encryption { return (e != "none", "repository.encryption: \(e) in \(s.path ?? Settings.path)") }
        return (true, "the default (aes-256-gcm)")
    }
}

/// lstat succeeds: a dangling link exists too.
func pathExists(_ path: String) -> Bool { (try? Sys.lstat(Array(path.utf8))) != nil }

struct OutputOptions: ParsableArguments {
    @Flag(help: "Show progress on stderr even when it is not a terminal.")
    var progress = false
    @Flag(name: .shortAndLong, help: "Print only errors.")
    var quiet = false

    func makeProgress(_ verb: String) -> Progress? {
        if quiet { return nil }
        return Progress(verb: verb, enabled: progress || Sys.isTerminal(2))
    }
}

/// Prints a warning on stderr; names from snapshots or sources in it are escaped (`escapedText`).
func warn(_ message: String) {
    Sys.writeStderr("warning: \(escapedText(message))\n")
}

func printOut(_ s: String) {
    print(s)
}

/// Takes the repository lock for the length of `body`, waiting up to the
/// command's `--retry-lock` (`LockWait`) for a live holder.
/// Readers (`readOnly`) go on without a lock when none can be written (full or
/// read-only disk, or on s3 credentials that may only read, as a DR bucket's
/// restore credentials may): they change nothing, and a restore is what a full disk needs.
func withLock<T>(_ repo: Repository, exclusive: Bool = false, readOnly: Bool = false,
                 command: String, _ body: () throws -> T) throws -> T {
    try withLock(repo, exclusive: exclusive, readOnly: readOnly, overlapsSettle: false, command: command) { _ in try body() }
}

/// `withLock` for a reader that verifies every blob it uses (`restore`),
/// whose lock on an object store takes its second look while `body` works
/// (`ObjectLock.acquire(_:command:deferringSecondLook:settle:warn:)`):
/// `body` gets `settled` (`SecondLookGate.settled`), which waits for that
/// look and throws the conflict it found (or, when neither it nor a look
/// taken then could list the locks, that failure); `body` calls it before it
/// first removes or replaces anything it did not make itself
/// (`RestoreOptions.beforeReplacing`), so the look still comes before any
/// harm a racing prune could make of it. A look `body` did not meet through
/// `settled` is said when it ends, failed or not.
func withLock<T>(_ repo: Repository, exclusive: Bool = false, readOnly: Bool = false, overlapsSettle: Bool,
                 command: String, _ body: (_ settled: @escaping @Sendable () throws -> Void) throws -> T) throws -> T {
    let lock: any HeldLock
    do {
        lock = try repo.acquireLock(exclusive: exclusive, command: command, retryFor: LockWait.seconds,
                                    deferringSecondLook: overlapsSettle && readOnly && !exclusive, waiting: LockWait.say, warn: warn)
    } catch let e as SystemError where readOnly && (e.isNoSpace || e.errno == 30 /* EROFS */) {
        warn("cannot write a lock file in \(repo.layout.lockDirectory) (\(e)); continuing without a lock, as `\(command)` only reads")
        return try body({})
    } catch where readOnly && repo.local == nil && !(error is RepositoryError) {
        // Read-only credentials (the PUT denied), or the store failing: go on reading, but a restore
        // still looks at the locks (and needs to list them) before it first replaces anything in its target.
        warn("cannot write a lock object in \(repo.layout.root) (\(error)); continuing without a lock, as `\(command)` only reads")
        return try body({ try repo.lookAtOtherLocks() })
    }
    defer { release(lock) }
    let gate = SecondLookGate(lock, root: repo.layout.root, command: command)
    let result: T
    do { result = try body({ try gate.settled() }) } catch {
        if let w = gate.unmetWarning() { warn(w) }
        throw error
    }
    if let w = gate.unmetWarning() { warn(w) }
    return result
}

/// Releases a lock; a lock object that could not be deleted (credentials that
/// may not, as a DR bucket's) is said on stderr, once.
func release(_ lock: any HeldLock) {
    lock.release()
    guard let o = lock as? ObjectLock, let failure = o.releaseFailure else { return }
    var why = "\(failure)"
    if case S3Error.deleteDenied(_, _, _, let code) = failure { why = "these credentials may not delete (\(code))" }
    warn("the lock object \(o.object) is left in place, marked released: \(why); no command waits for it, and the next one with a shared lock takes it over")
}


