import Foundation
import AccordCore
import AccordRuntime

/// The walk (one thread, tree order): sources, the parent snapshot, and
/// each entry turned into a slot (and, for a changed file, a job).
extension Backup {
    // MARK: Sources

    struct Root {
        var path: RawPath
        var command: CommandSource?
        var inline: InlineFile?
        var isVirtual: Bool { command != nil || inline != nil }
        var display: String { path.displayPath }
        func source(_ options: BackupOptions) -> Snapshot.Source {
            let treeProfile = options.treeProfile, excludes = options.excludes
            if let c = command {
                return .init(kind: "command", path: c.path, command: c.command, profile: c.profile)
            }
            if let i = inline {
                return .init(kind: "inline", path: i.path, profile: .dump)
            }
            let valid = String(validating: path, as: UTF8.self) != nil
            return .init(kind: "path", path: display, pathHex: valid ? nil : hexString(path),
                         excludes: excludes.isEmpty ? nil : excludes, profile: treeProfile,
                         dumpFiles: options.dumpFiles.isEmpty ? nil : options.dumpFiles,
                         dumpProfile: options.dumpFiles.isEmpty ? nil : options.dumpProfile)
        }
    }

    func prepareRoots() throws -> [Root] {
        var roots: [Root] = options.paths.map { Root(path: normalize($0)) }
        // Virtual names are taken as they are, never normalized: `/x/../..` must not become `/`.
        for c in options.commands {
            if let why = VirtualPath.problem(c.path) { throw BackupError.badCommandPath(c.path, reason: why) }
            roots.append(Root(path: Array(c.path.utf8), command: c))
        }
        for f in options.inlineFiles {
            if let why = VirtualPath.problem(f.path) { throw BackupError.badCommandPath(f.path, reason: why) }
            roots.append(Root(path: Array(f.path.utf8), inline: f))
        }
        if roots.isEmpty { throw BackupError.noSources }
        for r in roots where !r.isVirtual {
            do { _ = try Sys.lstat(r.path) } catch let e as SystemError where e.isNotFound {
                throw BackupError.pathNotFound(r.display)
            }
        }
        roots.sort { ManifestEntry.treeOrder($0.path, $1.path) }
        var unique: [Root] = []
        for r in roots {
            if let last = unique.last, isInside(r.path, last.path) {
                if r.path == last.path && !r.isVirtual && !last.isVirtual { continue }
                throw BackupError.nestedSources(r.display, inside: last.display)
            }
            unique.append(r)
        }
        return unique
    }

    func normalize(_ p: RawPath) -> RawPath {
        var parts: [ArraySlice<UInt8>] = []
        for c in p.split(separator: 0x2f) {
            if c == [0x2e] { continue }
            if c == [0x2e, 0x2e] { _ = parts.popLast(); continue }
            parts.append(c)
        }
        if parts.isEmpty { return [0x2f] }
        var out: RawPath = []
        for c in parts { out.append(0x2f); out.append(contentsOf: c) }
        return out
    }

    func isInside(_ p: RawPath, _ dir: RawPath) -> Bool { ManifestEntry.isWithin(p, dir) }

    func findParent() throws -> SnapshotID? {
        if options.forceRead { return nil }
        if let p = options.parent { return p }
        let wanted = options.displayPaths.sorted()
        let all = try repository.snapshots()
        // A snapshot dated in the future is suspect (Repository.isDatedInFuture): never a parent.
        return all.last { $0.snapshot.host == options.host && $0.snapshot.paths.sorted() == wanted && $0.snapshot.plan == options.plan
            && !Repository.isDatedInFuture($0.snapshot) }?.id
    }

    // MARK: Walking (one thread, tree order)

    /// Queues an entry that needs no reading (a directory, symlink, hard link).
    /// Its path in the parent anchors the manifest piece it lands in (called in tree order, as `find` needs).
    func emit(_ entry: ManifestEntry) {
        let slot = Slot(entry: entry, done: true)
        slot.manifestAnchor = parentCursor?.find(entry.path, onError: options.onWarning)?.blob
        _ = slots.push(slot)
    }

