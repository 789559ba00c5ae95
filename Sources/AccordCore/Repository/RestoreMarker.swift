import AccordRuntime

/// The `restore` marker (FORMAT.md): an empty file at the repository's root
/// (in a bucket, the empty object `PREFIX/restore`), placed after a complete
/// plan backup (locally or by `accord serve` at the end of a sync) and
/// removed by the plan restore that consumed it. A restore that replaces live
/// data refuses to run without it, unless overridden.
extension Repository {
    /// Places the marker (written and renamed like every other file, or one
    /// PUT, so it is durable).
    public func placeRestoreMarker() throws {
        guard local != nil else { return try [UInt8]().withUnsafeBytes { try backend.write(.marker, "restore", $0) } }
        try AtomicFile.write([], to: layout.restoreMarkerPath, tmpDirectory: layout.tmpDirectory)
    }

    /// Whether the marker is there (whatever kind of entry or object it is:
    /// only its name counts), asking the store: an error (the bucket failing)
    /// is thrown, not taken for an absent marker, so a plan restore says what
    /// failed instead of suggesting `--override`.
    public func restoreMarkerPresent() throws -> Bool {
        guard local != nil else {
            do { _ = try backend.size(.marker, "restore"); return true } catch BackendError.notFound { return false }
        }
        return (try? Sys.lstat(layout.restoreMarkerPath)) != nil
    }

    /// Removes the marker; a missing one is not an error (the restore already
    /// ran). One that stays (credentials that may not delete, a read-only
    /// disk) throws: the next plan restore would take it for a new backup.
    public func removeRestoreMarker() throws {
        guard local != nil else {
            do { try backend.delete(.marker, "restore") } catch BackendError.notFound {}
            return
        }
        do { try Sys.unlink(layout.restoreMarkerPath) } catch let e as SystemError where e.isNotFound {}
    }
}
