import ArgumentParser
import Foundation
import AccordCore
import AccordEngine
import AccordRuntime

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Verify the repository's structure (and with --read-data, every byte).",
        discussion: """
        An encrypted repository is checked with its key when a passphrase is given (--password-file, \
        $ACCORD_PASSWORD_FILE, $ACCORD_PASSWORD_COMMAND, the settings' repository.password-file, or a \
        prompt on a terminal). With --without-key, or when no passphrase source is configured and \
        standard input is not a terminal (a DR node that never holds the key), it is checked without \
        the key: every key, index, snapshot and (with --read-data) pack file against the SHA-256 in \
        its name, pack headers against the index files, delta bases; it then says what it could not \
        check (snapshot contents, manifests, blob contents).
        """)
    @OptionGroup var repo: RepositoryOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var monitor: MonitorOptions
    @OptionGroup var lockWait: LockWaitOptions
    @Flag(help: "Print one JSON object on stdout: counts, errors, notes (schema in README.md); human text and progress are left out.")
    var json = false
    @Flag(help: "Read every blob, inflate it and verify its SHA-256.")
    var readData = false
    @Option(help: ArgumentHelp("Read only this share of the packs, e.g. 10%.", valueName: "N%"))
    var readDataSubset: String?
    @Flag(help: "Check an encrypted repository without its key (never ask for a passphrase): every file against its name, pack headers against the index; not blob contents or manifests. Without this flag an encrypted repository needs its key.")
    var withoutKey = false

    func validate() throws {
        if withoutKey && repo.passwordFile != nil { throw ValidationError("--without-key and --password-file exclude each other") }
    }

    /// The repository, with its key unless `--without-key`. Never keyless by
    /// itself: a check that reads no blob must not pass for one that did (a
    /// DR node without its key configured gets the missing-passphrase error,
    /// which names --without-key).
    func openRepository() throws -> Repository {
        if !withoutKey { return try repo.open() }
        Sys.umask(0o077)
        return try repo.openRepository(key: nil, withoutKey: true)
    }

    func run() throws {
        lockWait.apply()
        try monitor.record(repository: repo.path) { rec in try rec.phase("check") { try check(rec) } }
    }

    func check(_ rec: CommandRecorder) throws {
        let repository = try openRepository()
        repository.usesBlobCache = false   // the bucket's bytes are checked, not this machine's copies
        var options = CheckOptions()
        options.readData = readData || readDataSubset != nil
        if let s = readDataSubset {
            guard let p = Double(s.hasSuffix("%") ? String(s.dropLast()) : s), p > 0, p <= 100 else {
                throw ValidationError("--read-data-subset \(s): expected a percentage like 10%")
            }
            options.readDataPercent = p
        }
        options.progress = json ? nil : output.makeProgress("check")
        let report = try withLock(repository, readOnly: true, command: "check") { try Check(repository: repository, options: options).run() }
        rec.record(check: report)
        if json { print(Self.json(report, readData: options.readData)) } else { printText(report, readData: options.readData) }
        if !report.ok {
            Sys.writeStderr("check failed: \(report.errors.count) problem(s) in \(repo.path)\n")
            throw ExitCode(1)
        }
        if !output.quiet && !json { print("no errors found") }
    }

    func printText(_ report: CheckReport, readData: Bool) {
        // Notes and errors may quote names from snapshots: escaped, one line each.
        for n in report.notes where !output.quiet { print("note: \(escapedText(n))") }
        for e in report.errors { Sys.writeStderr("error: \(escapedText(e))\n") }
        if !report.notChecked.isEmpty && !output.quiet {
            print("checked without the repository's key; not checked:")
            for n in report.notChecked { print("  - \(n)") }
            print("run `accord check --read-data` with the passphrase where the key is held to check them")
        }
        if !output.quiet {
            print("checked \(report.snapshots) snapshots, \(report.packs) packs, \(report.blobs) blobs"
                  + (readData ? ", read \(formatBytes(report.bytesRead))" : ""))
        }
    }

    /// `check --json`: one object (schema in README.md, "Looking inside"); texts escaped as in the text output.
    static func json(_ r: CheckReport, readData: Bool) -> String {
        jsonLine(["message_type": "check", "ok": r.ok, "snapshots": r.snapshots, "packs": r.packs, "blobs": r.blobs,
                  "read_data": readData, "bytes_read": r.bytesRead, "errors": r.errors.map(escapedText),
                  "notes": r.notes.map(escapedText), "not_checked": r.notChecked.map(escapedText)])
    }
}

struct Unlock: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove stale and unreadable locks; --all removes every lock.",
        discussion: """
        A lock is stale when it was not refreshed for 30 minutes, is dated more than 30 minutes in \
        the future, or (on this host) its process is gone, its pid now belongs to another process, \
        or the host rebooted since. An unreadable lock file (or one that is not lock JSON) blocks \
        prune, forget and other exclusive commands until removed. Live locks are listed and kept \
        unless --all is given.
        """)
    @OptionGroup var repo: RepositoryOptions
    @Flag(help: "Remove all locks, even live ones. Only when no accord is running on the repository.")
    var all = false
    @Flag(help: "Remove only stale and unreadable locks (the default).")
    var stale = false

    func validate() throws {
        if all && stale { throw ValidationError("--all and --stale exclude each other") }
    }

    func run() throws {
        if repo.isS3 { return try unlockObjects() }
        // Only the lock directory is touched: unlock works even when the config cannot be read.
        let layout = RepositoryLayout(root: repo.path)
        guard (try? Sys.lstat(layout.configPath)) != nil, (try? Sys.stat(Array(layout.lockDirectory.utf8)))?.isDirectory == true else {
            throw RepositoryError.notARepository(repo.path)
        }
        let (removed, live, left) = try RepositoryLock.removeLocks(layout, all: all)
        for r in removed { print("removed \(escapedText(r))") }
        if removed.isEmpty { print(all ? "no locks" : "no stale locks") }
        for l in live { print("kept live \(escapedText(l))") }
        if !live.isEmpty {
            print("\(live.count) live lock(s) kept: if no accord is running on \(repo.path), remove them with `accord unlock --all -d \(repo.path)`")
        }
        for l in left { Sys.writeStderr("error: \(escapedText(l))\n") }
        if !left.isEmpty { throw ExitCode.failure }
    }

    /// The same on an `s3:` repository: its lock objects (`ObjectLock`).
    func unlockObjects() throws {
        let backend = try repo.s3Backend()
        guard try !backend.list(.config).isEmpty else { throw RepositoryError.notARepository(repo.path) }
        let (removed, live) = try ObjectLock.removeLocks(backend, all: all)
        for r in removed { print("removed \(escapedText(r))") }
        if removed.isEmpty { print(all ? "no locks" : "no stale locks") }
        for l in live { print("kept live \(escapedText(l))") }
        if !live.isEmpty {
            print("\(live.count) live lock(s) kept: if no accord is running on \(repo.path), remove them with `accord unlock --all -d \(repo.path)`")
        }
    }
}
