import ArgumentParser
import Foundation
import AccordCore
import AccordEngine
import AccordSync
import AccordPlans
import AccordRuntime

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a repository to `accord sync` over stdin/stdout (run by ssh on the destination).",
        discussion: """
        Creates the repository on first contact with the sender's config (only in a new directory, or an \
        empty one of mode 0700 owned by this user). An encrypted repository is held without its key: \
        serve never needs or asks for a passphrase, stores the key files the sender sends and never \
        deletes one (run `accord key remove` on each copy). Speaks the framed protocol in FORMAT.md; not for \
        interactive use (at a terminal it says so and exits 1). \
        The node can pin the repository: `serve.repository` in the settings file \
        (/etc/accord/accord.yaml, or $ACCORD_SETTINGS), or the --repo of an authorized_keys forced \
        command (the client's request is read from SSH_ORIGINAL_COMMAND); serve then refuses any other \
        directory. See README.md, "Least privilege on the DR node".
        """)
    @Option(name: [.customLong("repo"), .customShort("d"), .customLong("directory")], help: "Repository directory on this node (default: serve.repository of the settings file).")
    var repo: String?
    @Option(help: ArgumentHelp("Close a session that sends nothing for this many seconds (default: serve.idle-timeout of the settings file, or 600).", valueName: "SECONDS"))
    var idleTimeout: Int?

    func validate() throws {
        if let t = idleTimeout, t < 1 || t > 86_400 { throw ValidationError("--idle-timeout must be 1 to 86400 seconds, not \(t)") }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let log: (String) -> Void = { Sys.writeStderr("accord serve: \($0)\n") }
        let path: String
        var options = SyncServer.Options()
        do {
            let settings = try Settings.load()
            options.idleTimeout = Double(idleTimeout ?? settings.serve.idleTimeout)
            options.maxClockSkew = Int64(settings.serve.maxClockSkew)
            let pin = settings.serve.repository.map { ServeAccess.Pin(path: $0, source: "serve.repository in \(settings.path ?? Settings.path)") }
            path = try ServeAccess.repository(argument: repo, settingsPin: pin, originalCommand: Sys.environment("SSH_ORIGINAL_COMMAND"),
                                              local: ServeAccess.startedByLocalSync)
            if path.hasPrefix("s3:") {
                throw CommandFailure("the repository served must be a local directory, not a bucket (\(path)): run `accord sync --to \(path)` on the sending side instead")
            }
        } catch {
            log("\(error)")
            // Said to a sync client too (an error frame after its hello), so that
            // `accord sync` shows why. A person at a terminal, or a forced command
            // asked to run something else (`ssh dr-node ls`), gets only the line
            // above, at once: no wait for a hello that never comes, no frame bytes.
            if !Sys.isTerminal(1) && !ServeAccess.isNotASyncClient(error) { SyncServer.refuse(error) }
            throw ExitCode(1)
        }
        if Sys.isTerminal(1) {
            log("speaks the sync protocol on stdin/stdout and is run by `accord sync` (over ssh), not at a terminal: see `accord sync --help`")
            throw ExitCode(1)
        }
        let server = SyncServer(path: path, options: options, log: log)
        do { try server.run() } catch {
            log("\(error)")
            throw ExitCode(1)
        }
    }
}

struct SyncOptions: ParsableArguments {
    @Option(name: .long, parsing: .unconditionalSingleValue,
            help: ArgumentHelp("Extra ssh option, e.g. Port=2222 or IdentityFile=/root/.ssh/dr, or raw ssh flags like \"-F /path/config\" (repeatable).", valueName: "OPT"))
    var sshOption: [String] = []
    @Option(help: ArgumentHelp("What runs accord on the destination, before ` serve --repo DIR` (default: `sudo -n accord`).", valueName: "CMD"))
    var remoteCommand: String?
    @Option(help: "Seconds to wait for the ssh connection.")
    var connectTimeout: Int = 10
    @Flag(help: "Accept a destination repository with a different id.")
    var allowOtherRepository = false

    func validate() throws {
        if connectTimeout < 1 || connectTimeout > 3600 { throw ValidationError("--connect-timeout must be 1 to 3600 seconds, not \(connectTimeout)") }
    }
}

/// Opens a session to the destination and says hello; failures become one clear message.
func openSync(_ repository: Repository, to dest: Destination, _ o: SyncOptions) throws -> (SyncTransport, SyncClient) {
    signal(SIGPIPE, SIG_IGN)
    let transport = try SyncTransport(destination: dest, sshOptions: o.sshOption, remoteCommand: o.remoteCommand, connectTimeout: o.connectTimeout)
    let client = SyncClient(repository: repository, connection: transport.connection)
    client.helloTimeout = Double(o.connectTimeout + 30)
    do { try client.hello(allowOtherRepository: o.allowOtherRepository) } catch {
        transport.kill()
        throw transport.explain(error)
    }
    return (transport, client)
}

