#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import AccordCore
import AccordRuntime

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Browse snapshots as a read-only filesystem (FUSE), without restoring them.",
        discussion: """
        With a snapshot (an id, a unique id prefix, or 'latest'), MOUNTPOINT shows that snapshot's tree; \
        with 'all', MOUNTPOINT holds snapshots/<id>/… for every snapshot and latest, a symlink to the \
        newest (a unique id prefix of 8 or more digits works in paths too). Modes, owners, times, sizes, symlinks and extended attributes are those recorded; \
        file contents are read from the repository when read, and verified. The snapshot list is \
        the one at mount time. accord stays in the foreground until the filesystem is unmounted \
        (fusermount3 -u MOUNTPOINT) or it gets SIGINT or SIGTERM, then unmounts and exits 0. Needs \
        libfuse3 (Debian: fuse3) and /dev/fuse; takes no repository lock, as ls does.
        """)
    @OptionGroup var repo: RepositoryOptions
    @Flag(help: "Let other users read the mount too (FUSE allow_other; the recorded modes and owners are enforced).")
    var allowOther = false
    @Argument(help: "Snapshot id, unique id prefix, 'latest', or 'all'.")
    var snapshot: String
    @Argument(help: ArgumentHelp("Directory to mount on.", valueName: "MOUNTPOINT"))
    var directory: String

    func run() throws {
        _ = try fuse3.get()   // before any passphrase prompt
        guard let st = try? Sys.stat(Array(directory.utf8)), st.isDirectory else {
            throw CommandFailure("\(directory) is not a directory: create it, or give another mount point")
        }
        let repository = try repo.open()
        let root: MountFilesystem.Root
        let what: String
        if snapshot == "all" {
            let list = try repository.openAllSnapshots()   // the index is loaded after the list: it covers every snapshot in it
            let unreadable = try repository.listSnapshotIDs().count - list.count
            if unreadable > 0 { warn("\(unreadable) snapshot(s) cannot be read and are not shown: run `accord snapshots` to see which") }
            let latest = list.last { !Repository.isDatedInFuture($0.snapshot) }?.id
            root = .all(list, latest: latest)
            what = "\(list.count) snapshot(s)"
        } else {
            let (id, s) = try repository.openSnapshot(snapshot, warn: warn)
            root = .one(id, s)
            what = "snapshot \(id.short)"
        }
        let fs = MountFilesystem(repository: repository, root: root)
        if case .one(let id, let s) = root, case .failure = fs.tree(id, s) {
            throw CommandFailure("snapshot \(id.short) cannot be mounted: its manifest cannot be read (above)")
        }
        try MountFuse.serve(fs, on: directory, allowOther: allowOther) {
            let line = "\(what) of \(repo.path) mounted read-only on \(directory); unmount with `fusermount3 -u \(directory)` or Ctrl-C\n"
            try? Array(line.utf8).withUnsafeBytes { try Sys.writeStdout($0) }
        }
    }
}
