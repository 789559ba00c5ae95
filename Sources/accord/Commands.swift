import ArgumentParser
import Foundation
import AccordCore
import AccordEngine
import AccordPlans
import AccordRuntime

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create an empty repository (mode 0700).")
    @OptionGroup var repo: RepositoryOptions
    @Option(help: "zlib level 0-9, or off, fast, default, max.")
    var compression: String = "default"

    func run() throws {
        Sys.umask(0o077)
        guard let level = CompressionLevel(name: compression) else { throw ValidationError("--compression \(compression) is not one of off, fast, default, max, 0-9") }
        let r = try Repository.initialize(at: repo.path, compression: level)
        print("created repository \(r.config.id.prefix(8)) at \(repo.path)")
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
    @Option(name: .long, help: "Tag the snapshot (repeatable).")
    var tag: [String] = []
    @Option(name: .long, help: ArgumentHelp("Skip paths matching a glob; with '/' it matches the absolute path, else the file name (repeatable).", valueName: "PATTERN"))
    var exclude: [String] = []
    @Option(name: .long, help: ArgumentHelp("Back up a command's stdout as the virtual file NAME (absolute path), chunked with the small 'dump' profile, e.g. /db/dump.sql='pg_dumpall -U postgres' (repeatable).", valueName: "NAME=COMMAND"))
    var command: [String] = []
    @Option(help: "zlib level for new blobs: off, fast, default, max or 0-9 (default: the repository's).")
    var compression: String?
    @Option(name: .long, help: ArgumentHelp("Cut files matching a glob (as --exclude) with the small 'dump' profile, as database dumps kept as files change in scattered rows (repeatable; default: *.sql).", valueName: "PATTERN"))
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
    @Option(help: ArgumentHelp("Back up a plan instead of PATHs: ae5, ae5-repos or a YAML plan file (see `accord plan show`).", valueName: "PLAN"))
    var plan: String?
    @Argument(help: ArgumentHelp("Files or directories to back up.", valueName: "PATH"))
    var paths: [String] = []

    func validate() throws {
        if plan != nil && !(paths.isEmpty && command.isEmpty) { throw ValidationError("--plan backs up what the plan names: give no PATH or --command with it") }
        if plan == nil && paths.isEmpty && command.isEmpty { throw ValidationError("give at least one PATH to back up (or --command NAME=COMMAND, or --plan)") }
        if let c = compression, CompressionLevel(name: c) == nil { throw ValidationError("--compression \(c) is not one of off, fast, default, max, 0-9") }
        if let t = threads, t < 1 || t > 256 { throw ValidationError("--threads must be between 1 and 256") }
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
        // A missing source fails before anything is created.
        for p in paths where (try? Sys.lstat(Array(p.utf8))) == nil {
            throw BackupError.pathNotFound(p)
        }
        let repository = try repo.open(create: true)
        if let p = plan {
            let (result, warnings) = try runPlanBackup(repository: repository, plan: try Plan.load(p), tags: tag, output: output, threads: threads)
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
        report(result, json: json, quiet: output.quiet)
        if result.incomplete { throw ExitCode(3) }
    }
}

/// Opens the index, adopts packs of an interrupted backup, runs the backup under
/// a shared lock, or under the caller's when `lockHeld` (a plan restore's
/// pre-restore snapshot, taken while the restore holds its exclusive lock).
func runBackup(_ repository: Repository, _ options: BackupOptions, lockHeld: Bool = false) throws -> BackupResult {
    func body() throws -> BackupResult {
        try repository.loadIndex()
        let adopted = try repository.adoptUnindexedPacks()
        if adopted > 0 { options.onWarning("indexed \(adopted) pack(s) left by an interrupted backup; their data is reused") }
        return try Backup(repository: repository, options: options).run()
    }
    if lockHeld { return try body() }
    return try withLock(repository, command: "backup", body)
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

struct Snapshots: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List snapshots.", subcommands: [List.self], defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List snapshots, oldest first.")
        @OptionGroup var repo: RepositoryOptions
        @Flag(help: "Print one JSON array.")
        var json = false

        func run() throws {
            let repository = try repo.open()
            let all = try repository.snapshots { id, error in warn("snapshot \(id.short) is unreadable: \(error)") }
            for (id, s) in all where Repository.isDatedInFuture(s) {
                warn("snapshot \(id.short) is dated \(s.time.short) UTC, in the future: suspect (a wrong clock or a forged snapshot); `latest` skips it and forget's --keep rules do not count it")
            }
            if json {
                var array: [[String: Any]] = []
                for (id, s) in all {
                    var o = (try? JSONSerialization.jsonObject(with: Data(s.encode()))) as? [String: Any] ?? [:]
                    o["id"] = id.hex
                    o["short_id"] = id.short
                    array.append(o)
                }
                let data = try JSONSerialization.data(withJSONObject: array, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            var rows = [["ID", "Time (UTC)", "Host", "Tags", "Paths", "Files", "Size", "Added"]]
            for (id, s) in all {
                let roots = s.sources.filter { $0.kind == "path" }.map(\.path)
                let virtual = s.sources.count - roots.count
                let paths = (roots + (virtual > 0 ? ["+\(virtual) virtual"] : [])).joined(separator: " ")
                rows.append([id.short, s.time.short, escapedText(s.host), escapedText(s.tags.joined(separator: ",")), escapedText(paths),
                             String(s.summary.files), formatBytes(s.summary.totalBytes), formatBytes(s.summary.addedBytes)])
            }
            printTable(rows)
            print("\(all.count) snapshot(s)")
        }
    }
}

func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    var widths = [Int](repeating: 0, count: first.count)
    for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
    for (n, r) in rows.enumerated() {
        let line = r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        print(line)
        if n == 0 { print(String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1))) }
    }
}

