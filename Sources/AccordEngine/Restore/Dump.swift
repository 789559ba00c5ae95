import AccordCore
import AccordRuntime

/// `accord dump`: one file or stream entry of a snapshot, its bytes in order
/// to a descriptor, every blob verified on the way (`StreamWriter`).
public enum Dump {
    /// Why nothing was written; the command line words it for its user.
    public enum Failure: Error, CustomStringConvertible, Sendable {
        case notFound(path: RawPath, snapshot: SnapshotID)
        case notAFile(path: RawPath, snapshot: SnapshotID, kind: ManifestEntry.Kind)

        public var description: String {
            switch self {
            case .notFound(let p, let s): return "no file \(p.displayPath) in snapshot \(s.short)"
            case .notAFile(let p, let s, let k): return "\(p.displayPath) in snapshot \(s.short) is a \(k), not a file"
            }
        }
    }

    /// Writes the contents of the file or stream entry at `path` in snapshot
    /// `id` to `fd` (`name` names it in errors); returns the size the
    /// entry records.
    /// The manifest is read through the validating reader until the entry is
    /// found: a damaged manifest fails here rather than yield a wrong entry.
    @discardableResult
    public static func write(snapshot id: SnapshotID, _ snapshot: Snapshot, path: RawPath, repository: Repository,
                             to fd: Int32, name: String = "standard output") throws -> UInt64 {
        var reader = repository.manifestReader(snapshot, id: id)
        while let e = try reader.next() {
            guard e.path == path else { continue }
            guard e.kind == .file || e.kind == .stream else { throw Failure.notAFile(path: path, snapshot: id, kind: e.kind) }
            try StreamWriter(repository: repository).write(e, to: fd, name: name)
            return e.size
        }
        throw Failure.notFound(path: path, snapshot: id)
    }
}
