import ArgumentParser
import Foundation
import AccordCore
import AccordEngine
import AccordPlans
import AccordRuntime

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create an empty repository (mode 0700), encrypted by default.",
        discussion: """
        An encrypted repository (format version 3) needs a passphrase: from --password-file, \
        $ACCORD_PASSWORD_FILE, $ACCORD_PASSWORD_COMMAND, the settings file's repository.password-file, \
        or typed twice at a prompt (see `accord key --help`). Lose every passphrase and the backups are \
        gone: keep one off this node, and `accord key export` on paper. `--encryption none` creates a \
        plain repository (version 2).
        """)
    @OptionGroup var repo: RepositoryOptions
    @Option(help: "zlib level 0-9, or off, fast, default, max.")
    var compression: String = "default"
    @Option(help: ArgumentHelp("aes-256-gcm or none (default: $ACCORD_ENCRYPTION, else the settings' repository.encryption, else aes-256-gcm).", valueName: "ALGORITHM"))
    var encryption: String?

    func validate() throws { try validateEncryption(encryption) }

    func run() throws {
        Sys.umask(0o077)
        guard let level = CompressionLevel(name: compression) else { throw ValidationError("--compression \(compression) is not one of off, fast, default, max, 0-9") }
        // Before a prompt asks twice for the passphrase of a repository that cannot be made.
        if repo.isS3 ? try !repo.isVacant() : pathExists(repo.path + "/config") { throw RepositoryError.alreadyInitialized(repo.path) }
        let r = try repo.createRepository(ae5: false, encryption: encryption, compression: level)
        print("created \(r.config.isEncrypted ? "encrypted (aes-256-gcm)" : "plain") repository \(r.config.id.prefix(8)) at \(repo.path)")
    }
}

/// `--encryption` names one of `Passphrase.encryptions`.
func validateEncryption(_ e: String?) throws {
    if let e, !Passphrase.encryptions.contains(e) {
        throw ValidationError("--encryption \(e) is not one of \(Passphrase.encryptions.joined(separator: ", "))")
    }
}

struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back up paths (and command outputs) into a new snapshot.",
        discussion: """
        Creates the repository on first use. Files unchanged since the last snapshot of the same \
        paths on this host (same size, mtime, ctime, inode) are not read again. Unreadable files \
        are skipped with a warning and listed in the snapshot; the exit code is then 3.
        """)
    @OptionGroup var repo: RepositoryOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var monitor: MonitorOptions
    @OptionGroup var lockWait: LockWaitOptions
    @Option(name: .long, help: "Tag the snapshot (repeatable).")
    var tag: [String] = []
    @Option(name: .long, help: ArgumentHelp("Skip paths matching a glob; with '/' it matches the absolute path, else the file name (repeatable).", valueName: "PATTERN"))
    var exclude: [String] = []
    @Option(name: .long, help: ArgumentHelp("Back up a command's stdout as the virtual file NAME (absolute path), chunked with the 'dump' profile (256 KiB chunks, a changed chunk stored as a delta on the last backup's), e.g. /db/dump.sql='pg_dumpall -U postgres' (repeatable).", valueName: "NAME=COMMAND"))
    var command: [String] = []
    @Option(help: "zlib level for new blobs: off, fast, default, max or 0-9 (default: the repository's).")
    var compression: String?
    @Option(name: .long, help: ArgumentHelp("Cut files matching a glob (as --exclude) into the 'dump' profile's 256 KiB chunks, as for --command (but at the repository's compression level, without --command's second pass at level 6): database dumps kept as files change in scattered rows (repeatable; default: *.sql).", valueName: "PATTERN"))
    var dumpFiles: [String] = []
    @Flag(name: .long, help: "Cut every file with the 'tree' profile, *.sql included.")
    var noDumpFiles = false
    @Option(help: "Worker threads (default: one per core).")
    var threads: Int?
    @Option(help: "Host name recorded in the snapshot.")
    var host: String?
    @Flag(help: "Read every file even if unchanged since the parent snapshot.")
    var force = false
    @Flag(help: "Print the snapshot summary as JSON.")
    var json = false
    @Option(help: ArgumentHelp("When this backup creates the repository: aes-256-gcm or none (default: as `accord init`).", valueName: "ALGORITHM"))
    var encryption: String?
    @Option(help: ArgumentHelp("Back up a plan instead of PATHs: ae5, ae5-repos or a YAML plan file (see `accord plan show`).", valueName: "PLAN"))
    var plan: String?
    @Argument(help: ArgumentHelp("Files or directories to back up.", valueName: "PATH"))
    var paths: [String] = []

    func validate() throws {
        if plan != nil && !(paths.isEmpty && command.isEmpty) { throw ValidationError("--plan backs up what the plan names: give no PATH or --command with it") }
        if plan == nil && paths.isEmpty && command.isEmpty { throw ValidationError("give at least one PATH to back up (or --command NAME=COMMAND, or --plan)") }
        if let c = compression, CompressionLevel(name: c) == nil { throw ValidationError("--compression \(c) is not one of off, fast, default, max, 0-9") }
        if let t = threads, t < 1 || t > 256 { throw ValidationError("--threads must be between 1 and 256") }
        try validateEncryption(encryption)
        if noDumpFiles && !dumpFiles.isEmpty { throw ValidationError("--dump-files and --no-dump-files exclude each other") }
        for d in dumpFiles where d.isEmpty { throw ValidationError("--dump-files needs a non-empty glob, e.g. '*.sql'") }
        for c in command {
            guard let eq = c.firstIndex(of: "=") else { throw ValidationError("--command \(c): expected NAME=COMMAND, e.g. /db/dump.sql='pg_dumpall'") }
            // Checked before anything is created: the name becomes a path under every restore target.
            let name = String(c[..<eq])
            if let why = VirtualPath.problem(name) {
                throw ValidationError("--command name \(name.debugDescription) is not allowed: \(why); give an absolute path without . or .. components, like /db/dump.sql")
            }
        }
    }

    func run() throws {
        lockWait.apply()
        try monitor.record(repository: repo.path) { rec in try rec.phase("backup", plan: planLabel(plan)) { try backup(rec) } }
    }

    func backup(_ rec: CommandRecorder) throws {
        // A missing source fails before anything is created.
        for p in paths where (try? Sys.lstat(Array(p.utf8))) == nil {
            throw BackupError.pathNotFound(p)
        }
        // A plan backup is an AE5 flow: its default key file is /etc/accord/repository.key.
        let repository = try repo.open(create: true, ae5: plan != nil, encryption: encryption)
        if let p = plan {
            let (result, warnings) = try runPlanBackup(repository: repository, plan: try Plan.load(p), tags: tag, output: output, threads: threads)
            rec.record(backup: result)
            report(result, json: json, quiet: output.quiet)
            if result.incomplete || !warnings.isEmpty { throw ExitCode(3) }
            return
        }
        var options = BackupOptions()
        let cwd = Sys.currentDirectory()
        options.paths = paths.map { p in
            let bytes = Array(p.utf8)
            return bytes.first == 0x2f ? bytes : cwd + [0x2f] + bytes
        }
        options.commands = command.map { c in
            let eq = c.firstIndex(of: "=")!
            return CommandSource(path: String(c[..<eq]), command: String(c[c.index(after: eq)...]))
        }
        options.excludes = exclude
        if noDumpFiles { options.dumpFiles = [] } else if !dumpFiles.isEmpty { options.dumpFiles = dumpFiles }
        options.tags = tag
        if let h = host { options.host = h }
        options.forceRead = force
        if let t = threads { options.threads = t }
        if let c = compression { options.compression = CompressionLevel(name: c) }
        options.progress = output.makeProgress("backup")
        options.onError = { path, error in warn("cannot read \(path): \(error); skipped") }
        options.onWarning = { if !output.quiet { warn($0) } }
        let result = try runBackup(repository, options)
        rec.record(backup: result)
        report(result, json: json, quiet: output.quiet)
        if !json && !output.quiet, let line = s3RequestSummary(repository) { print(line) }
        if result.incomplete { throw ExitCode(3) }
    }
}

