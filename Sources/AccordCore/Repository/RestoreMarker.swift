import AccordRuntime

/// The `restore` marker (FORMAT.md): an empty file at the repository's root,
/// placed after a complete plan backup (locally or by `accord serve` at the
/// end of a sync) and removed by the plan restore that consumed it. A restore
/// that replaces live data refuses to run without it, unless overridden.
extension Repository {
    /// Places the marker (written and renamed like every other file, so it is durable).
    public func placeRestoreMarker() throws {
        try requireLocal("the plans' restore marker")
        try AtomicFile.write([], to: layout.restoreMarkerPath, tmpDirectory: layout.tmpDirectory)
    }

    /// True when the marker is present (whatever kind of entry it is: only its name counts).
    public var hasRestoreMarker: Bool { local != nil && (try? Sys.lstat(layout.restoreMarkerPath)) != nil }

    /// Removes the marker; a missing one is not an error (the restore already ran).
    public func removeRestoreMarker() { if local != nil { try? Sys.unlink(layout.restoreMarkerPath) } }
}
