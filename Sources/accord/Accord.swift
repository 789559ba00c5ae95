import ArgumentParser
import AccordCore
import AccordEngine

@main
struct Accord: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "accord",
        abstract: "Content-addressed, incremental backup and disaster recovery for Anaconda Enterprise 5.",
        discussion: """
        A repository (default /opt/anaconda_backup, or $ACCORD_REPOSITORY, or -d DIR) holds \
        deduplicated, compressed snapshots. Typical use:

          accord backup -d /backups /opt/anaconda/storage
          accord snapshots list -d /backups
          accord restore -d /backups latest --target /tmp/restored
          accord check -d /backups --read-data

        Exit codes: 0 success, 1 error, 3 backup completed but some files could not be read.
        """,
        subcommands: [Init.self, BackupCommand.self, Snapshots.self, Ls.self, Dump.self,
                      RestoreCommand.self, CheckCommand.self, Unlock.self, SyncCommand.self, Serve.self]
    )
}

/// The repository option every command shares.
struct RepositoryOptions: ParsableArguments {
    @Option(name: [.customShort("d"), .customLong("directory"), .customLong("repo")],
            help: ArgumentHelp("Repository directory (default: $ACCORD_REPOSITORY or /opt/anaconda_backup).", valueName: "DIR"))
    var directory: String?

    var path: String {
        if let d = directory, !d.isEmpty { return d }
        if let env = Sys.environment("ACCORD_REPOSITORY"), !env.isEmpty { return env }
        return "/opt/anaconda_backup"
    }

    /// Opens the repository (creating it if asked) with files 0600, dirs 0700.
    func open(create: Bool = false) throws -> Repository {
        Sys.umask(0o077)
        return try Repository.open(at: path, create: create)
    }
}

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

func warn(_ message: String) {
    Sys.writeStderr("warning: \(message)\n")
}

func printOut(_ s: String) {
    print(s)
}

/// Takes the repository lock for the length of `body`.
func withLock<T>(_ repo: Repository, exclusive: Bool = false, command: String, _ body: () throws -> T) throws -> T {
    let lock = try RepositoryLock.acquire(repo.layout, exclusive: exclusive, command: command, warn: warn)
    defer { lock.release() }
    return try body()
}