/// Runs a backup under a shared lock, the repository made ready for writing
/// first (index loaded, packs of an interrupted backup adopted). (A plan restore's pre-restore snapshot runs in AccordPlans,
/// under the restore's exclusive lock.)
/// `placingMarker` (a plan backup): the `restore` marker is placed under the
/// same lock, so a plan restore (which holds the exclusive lock and removes
/// the marker) sees the marker and the snapshot together or neither.
func runBackup(_ repository: Repository, _ options: BackupOptions, placingMarker: Bool = false) throws -> BackupResult {
    try withLock(repository, command: "backup") {
        let adopted = try repository.prepareForWriting()
        if adopted > 0 { options.onWarning("indexed \(adopted) pack(s) left by an interrupted backup; their data is reused") }
        let result = try Backup(repository: repository, options: options).run()
        if placingMarker { try repository.placeRestoreMarker() }
        return result
    }
}

func report(_ r: BackupResult, json: Bool, quiet: Bool) {
    let s = r.snapshot.summary
    if json {
        var object = (try? JSONSerialization.jsonObject(with: Data(r.snapshot.encode()))) as? [String: Any] ?? [:]
        object["id"] = r.id.hex
        if !r.notes.isEmpty { object["notes"] = r.notes }
        if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
            print(String(decoding: data, as: UTF8.self))
        }
        return
    }
    if quiet { return }
    print("snapshot \(r.id.short) saved: \(s.files) files, \(s.directories) dirs, \(formatBytes(s.totalBytes)); "
          + "read \(formatBytes(s.bytesRead)), added \(formatBytes(s.addedBytes)) in \(s.addedBlobs) new blobs "
          + (s.addedDeltaBlobs.map { "(\($0) as deltas) " } ?? "")
          + "(\(s.filesUnchanged) files unchanged) in \(String(format: "%.2f", s.durationSeconds)) s")
    if !s.errors.isEmpty {
        print("\(s.errors.count) path(s) could not be read and are missing from the snapshot")
    }
    for n in r.notes { print("note: \(escapedText(n))") }
}