    func entry(_ kind: ManifestEntry.Kind, _ path: RawPath, _ st: FileStatus) -> ManifestEntry {
        ManifestEntry(kind: kind, path: path, mode: st.permissions, uid: st.uid, gid: st.gid,
                      mtimeSec: st.mtimeSec, mtimeNsec: st.mtimeNsec, ctimeSec: st.ctimeSec, ctimeNsec: st.ctimeNsec,
                      inode: st.inode, device: st.device, size: kind == .file ? st.size : 0)
    }

    func walk(_ roots: [Root]) throws {
        for root in roots {
            if failure.value != nil { return }
            try emitAncestors(of: root.path)
            if let c = root.command {
                let slot = Slot()
                slot.setParent(parentCursor?.find(root.path, onError: options.onWarning))
                guard slots.push(slot) else { return }
                guard jobs.push(.command(slot, c)) else { return }
            } else if let f = root.inline {
                let slot = Slot()
                slot.setParent(parentCursor?.find(root.path, onError: options.onWarning))
                guard slots.push(slot) else { return }
                guard jobs.push(.inline(slot, f)) else { return }
            } else {
                try visitRoot(root.path)
            }
        }
    }

    /// Directory entries for the parents of a root ("/", "/opt", …), once each.
    func emitAncestors(of path: RawPath) throws {
        var prefixes: [RawPath] = [[0x2f]]
        for i in 1..<max(1, path.count) where path[i] == 0x2f { prefixes.append(Array(path[0..<i])) }
        if path == [0x2f] { return }
        for a in prefixes where !emittedAncestors.contains(a) {
            emittedAncestors.insert(a)
            if let st = try? Sys.lstat(a), st.isDirectory {
                emit(entry(.directory, a, st))
            } else {
                // A virtual file's parents need not exist on this host.
                let now = Sys.now()
                emit(ManifestEntry(kind: .directory, path: a, mode: 0o700, mtimeSec: now.sec, mtimeNsec: now.nsec))
            }
        }
    }

    func excluded(_ path: RawPath) -> Bool { Self.matches(options.excludes, path) }

    /// Does a glob match: with "/" against the path (or a parent), else the name?
    static func matches(_ patterns: [String], _ path: RawPath) -> Bool {
        if patterns.isEmpty { return false }
        let name = Array(path.split(separator: 0x2f).last ?? [])
        for p in patterns {
            if p.contains("/") ? Sys.fnmatch(p, path) || Sys.fnmatch(p + "/*", path) : Sys.fnmatch(p, name) { return true }
        }
        return false
    }

    func skipUnreadable(_ path: RawPath, _ error: Error) throws {
        try options.onError(path.displayPath, error)
        statsLock.withLock { summary.errors.append(path.displayPath); unreadablePaths.insert(path) }
    }

    /// Visits a source root and everything under it.
    func visitRoot(_ path: RawPath) throws {
        let st: FileStatus
        do { st = try Sys.lstat(path) } catch { try skipUnreadable(path, error); return }
        try visit(path, st, in: nil, name: path, depth: 0)
    }

    /// Directories at most this deep below a root are walked through open
    /// descriptors (one per level stays open); deeper ones by full path, so a
    /// very deep tree cannot exhaust the process's descriptors.
    static let maxDescriptorDepth = 64

