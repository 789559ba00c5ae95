import AccordRuntime

/// How commands get a repository ready: the index is loaded by these doors,
/// never by a command itself, and always in the order that makes it complete.
///
/// The index is loaded when a snapshot is opened, not when the repository is:
/// a backup writes its index file before its snapshot, and backups run side by
/// side under shared locks, so only an index read *after* the snapshot is sure
/// to hold every blob the snapshot names. Loading on `open` would read it
/// before the lock is taken and before the snapshot is chosen.
extension Repository {
    /// Opens a snapshot for reading its files (`ls`, `dump`, `restore`):
    /// resolves `spec` (an id, a unique prefix or `latest`), reads the
    /// snapshot, then loads the index.
    public func openSnapshot(_ spec: String, warn: (String) -> Void = { Sys.writeStderr("warning: \($0)\n") }) throws
        -> (id: SnapshotID, snapshot: Snapshot) {
        let id = try resolveSnapshot(spec, warn: warn)
        let snapshot = try loadSnapshot(id)
        try loadIndex()
        return (id, snapshot)
    }

    /// Opens the newest snapshot that `matches` (not dated in the future; see
    /// `latestSnapshot`) the same way; nil when none matches.
    public func openLatestSnapshot(matching: (Snapshot) -> Bool, warn: (String) -> Void) throws -> (id: SnapshotID, snapshot: Snapshot)? {
        guard let latest = try latestSnapshot(matching: matching, warn: warn) else { return nil }
        try loadIndex()
        return latest
    }

    /// Every readable snapshot, oldest first, with the index loaded after
    /// listing them (the sync client): it covers every listed snapshot, even
    /// one a concurrent backup committed after an earlier load in this process.
    public func openAllSnapshots() throws -> [(id: SnapshotID, snapshot: Snapshot)] {
        let all = try snapshots()
        try loadIndex()
        return all
    }

    /// The snapshots `specs` name (ids, unique prefixes, `latest`; each once,
    /// in the order given), or every readable one when `specs` is empty; the
    /// index is loaded once, after the last is read (`openSnapshot`), so it
    /// covers all of them (`find`, `stats`).
    public func openSnapshots(_ specs: [String], warn: (String) -> Void = { Sys.writeStderr("warning: \($0)\n") }) throws
        -> [(id: SnapshotID, snapshot: Snapshot)] {
        guard let lastSpec = specs.last else { return try openAllSnapshots() }
        var out: [(id: SnapshotID, snapshot: Snapshot)] = []
        var seen = Set<SnapshotID>()
        for spec in specs.dropLast() {
            let id = try resolveSnapshot(spec, warn: warn)
            if seen.insert(id).inserted { out.append((id, try loadSnapshot(id))) }
        }
        let last = try openSnapshot(lastSpec, warn: warn)
        if seen.insert(last.id).inserted { out.append(last) }
        return out
    }

    /// Gets the repository ready for a writer (backup, serve, the pre-restore
    /// snapshot), under the writer's lock: loads the index unless a snapshot was
    /// opened already, then indexes the packs an interrupted writer left
    /// (`adoptUnindexedPacks`), so their blobs are reused. Returns how many
    /// packs were adopted.
    @discardableResult
    public func prepareForWriting() throws -> Int {
        try checkCreation()
        if !isIndexLoaded { try loadIndex() }
        return try adoptUnindexedPacks()
    }
}
