import AccordCore
import AccordRuntime

/// A command whose stdout is backed up as one virtual file (a database dump).
public struct CommandSource: Sendable {
    /// The virtual file's absolute path in the snapshot, e.g. `/postgres/pg_dumpall.sql`.
    public var path: String
    /// Run with `/bin/sh -c`; its exit status is checked.
    public var command: String
    public var profile: ChunkerProfile
    public var environment: [String: String]
    public init(path: String, command: String, profile: ChunkerProfile = .dump, environment: [String: String] = [:]) {
        self.path = path; self.command = command; self.profile = profile; self.environment = environment
    }
}

/// Names of virtual files (a command's output, an inline file) in a snapshot.
public enum VirtualPath {
    /// Longest name accepted (Linux's PATH_MAX).
    public static let maxLength = 4096

    /// Why `path` cannot name a virtual file, or nil: it must be absolute and
    /// canonical (`/a/b`: no empty, `.` or `..` component, no trailing slash),
    /// not `/` itself, without NUL, at most `maxLength` bytes. A restore puts
    /// the file at this path under its target, so nothing else is safe.
    public static func problem(_ path: String) -> String? {
        let u = Array(path.utf8)
        if u.isEmpty { return "it is empty" }
        if u.first != 0x2f { return "it is not absolute (it must start with /)" }
        if u == [0x2f] { return "it is / itself, which is a directory" }
        if u.count > maxLength { return "it is longer than \(maxLength) bytes" }
        // The manifest's own rule (FORMAT.md, "Validity", rule 1), worded for a name given on the command line.
        if let why = ManifestEntry.canonicalPathProblem(u) { return "it " + why }
        return nil
    }
}

/// Bytes already in memory stored as one file (a Kubernetes object's YAML).
public struct InlineFile: Sendable {
    public var path: String
    public var bytes: [UInt8]
    public var mode: UInt32
    public init(path: String, bytes: [UInt8], mode: UInt32 = 0o600) { self.path = path; self.bytes = bytes; self.mode = mode }
}

/// What a backup reads and how it records it.
public struct BackupOptions: Sendable {
    /// Absolute path roots (files or directories).
    public var paths: [RawPath] = []
    public var commands: [CommandSource] = []
    public var inlineFiles: [InlineFile] = []
    /// Glob patterns (fnmatch): a pattern with "/" matches the absolute path,
    /// one without matches the file name.
    public var excludes: [String] = []
    public var tags: [String] = []
    public var plan = "paths"
    public var host = Sys.hostname
    public var treeProfile: ChunkerProfile = .tree
    /// Files of path sources matching these globs (as `excludes`) are cut
    /// with `dumpProfile`: a database dump kept as a file changes in
    /// scattered rows, which would rewrite most of its large tree chunks.
    public var dumpFiles: [String] = BackupOptions.defaultDumpFiles
    public var dumpProfile: ChunkerProfile = .dumpFile
    public static let defaultDumpFiles = ["*.sql"]
    /// Use this parent instead of finding one; `forceRead` ignores any parent.
    public var parent: SnapshotID?
    public var forceRead = false
    public var threads = defaultThreadCount
    public var compression: CompressionLevel?
    /// Called for each path that cannot be read. Return to skip it (the
    /// snapshot records it), throw to abort the backup. Called from the
    /// walker and the file workers, possibly at once.
    public var onError: @Sendable (String, Error) throws -> Void = { _, _ in }
    /// Called for non-fatal notes (skipped sockets, stale locks), from the walker thread.
    public var onWarning: @Sendable (String) -> Void = { _ in }
    public var progress: Progress?

    public init() {}

    /// Sorted, de-duplicated roots, paths as shown in snapshots.
    var displayPaths: [String] { paths.map(\.displayPath) + commands.map(\.path) + inlineFiles.map(\.path) }
}

/// The outcome of a backup.
public struct BackupResult {
    public var id: SnapshotID
    public var snapshot: Snapshot
    /// Things the user should know about the run (the repository was left out of a source).
    public var notes: [String] = []
    /// True when some paths could not be read (exit code 3).
    public var incomplete: Bool { !snapshot.summary.errors.isEmpty }
}

public enum BackupError: Error, CustomStringConvertible {
    case noSources
    case pathNotFound(String)
    case nestedSources(String, inside: String)
    case commandFailed(path: String, command: String, status: String, stderrTail: String)
    case commandStartFailed(String, reason: String)
    /// A virtual file's name is not an absolute canonical path (`VirtualPath.problem` says why).
    case badCommandPath(String, reason: String)
    /// The chunks of a source do not add up to the bytes read from it (a bug: never store such a snapshot).
    case chunkedBytesMismatch(String, read: UInt64, chunked: UInt64)

    public var description: String {
        switch self {
        case .noSources: return "nothing to back up: give at least one PATH (or a --command)"
        case .pathNotFound(let p): return "backup source \(p) does not exist: check the path"
        case .nestedSources(let a, let b): return "backup source \(a) lies inside \(b): give only \(b)"
        case .commandFailed(let p, let c, let s, let tail):
            let t = tail.isEmpty ? "" : "; its stderr ends: \(tail)"
            return "command source \(p) failed (\(s)): `\(c)`\(t). No snapshot was written."
        case .commandStartFailed(let c, let r): return "could not start command `\(c)`: \(r). No snapshot was written."
        case .badCommandPath(let p, let r):
            return "virtual file name \(p.debugDescription) is not allowed: \(r); give an absolute path without . or .. components, like /db/dump.sql. Nothing was written"
        case .chunkedBytesMismatch(let p, let r, let c):
            return "internal error: \(p): read \(r) bytes but its chunks hold \(c). No snapshot was written; please report this"
        }
    }
}
