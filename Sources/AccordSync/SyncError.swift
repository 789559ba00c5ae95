import Foundation
import AccordCore
import AccordRuntime

/// What a sync or serve session refuses or fails on; each message says what to do.
public enum SyncError: Error, CustomStringConvertible {
    case destinationNotWritable(String, reason: String)
    case differentRepository(String, theirs: String, ours: String)
    case corruptBlob(BlobID, reason: String)
    case snapshotIncomplete(SnapshotID, missing: BlobID)
    case snapshotRejected(SnapshotID, reason: String)
    case snapshotInFuture(SnapshotID, time: String, now: String, skew: Int64)
    case wrongBlobFrame(encrypted: Bool)
    case blobRefused(BlobID, reason: String)
    case encryptionMismatch(String, reason: String)
    case keyRejected(KeyID, reason: String)
    case idle(seconds: Double, repository: String)
    case slowFrame(seconds: Double, received: Int, repository: String)
    case notReading(seconds: Double, repository: String)
    case directoryNotOwned(String, owner: UInt32, serve: UInt32)
    case notARepositoryDirectory(String, entries: Int)
    case directoryNotPrivate(String, mode: UInt32)
    case connect(String)
    case badDestination(String)

    public var description: String {
        switch self {
        case .destinationNotWritable(let p, let r):
            return "cannot create the repository directory \(p) on the destination (\(r)): check the path and its permissions"
        case .differentRepository(let p, let theirs, let ours):
            return "\(p) on the destination holds a different repository (\(theirs), ours is \(ours)): pick another directory or pass --allow-other-repository"
        case .corruptBlob(let id, let r):
            return "blob \(id.short)… was rejected: it does not match its id (\(r)); run `accord check --read-data` on the source"
        case .snapshotIncomplete(let s, let b):
            return "snapshot \(s.short) was not stored: blob \(b.short) it needs has not arrived"
        case .snapshotRejected(let s, let why):
            return "snapshot \(s.short) was not stored: \(why); run `accord check` on the source"
        case .snapshotInFuture(let s, let t, let now, let skew):
            return "snapshot \(s.short) was not stored: its time \(t) is more than \(skew) s ahead of this node's clock (\(now)); check the clocks of both nodes (serve.max-clock-skew in the settings file sets the limit)"
        case .wrongBlobFrame(let encrypted):
            return encrypted ? "the destination repository is encrypted: its blobs travel as sealedBlobs, not blobs (is the client's repository plain?)"
                : "the destination repository is plain: sealedBlobs frames are refused (is the client's repository encrypted?)"
        case .blobRefused(let id, let why):
            return "blob \(id.short)… was rejected: \(why); nothing of it was stored"
        case .encryptionMismatch(let p, let why):
            return "\(p) on the destination cannot take this repository's snapshots: \(why); sync only between copies of one repository, or pick another directory"
        case .keyRejected(let id, let why):
            return "key file \(id.short) was not stored: \(why)"
        case .idle(let seconds, let repo):
            return "closing the session: the client sent nothing for \(Int(seconds)) s (serve's idle timeout: --idle-timeout or serve.idle-timeout in the settings file); the lock on \(repo) is released"
        case .slowFrame(let seconds, let n, let repo):
            return "closing the session: the client took more than \(Int(seconds)) s to send one frame (\(n) byte\(n == 1 ? "" : "s") of it arrived; serve's idle timeout: --idle-timeout or serve.idle-timeout in the settings file); the lock on \(repo) is released"
        case .notReading(let seconds, let repo):
            return "closing the session: the client read none of serve's answers for \(Int(seconds)) s (serve's idle timeout: --idle-timeout or serve.idle-timeout in the settings file); the lock on \(repo) is released"
        case .directoryNotOwned(let p, let owner, let serve):
            return "\(p) on the destination is owned by \(userName(owner)), not by \(userName(serve)) who runs serve: serve creates a repository only in a directory of its own user (another user could later replace its subdirectories with symlinks); if that user is trusted, `chown \(serve) \(p)` there, or pick a new directory"
        case .notARepositoryDirectory(let p, let n):
            return "\(p) on the destination is a directory holding \(n) entr\(n == 1 ? "y" : "ies") but no accord repository: serve creates a repository only in a new or empty directory; pick another directory, or run `accord init` there yourself"
        case .directoryNotPrivate(let p, let mode):
            return "\(p) on the destination is an empty directory of mode \(String(mode, radix: 8)), not 0700: serve does not change the mode of an existing directory; `chmod 700 \(p)` there, or pick a new directory"
        case .connect(let m): return m
        case .badDestination(let d): return "bad destination \(d): expected USER@NODE[:DIR], NODE[:DIR] or a local DIR"
        }
    }
}

/// "uid 65534 (nobody)", or "uid N" when the user database has no name for it.
func userName(_ uid: UInt32) -> String {
    guard let pw = getpwuid(uid), let name = pw.pointee.pw_name else { return "uid \(uid)" }
    return "uid \(uid) (\(String(cString: name)))"
}
