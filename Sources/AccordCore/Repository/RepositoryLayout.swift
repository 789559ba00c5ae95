/// Where each kind of file lives in a repository (FORMAT.md, "Repository layout").
public struct RepositoryLayout: Sendable {
    public let root: String

    public init(root: String) {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r
    }

    public var configPath: String { root + "/config" }
    public var dataDirectory: String { root + "/data" }
    public var indexDirectory: String { root + "/index" }
    public var snapshotDirectory: String { root + "/snapshots" }
    public var lockDirectory: String { root + "/locks" }
    public var tmpDirectory: String { root + "/tmp" }
    /// Key files of an encrypted repository (format version 3).
    public var keyDirectory: String { root + "/keys" }
    /// The 0-byte marker the original accord tool wrote after a complete backup.
    public var restoreMarkerPath: String { root + "/restore" }

    public func packDirectory(_ id: PackID) -> String { dataDirectory + "/" + String(id.hex.prefix(2)) }
    public func packPath(_ id: PackID) -> String { packDirectory(id) + "/" + id.hex }
    public func indexPath(_ id: IndexID) -> String { indexDirectory + "/" + id.hex }
    public func snapshotPath(_ id: SnapshotID) -> String { snapshotDirectory + "/" + id.hex }
    public func lockPath(_ name: String) -> String { lockDirectory + "/" + name }

    public var subdirectories: [String] { [dataDirectory, indexDirectory, snapshotDirectory, lockDirectory, tmpDirectory] }
}