struct Ls: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the paths in a snapshot.",
        discussion: """
        Names come from the snapshot and are printed escaped, one per line: a backslash as \\\\, \
        newline, tab and carriage return as \\n, \\t, \\r, other control bytes and bytes that are \
        not UTF-8 as \\xHH (ESC is \\x1b), and C1, line-separator and bidirectional control \
        characters as \\u{XXXX}; so a name can neither fake a line nor send escape sequences to \
        the terminal. With -0 each path is printed raw and ends with a NUL byte, as `find -print0` \
        (for `xargs -0`).
        """)
    @OptionGroup var repo: RepositoryOptions
    @Flag(name: .shortAndLong, help: "Show type, mode, owner, size and mtime.")
    var long = false
    @Flag(name: .customShort("0"), help: "Print raw paths, each ended by a NUL byte instead of a newline (no escaping).")
    var null = false
    @Argument(help: "Snapshot id, unique id prefix, or 'latest'.")
    var snapshot: String

    func validate() throws {
        if long && null { throw ValidationError("-0 prints bare paths: leave out --long") }
    }

    func run() throws {
        let repository = try repo.open()
        // Snapshot first, index second: a snapshot's index is written before it, never after.
        let id = try repository.resolveSnapshot(snapshot, warn: warn)
        let s = try repository.loadSnapshot(id)
        try repository.loadIndex()
        var reader = repository.manifestReader(s, id: id)
        var out: [UInt8] = []
        while let e = try reader.next() {
            if null {
                out += e.path
                out.append(0)
            } else {
                if long {
                    let kind: String = ["", "-", "d", "l", "h", "s"][Int(e.kind.rawValue)]
                    let mode = String(e.mode, radix: 8)
                    let t = Timestamp(seconds: e.mtimeSec, nanoseconds: e.mtimeNsec).short
                    out += Array("\(kind) \(String(repeating: "0", count: max(0, 4 - mode.count)) + mode) \(e.uid):\(e.gid) \(String(e.size).leftPad(12)) \(t) ".utf8)
                }
                out += Array(escapedName(e.path).utf8)
                if e.kind == .symlink || e.kind == .hardlink { out += Array(" -> ".utf8) + Array(escapedName(e.linkTarget).utf8) }
                out.append(0x0a)
            }
            if out.count > 1 << 16 { try out.withUnsafeBytes { try Sys.writeStdout($0) }; out.removeAll(keepingCapacity: true) }
        }
        try out.withUnsafeBytes { try Sys.writeStdout($0) }
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write one file (or command output) from a snapshot to stdout.")
    @OptionGroup var repo: RepositoryOptions
    @Argument(help: "Snapshot id, unique id prefix, or 'latest'.")
    var snapshot: String
    @Argument(help: "Absolute path of the file in the snapshot (see `accord ls`).")
    var path: String

    func run() throws {
        let repository = try repo.open()
        let id = try repository.resolveSnapshot(snapshot)
        let s = try repository.loadSnapshot(id)
        try repository.loadIndex()
        var reader = repository.manifestReader(s, id: id)
        let wanted = Array(path.utf8)
        while let e = try reader.next() {
            if e.path == wanted {
                guard e.kind == .file || e.kind == .stream else {
                    throw ValidationError("\(escapedText(path)) in snapshot \(id.short) is a \(e.kind), not a file")
                }
                let inflater = Inflater()
                var scratch: [UInt8] = [], plain: [UInt8] = []
                for b in e.blobs {
                    try repository.readBlob(b, inflater: inflater, scratch: &scratch, into: &plain)
                    try plain.withUnsafeBytes { try Sys.writeStdout($0) }
                }
                return
            }
        }
        throw ValidationError("no file \(escapedText(path)) in snapshot \(id.short): see `accord ls \(id.short)`")
    }
}

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a snapshot under a target directory.",
        discussion: "Paths keep their absolute form under the target: /opt/x restored to --target /tmp/r lands in /tmp/r/opt/x.")
    @OptionGroup var repo: RepositoryOptions
    @OptionGroup var output: OutputOptions
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
        if let p = plan {
            var o = PlanRestoreOptions()
            o.override = override; o.noConfig = noConfig; o.ingress = ingress; o.waitTimeout = waitTimeout
            let quiet = output.quiet
            o.log = { if !quiet { print("restore: \($0)") } }
            try runPlanRestore(repoPath: repo.path, plan: try Plan.load(p), snapshot: snapshot, options: o)
            return
        }
        let snapshot = self.snapshot!
        let repository = try repo.open()
        Sys.umask(0)
        let result: RestoreResult = try withLock(repository, readOnly: true, command: "restore") {
            let id = try repository.resolveSnapshot(snapshot)
            let s = try repository.loadSnapshot(id)
            try repository.loadIndex()
            let cwd = Sys.currentDirectory()
            let t = target.map { Array($0.utf8) } ?? [0x2f]
            var options = RestoreOptions(target: t.first == 0x2f ? t : cwd + [0x2f] + t)
            options.includes = include.map { Array($0.utf8) }
            if let n = threads { options.threads = n }
            options.progress = output.makeProgress("restore")
            options.onError = { path, error in Sys.writeStderr("error: cannot restore \(escapedText(path)): \(escapedText("\(error)"))\n") }
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

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Verify the repository's structure (and with --read-data, every byte).")
    @OptionGroup var repo: RepositoryOptions
    @OptionGroup var output: OutputOptions
    @Flag(help: "Read every blob, inflate it and verify its SHA-256.")
    var readData = false
    @Option(help: ArgumentHelp("Read only this share of the packs, e.g. 10%.", valueName: "N%"))
    var readDataSubset: String?

    func run() throws {
        let repository = try repo.open()
        var options = CheckOptions()
        options.readData = readData || readDataSubset != nil
        if let s = readDataSubset {
            guard let p = Double(s.hasSuffix("%") ? String(s.dropLast()) : s), p > 0, p <= 100 else {
                throw ValidationError("--read-data-subset \(s): expected a percentage like 10%")
            }
            options.readDataPercent = p
        }
        options.progress = output.makeProgress("check")
        let report = try withLock(repository, readOnly: true, command: "check") { try Check(repository: repository, options: options).run() }
        // Notes and errors may quote names from snapshots: escaped, one line each.
        for n in report.notes where !output.quiet { print("note: \(escapedText(n))") }
        for e in report.errors { Sys.writeStderr("error: \(escapedText(e))\n") }
        if !output.quiet {
            print("checked \(report.snapshots) snapshots, \(report.packs) packs, \(report.blobs) blobs"
                  + (options.readData ? ", read \(formatBytes(report.bytesRead))" : ""))
        }
        if !report.ok {
            Sys.writeStderr("check failed: \(report.errors.count) problem(s) in \(repo.path)\n")
            throw ExitCode(1)
        }
        if !output.quiet { print("no errors found") }
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
}

// MARK: Printing names from a snapshot

/// A name from a snapshot (or any untrusted bytes) made safe to print on a
/// terminal, one line: `\\` for a backslash, `\n` `\t` `\r` for those,
/// `\xHH` for other control bytes (0x00-0x1f, 0x7f, ESC is `\x1b`) and for
/// bytes that are not UTF-8, and `\u{XXXX}` for C1 controls (U+0080-U+009F),
/// line/paragraph separators and bidirectional controls. Printable UTF-8 is
/// kept as it is. `ls -0` prints names raw instead.
func escapedName<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    escape(bytes, backslash: true)
}