/// Tests the connection (ssh, key, sudo, destination directory) and closes it.
func probeSync(_ repository: Repository, to dest: Destination, _ o: SyncOptions) throws {
    let (transport, client) = try openSync(repository, to: dest, o)
    do { try client.bye() } catch { throw transport.explain(error) }
    _ = transport.close()
}

func runSync(_ repository: Repository, to dest: Destination, _ o: SyncOptions, only: [SnapshotID]?, marker: Bool, progress: AccordRuntime.Progress?) throws -> SyncStats {
    let (transport, client) = try openSync(repository, to: dest, o)
    client.progress = progress
    let stats: SyncStats
    do { stats = try client.syncAll(only: only, marker: marker) } catch {
        transport.kill()
        throw transport.explain(error)
    }
    let status = transport.close()
    if !status.succeeded { throw SyncError.connect("the destination's accord serve ended with \(status) after the sync: check its log") }
    return stats
}

struct SyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Send snapshots to a second node's repository, only the chunks it lacks.",
        discussion: """
        Runs `ssh -o BatchMode=yes USER@NODE sudo -n accord serve --repo DIR` and speaks the sync \
        protocol over it. `--to DIR` (a local path) runs `accord serve` locally instead. The \
        destination DIR defaults to the local repository's path. An interrupted sync can simply be \
        run again: what arrived is not sent twice. An encrypted repository travels sealed, with all \
        its key files: this side needs its passphrase, the destination never does. Either side may be \
        a bucket: `-d s3:…` reads from one (the destination DIR must then be given), `--to s3:…` \
        writes every snapshot to one without serve, and never deletes there.
        """)
    @OptionGroup var repo: RepositoryOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var sync: SyncOptions
    @OptionGroup var monitor: MonitorOptions
    @OptionGroup var lockWait: LockWaitOptions
    @Option(help: ArgumentHelp("Destination: USER@NODE[:DIR], NODE[:DIR], a local DIR, or s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX] (DIR defaults to the source's directory; from an s3: source give it).", valueName: "DEST"))
    var to: String
    @Flag(help: "Place the `restore` marker in the destination repository afterwards.")
    var marker = false
    @Flag(help: "Print the transfer statistics as JSON.")
    var json = false
    @Argument(help: "Snapshots to send (default: all the destination lacks).")
    var snapshots: [String] = []

    func run() throws {
        lockWait.apply()
        try monitor.record(repository: repo.path) { rec in try rec.phase("sync") { try send(rec) } }
    }

    func send(_ rec: CommandRecorder) throws {
        if to.hasPrefix("s3:") { return try sendToBucket(rec) }
        // From a bucket there is no directory of the same name on the other side to default to.
        let dest = try Destination.parse(to, defaultDirectory: repo.isS3 ? "" : repo.path)
        if dest.directory.isEmpty {
            throw CommandFailure("the source \(repo.path) is a bucket, so the destination's directory must be given: --to \(to.split(separator: ":").first.map(String.init) ?? to):DIR")
        }
        let repository = try repo.open()
        // Sync only reads its source: a bucket on read-only credentials (a DR node's) goes on without a lock.
        let stats: SyncStats = try withLock(repository, readOnly: repo.isS3, command: "sync") {
            let only = snapshots.isEmpty ? nil : try snapshots.map { try repository.resolveSnapshot($0) }
            return try runSync(repository, to: dest, sync, only: only, marker: marker, progress: output.makeProgress("sync"))
        }
        rec.record(sync: stats)
        printSyncStats(stats, to: dest, json: json, quiet: output.quiet)
    }
}

func printSyncStats(_ s: SyncStats, to dest: Destination, json: Bool, quiet: Bool) {
    if json {
        let o: [String: Any] = ["snapshots": s.snapshots, "blobs": s.blobsSent, "payloadBytes": s.payloadBytes,
                                "wireBytesSent": s.wireBytesSent, "wireBytesReceived": s.wireBytesReceived, "seconds": s.seconds, "keyFiles": s.keyFiles]
        if let d = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) { print(String(decoding: d, as: UTF8.self)) }
        return
    }
    if quiet { return }
    print("synced \(s.snapshots) snapshot(s) to \(dest): \(s.blobsSent) blobs, \(formatBytes(s.payloadBytes)) payload, "
          + "\(formatBytes(s.wireBytesSent)) sent / \(formatBytes(s.wireBytesReceived)) received in \(String(format: "%.2f", s.seconds)) s")
}
