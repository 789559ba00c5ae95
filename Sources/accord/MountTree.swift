import AccordCore
import AccordRuntime

/// One snapshot's tree as `accord mount` shows it: every manifest entry a
/// node under its parent directory, read once through the validating
/// `ManifestReader`. Directories the manifest does not record (the parents of
/// a backed-up path: "/", "/opt" above "/opt/data") are made up, read-only,
/// dated at the snapshot's time. Contents stay in the repository: a node holds
/// the entry (its blob ids), not its bytes.
final class MountTree {
    struct Node {
        var entry: ManifestEntry
        /// Child name → node index (directories only).
        var children: [RawPath: Int] = [:]
        /// Child names in tree order (readdir's order).
        var names: [RawPath] = []
        /// For a hard link: the node holding the content (a regular file).
        var content: Int?
        /// Link count: 1 + hard links to it (files), 2 + subdirectories (directories).
        var links: UInt32 = 1
        /// A parent directory the manifest does not record.
        var madeUp = false
    }

    private(set) var nodes: [Node]
    /// Inode numbers of this tree's nodes start here (`inode(_:)`): trees of a mount do not share any.
    let inodeBase: UInt64
    /// Entries left out because they cannot be placed (see `add`), for one warning.
    private(set) var skipped = 0

    /// Reads the manifest of snapshot `id`; throws what the reader throws (a
    /// damaged or hostile manifest is refused whole, as `ls` refuses it).
    init(repository: Repository, snapshot s: Snapshot, id: SnapshotID, inodeBase: UInt64) throws {
        self.inodeBase = inodeBase
        let root = ManifestEntry(kind: .directory, path: [0x2f], mode: 0o755, mtimeSec: s.time.seconds, mtimeNsec: s.time.nanoseconds,
                                 ctimeSec: s.time.seconds, ctimeNsec: s.time.nanoseconds)
        nodes = [Node(entry: root, links: 2)]
        var reader = repository.manifestReader(s, id: id)
        while let e = try reader.next() { add(e, time: s.time) }
    }

    /// The node at `components` below the root (empty: the root), nil when absent.
    func lookup<C: Collection>(_ components: C) -> Int? where C.Element == RawPath {
        var n = 0
        for c in components {
            guard let next = nodes[n].children[c] else { return nil }
            n = next
        }
        return n
    }

    /// The node holding `n`'s content: itself, or the file a hard link names.
    func contentNode(_ n: Int) -> Int { nodes[n].content ?? n }

    /// `n`'s inode number: a hard link has its file's, as on the disk it was read from.
    func inode(_ n: Int) -> UInt64 { inodeBase + UInt64(contentNode(n)) }

    /// Places `e` under its parent, making up missing parent directories. An
    /// entry whose path has an empty, "." or ".." component, or whose parent is
    /// not a directory, is skipped (the reader's rules should already refuse
    /// them; a mount must not trap on them either). A recorded directory
    /// replaces a made-up one; a second entry for a path is skipped.
    private func add(_ e: ManifestEntry, time: Timestamp) {
        let parts = e.path.split(separator: 0x2f, omittingEmptySubsequences: false).dropFirst().map(Array.init)
        if e.path == [0x2f] {
            if e.kind == .directory { nodes[0].entry = e } else { skipped += 1 }
            return
        }
        guard e.path.first == 0x2f, !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty && $0 != [0x2e] && $0 != [0x2e, 0x2e] }) else {
            skipped += 1
            return
        }
        var parent = 0
        for (i, name) in parts.dropLast().enumerated() {
            guard nodes[parent].entry.kind == .directory else { skipped += 1; return }
            if let next = nodes[parent].children[name] { parent = next; continue }
            let path = [0x2f] + parts[0...i].joined(separator: [0x2f])
            let made = ManifestEntry(kind: .directory, path: path, mode: 0o755, mtimeSec: time.seconds, mtimeNsec: time.nanoseconds,
                                     ctimeSec: time.seconds, ctimeNsec: time.nanoseconds)
            parent = append(Node(entry: made, links: 2, madeUp: true), name: name, to: parent)
        }
        guard nodes[parent].entry.kind == .directory, let name = parts.last else { skipped += 1; return }
        if let existing = nodes[parent].children[name] {
            // Only a made-up directory gives way, to the directory the manifest records after all.
            if e.kind == .directory, nodes[existing].madeUp {
                nodes[existing].entry = e
                nodes[existing].madeUp = false
            } else {
                skipped += 1
            }
            return
        }
        var node = Node(entry: e, links: e.kind == .directory ? 2 : 1)
        if e.kind == .hardlink {
            // The first name of the file, earlier in tree order; a link to anything else shows as an empty file.
            let target = e.linkTarget.split(separator: 0x2f).map(Array.init)
            if e.linkTarget.first == 0x2f, let t = lookup(target), nodes[t].entry.kind == .file {
                node.content = t
                nodes[t].links &+= 1
            }
        }
        _ = append(node, name: name, to: parent)
    }

    private func append(_ node: Node, name: RawPath, to parent: Int) -> Int {
        let index = nodes.count
        nodes.append(node)
        nodes[parent].children[name] = index
        nodes[parent].names.append(name)
        if node.entry.kind == .directory { nodes[parent].links &+= 1 }
        return index
    }
}
