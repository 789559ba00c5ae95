/// Errors about the repository as a whole. Each names the object and says what to do.
public enum RepositoryError: Error, CustomStringConvertible {
    case notADirectory(String)
    case notARepository(String)
    case alreadyInitialized(String)
    /// This process created the repository on an object store, and another
    /// process's config replaced ours before the first snapshot was committed.
    case createdConcurrently(String)
    case unsupportedVersion(Int, path: String)
    case configCorrupt(String, reason: String)
    case indexCorrupt(String, reason: String)
    /// An index file to write would pass `IndexFile.maxFileSize` (its size, its packs).
    case indexTooLarge(bytes: Int, packs: Int)
    case snapshotCorrupt(String, reason: String)
    case snapshotNotFound(String, repository: String)
    case snapshotAmbiguous(String, matches: Int)
    case packMissing(PackID, blob: BlobID)
    case packUnreadable(PackID, reason: String)
    case locked(String)
    case manifestCorrupt(SnapshotID?, reason: String)
    case encryptedWithoutKey(String)
    /// An object (a file, a key) whose bytes are wrong, found while copying it.
    case objectCorrupt(String, reason: String)

    public var description: String {
        switch self {
        case .objectCorrupt(let p, let r):
            return "\(p) is corrupt (\(r)): run `accord check --read-data`"
        case .encryptedWithoutKey(let p):
            return "repository \(p) is encrypted and was opened without its key: give its passphrase (--password-file FILE or $ACCORD_PASSWORD_FILE)"
        case .notADirectory(let p):
            return "repository path \(p) exists but is not a directory: pass a directory with -d (or set ACCORD_REPOSITORY)"
        case .notARepository(let p):
            return "\(p) is not an Accord repository (no config file): run `accord init -d \(p)` or pass the right -d"
        case .alreadyInitialized(let p):
            return "\(p) already holds an Accord repository"
        case .createdConcurrently(let p):
            return "another process created repository \(p) at the same time (its config replaced the one this backup wrote); "
                + "nothing was saved and what this backup wrote was removed: run the backup again"
        case .unsupportedVersion(let v, let p):
            return "repository \(p) has format version \(v); this accord reads versions \(RepositoryConfig.readableVersions.lowerBound)-\(RepositoryConfig.readableVersions.upperBound): use a newer accord"
        case .configCorrupt(let p, let r):
            return "repository config \(p) is unreadable (\(r)): restore it from a copy; without it the repository cannot be read"
        case .indexCorrupt(let p, let r):
            return "index file \(p) is corrupt (\(r)): run `accord repair index`"
        case .indexTooLarge(let n, let packs):
            return "an index file for \(packs) packs would be \(n) bytes, more than an index file may be (\(IndexFile.maxFileSize)): nothing was written; back up fewer files per run"
        case .snapshotCorrupt(let p, let r):
            return "snapshot file \(p) is corrupt (\(r)): run `accord check`"
        case .snapshotNotFound(let s, let repo):
            return "no snapshot \(s) in \(repo): see `accord snapshots list -d \(repo)`"
        case .snapshotAmbiguous(let s, let n):
            return "snapshot prefix \(s) matches \(n) snapshots: give more digits"
        case .packMissing(let p, let b):
            return "pack \(p) holding blob \(b.short) is missing: run `accord check`"
        case .packUnreadable(let p, let r):
            return "pack \(p) is unreadable (\(r)): run `accord check --read-data`"
        case .locked(let why):
            return why
        case .manifestCorrupt(let s, let r):
            return "manifest of snapshot \(s?.short ?? "?") is corrupt (\(r)): run `accord check`"
        }
    }
}