/// A message that may quote untrusted names (errors, notes): as `escapedName`,
/// but a backslash stays as it is.
func escapedText(_ s: String) -> String {
    escape(s.utf8, backslash: false)
}

private func escape<C: Collection>(_ bytes: C, backslash: Bool) -> String where C.Element == UInt8 {
    // Fast path: printable ASCII only.
    if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && ($0 != 0x5c || !backslash) }) { return String(decoding: bytes, as: UTF8.self) }
    let hex = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count + 16)
    func byteEscape(_ b: UInt8) { out += [0x5c, 0x78, hex[Int(b >> 4)], hex[Int(b & 15)]] }
    var parser = Unicode.UTF8.ForwardParser()
    var pending = Array(bytes)[...]
    while !pending.isEmpty {
        var sub = pending.makeIterator()
        switch parser.parseScalar(from: &sub) {
        case .valid(let unit):
            let scalar = Unicode.UTF8.decode(unit)
            let raw = Array(unit)
            pending = pending.dropFirst(raw.count)
            let v = scalar.value
            switch v {
            case 0x5c where backslash: out += [0x5c, 0x5c]
            case 0x0a: out += [0x5c, 0x6e]
            case 0x09: out += [0x5c, 0x74]
            case 0x0d: out += [0x5c, 0x72]
            case 0..<0x20, 0x7f: byteEscape(UInt8(v))
            case 0x80...0x9f, 0x061c, 0x200e, 0x200f, 0x2028, 0x2029, 0x202a...0x202e, 0x2066...0x2069:
                out += Array("\\u{\(String(v, radix: 16))}".utf8)
            default: out += raw
            }
        case .error(let length):
            for b in pending.prefix(length) { byteEscape(b) }
            pending = pending.dropFirst(max(1, length))
        case .emptyInput:
            pending = pending.dropFirst(pending.count)
        }
        parser = Unicode.UTF8.ForwardParser()
    }
    return String(decoding: out, as: UTF8.self)
}