    /// Visits one entry. Below a root, names are resolved in the open parent
    /// directory `dir` (`fstatat`, `openat`, `readlinkat`): one path component
    /// per call instead of the whole path.
    func visit(_ path: RawPath, _ st: FileStatus, in dir: Int32?, name: RawPath, depth: Int) throws {
        if failure.value != nil { return }
        // Backing the repository up into itself would grow it by itself every run.
        if st.isDirectory, let r = repositoryDirectory, r.device == st.device, r.inode == st.inode {
            if skippedRepository == nil { skippedRepository = path }
            return
        }
        var e = entry(.file, path, st)
        // Listed for unchanged files too: not every filesystem moves the ctime
        // when an xattr is set (tmpfs before Linux 6.6), and a parent snapshot
        // made by another user may not have seen trusted.* ones.
        e.xattrs = ((try? Sys.listXattrs(path)) ?? []).map { .init(name: $0.name, value: $0.value) }
        if st.isDirectory {
            e.kind = .directory
            e.size = 0
            emit(e)
            try visitChildren(of: path, in: dir, name: name, depth: depth)
        } else if st.isSymlink {
            e.kind = .symlink
            e.size = 0
            do {
                e.linkTarget = try dir.map { try Sys.readlink(in: $0, name, path: path) } ?? Sys.readlink(path)
            } catch { try skipUnreadable(path, error); return }
            emit(e)
        } else if st.isRegular {
            try visitRegularFile(e, path, st)
        } else {
            statsLock.withLock { summary.otherSkipped += 1 }
            options.onWarning("skipping \(path.displayPath): sockets, FIFOs and device files are not backed up")
        }
    }

    /// Emits a directory's children in tree order, resolving each name in the
    /// directory's open descriptor (by full path below `maxDescriptorDepth`).
    func visitChildren(of path: RawPath, in dir: Int32?, name: RawPath, depth: Int) throws {
        var fd: Int32?
        let names: [RawPath]
        do {
            if depth < Self.maxDescriptorDepth {
                let opened = try Sys.openDirectory(in: dir, name, path: path)
                fd = opened
                names = try Sys.listDirectory(fd: opened, path: path)
            } else {
                names = try Sys.listDirectory(path)
            }
        } catch {
            if let fd { Sys.close(fd) }
            try skipUnreadable(path, error)
            return
        }
        defer { if let fd { Sys.close(fd) } }
        for child in names.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            if failure.value != nil { return }
            let childPath = path == [0x2f] ? [0x2f] + child : path + [0x2f] + child
            if excluded(childPath) { continue }
            let cst: FileStatus
            do {
                cst = try fd.map { try Sys.lstat(in: $0, child, path: childPath) } ?? Sys.lstat(childPath)
            } catch { try skipUnreadable(childPath, error); continue }
            try visit(childPath, cst, in: fd, name: fd == nil ? childPath : child, depth: depth + 1)
        }
    }

    /// A regular file: a later name of an inode already seen is a hard link; an
    /// unchanged one (size, times, inode as in the parent, blobs present) takes
    /// the parent's blob list; any other becomes a job for the file workers.
    func visitRegularFile(_ entry: ManifestEntry, _ path: RawPath, _ st: FileStatus) throws {
        var e = entry
        if st.nlink > 1 {
            let key = HardlinkKey(device: st.device, inode: st.inode)
            if let first = hardlinks[key] {
                e.kind = .hardlink
                e.linkTarget = first
                e.size = 0
                emit(e)
                return
            }
            hardlinks[key] = path
        }
        let found = parentCursor?.find(path, onError: options.onWarning)
        if let old = found?.entry, old.kind == .file, old.size == st.size, old.mtimeSec == st.mtimeSec, old.mtimeNsec == st.mtimeNsec,
           old.ctimeSec == st.ctimeSec, old.ctimeNsec == st.ctimeNsec, old.inode == st.inode,
           sink.areKnown(old.referencedBlobs) {
            e.blobs = old.blobs
            let slot = Slot(entry: e, done: true)
            slot.unchanged = true
            slot.mayBeLinked = st.nlink > 1
            slot.listParent = old.list == nil ? nil : old
            slot.manifestAnchor = found?.blob
            _ = slots.push(slot)
            options.progress?.addFile()
            options.progress?.addBytes(Int(st.size))
            return
        }
        let slot = Slot(entry: e)
        slot.mayBeLinked = st.nlink > 1
        slot.setParent(found)
        guard slots.push(slot) else { return }
        let profile = Self.matches(options.dumpFiles, path) ? options.dumpProfile : options.treeProfile
        _ = jobs.push(.file(slot, path, st, profile))
    }
}
