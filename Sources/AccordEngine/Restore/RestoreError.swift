import AccordRuntime

/// Why a restore, or one of its entries, failed; each message says what to do.
public enum RestoreError: Error, CustomStringConvertible {
    case sizeMismatch(String, expected: UInt64, got: UInt64)
    case contentUnreadable(String)
    case incomplete(String)
    case targetNotDirectory(String)
    case unsafeEntry(RawPath, record: Int)
    case symlinkInPath(String)
    case outsideTarget(String)
    case symlinkInPlaceOfDirectory(String)
    case rootNotDirectory(String, kind: String)
    case hardlinkTargetNotRestored(String, target: String)
    /// `RestoreOptions.beforeReplacing` threw: the restore stops, having
    /// replaced nothing that was in its target.
    case replaceRefused(any Error)
    public var description: String {
        switch self {
        case .sizeMismatch(let p, let e, let g):
            return "\(p): its blobs add up to \(g) bytes but the snapshot records \(e), so nothing was written to it: run `accord check --read-data`"
        case .targetNotDirectory(let p):
            return "restore target \(p) exists and is not a directory: give a directory (or a path that does not exist yet) as --target"
        case .unsafeEntry(let p, let n):
            let which = n > 0 ? "manifest record \(n) names" : "the restore names"
            return "\(which) \(String(reflecting: p.displayPath)), which is not an absolute path without empty, '.' or '..' components: "
                + "the snapshot is damaged or hostile, nothing was restored; run `accord check`"
        case .symlinkInPath(let p):
            return "\(p): a symlink is on the way to it (in the target beforehand, or made by this snapshot), and restore never follows one below the target; not restored"
        case .outsideTarget(let p):
            return "\(p) would lie outside the restore target; not restored"
        case .symlinkInPlaceOfDirectory(let p):
            return "\(p) is a symlink where the snapshot has a directory; restore neither follows nor replaces it, so nothing below it is restored: remove it, or restore with --target"
        case .rootNotDirectory(let p, let kind):
            return "the snapshot makes the restore target \(p) itself \(kind); it stays a directory and that entry is not restored"
        case .hardlinkTargetNotRestored(let p, let t):
            return "\(p) is a hard link to \(t), which is not a file this restore made; the link is not made"
        case .contentUnreadable(let why): return "\(why); the file is not restored"
        case .replaceRefused(let why):
            return "the restore stopped before it replaced anything that was in its target (what it made under new names stays, "
                + "directories 0700 until a restore completes): \(why)"
        case .incomplete(let p): return "internal error: not every blob of \(p) was written, so it is not restored; please report this"
        }
    }
}
