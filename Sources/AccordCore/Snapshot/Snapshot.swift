import Foundation

/// `<repo>/snapshots/<id>`: one small JSON document per snapshot; its
/// name is the SHA-256 of its bytes. Writing it is the commit point of a
/// backup: it is written last, after every blob it names is in a durable
/// pack and a durable index file (FORMAT.md, "Snapshots").
public struct Snapshot: Codable, Sendable {
    public static let currentVersion = 1
    /// The largest snapshot file a reader accepts (a sync `snapshot` frame's
    /// bound, `Frame.maxSnapshotLength`, and a bucket's, `ObjectKind.largestObject`).
    public static let maxFileSize = 16 << 20

    public var version: Int
    public var time: Timestamp
    public var host: String
    public var username: String
    /// "paths" for a plain path backup, or the plan's name ("ae5", "ae5-repos", …).
    public var plan: String
    public var tags: [String]
    /// The backed-up path roots and virtual file names, as shown by `snapshots list`.
    public var paths: [String]
    public var sources: [Source]
    public var parent: String?
    /// The blobs (type tree) that make up the manifest stream, in order.
    public var manifest: [String]
    public var summary: Summary

    public struct Source: Codable, Sendable, Equatable {
        /// "path" (a directory tree or file) or "command" (a command's stdout as one virtual file).
        public var kind: String
        /// The absolute path root, or the virtual file's path in the manifest.
        public var path: String
        /// Same as `path` but hex-encoded bytes when the path is not valid UTF-8.
        public var pathHex: String?
        public var excludes: [String]?
        public var command: String?
        public var profile: ChunkerProfile
        /// For "path": globs of files cut with `dumpProfile` instead of `profile`.
        public var dumpFiles: [String]?
        public var dumpProfile: ChunkerProfile?
        public init(kind: String, path: String, pathHex: String? = nil, excludes: [String]? = nil, command: String? = nil,
                    profile: ChunkerProfile, dumpFiles: [String]? = nil, dumpProfile: ChunkerProfile? = nil) {
            self.kind = kind; self.path = path; self.pathHex = pathHex; self.excludes = excludes; self.command = command; self.profile = profile
            self.dumpFiles = dumpFiles; self.dumpProfile = dumpProfile
        }
    }

    public struct Summary: Codable, Sendable, Equatable {
        public var files: Int = 0
        public var directories: Int = 0
        public var symlinks: Int = 0
        public var otherSkipped: Int = 0
        /// Sum of the sizes of the files and streams in the snapshot.
        public var totalBytes: UInt64 = 0
        /// Bytes read from sources (unchanged files are not read).
        public var bytesRead: UInt64 = 0
        /// New blobs stored by this backup and their stored (compressed) size, data + manifest.
        public var addedBlobs: Int = 0
        public var addedBytes: UInt64 = 0
        /// Stored size of the new manifest blobs alone.
        public var addedManifestBytes: UInt64 = 0
        /// How many of the new blobs are stored as deltas on a base (absent when none).
        public var addedDeltaBlobs: Int? = nil
        public var filesUnchanged: Int = 0
        /// Paths that could not be read; the snapshot is complete otherwise.
        public var errors: [String] = []
        public var durationSeconds: Double = 0
        public init() {}
    }

    public init(time: Timestamp, host: String, username: String, plan: String, tags: [String], paths: [String],
                sources: [Source], parent: SnapshotID?, manifest: [BlobID], summary: Summary) {
        version = Self.currentVersion
        self.time = time; self.host = host; self.username = username; self.plan = plan; self.tags = tags
        self.paths = paths; self.sources = sources; self.parent = parent?.hex
        self.manifest = manifest.map(\.hex); self.summary = summary
    }

    public var manifestIDs: [BlobID] { manifest.compactMap(BlobID.init(hex:)) }
    public var parentID: SnapshotID? { parent.flatMap(SnapshotID.init(hex:)) }

    public func encode() throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try e.encode(self)) + [0x0a]
    }

    public static func decode(_ bytes: [UInt8], name: String) throws -> Snapshot {
        let s: Snapshot
        do { s = try JSONDecoder().decode(Snapshot.self, from: Data(bytes)) } catch {
            throw RepositoryError.snapshotCorrupt(name, reason: "not valid snapshot JSON")
        }
        guard s.version == currentVersion else { throw RepositoryError.snapshotCorrupt(name, reason: "unknown version \(s.version)") }
        guard s.manifestIDs.count == s.manifest.count else { throw RepositoryError.snapshotCorrupt(name, reason: "bad manifest id") }
        return s
    }
}
