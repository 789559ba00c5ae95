import AccordRuntime

/// Copying a repository's objects into another copy of it (`accord sync` to a
/// bucket): every object the destination lacks, stored bytes as they are (so
/// an encrypted repository is copied without its key), in the write order
/// (key files, packs, index files, snapshots), so a copy cut short at any
/// point is a valid repository holding the snapshots that arrived, and the
/// next run goes on. Nothing is ever deleted on the destination (like serve).
extension Repository {
    public struct MirrorStats: Sendable {
        public var keyFiles = 0, packs = 0, indexFiles = 0, snapshots = 0
        public var bytes: Int64 = 0
        public init() {}
    }

    /// Copies to `dest` (the same repository: same id and, if encrypted, the
    /// same config MAC) every key file, pack, index file and snapshot it lacks.
    /// The source's snapshots are listed before its index files and packs: a
    /// backup writes packs, then its index, then its snapshot, so whatever a
    /// listed snapshot needs is in the later listings. Each object's bytes are
    /// checked against its name before they are written.
    public func mirror(to dest: Repository, progress: (String) -> Void = { _ in }) throws -> MirrorStats {
        guard dest.config.id == config.id, dest.config.isEncrypted == config.isEncrypted, dest.config.mac == config.mac else {
            throw RepositoryError.configCorrupt(dest.layout.root, reason: "it holds repository \(dest.config.id.prefix(8)), not \(config.id.prefix(8)), the one synced to it: give another destination")
        }
        var stats = MirrorStats()
        let snapshots = try backend.list(.snapshot), indexes = try backend.list(.index), packs = try backend.list(.pack)
        let keys = try backend.list(.key)
        let steps: [(ObjectKind, [String], WritableKeyPath<MirrorStats, Int>)] = [
            (.key, keys, \.keyFiles), (.pack, packs, \.packs), (.index, indexes, \.indexFiles), (.snapshot, snapshots, \.snapshots),
        ]
        for (kind, names, counter) in steps {
            let present = Set(try dest.backend.list(kind))
            for name in names where !present.contains(name) {
                // A listing may lag a write: an object written by an earlier run is not copied twice.
                if kind == .pack, (try? dest.backend.size(kind, name)) != nil { continue }
                let bytes = try backend.read(kind, name)
                guard !kind.isContentNamed || SHA256Hasher.hash(bytes).hex == name else {
                    throw RepositoryError.objectCorrupt(backend.describe(kind, name), reason: "its content does not match its name; nothing after it was copied")
                }
                try bytes.withUnsafeBytes { try dest.backend.write(kind, name, $0) }
                stats[keyPath: counter] += 1
                stats.bytes += Int64(bytes.count)
                progress("\(kind.rawValue) \(name.prefix(8)) (\(bytes.count) bytes)")
            }
        }
        return stats
    }
}
