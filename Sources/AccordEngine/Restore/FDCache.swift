import Foundation
import AccordRuntime
import AccordCore

/// A few open descriptors per worker, so consecutive blobs of one file do
/// not reopen it, and the directory it last created a file in
/// (`RestoreTarget.Parent`), so the next file there is created by its name.
struct FDCache {
    private var open: [(file: Int32, fd: Int32)] = []
    private var parent = RestoreTarget.Parent()

    /// The descriptor of `file` at `path` in `target`: cached, or opened for
    /// writing, or with `creating` created (`RestoreTarget.createFile`).
    mutating func open(_ file: Int32, _ path: RawPath, in target: RestoreTarget, creating: Bool) throws -> Int32 {
        if let i = open.firstIndex(where: { $0.file == file }) { return open[i].fd }
        if open.count >= 16 { Sys.close(open.removeFirst().fd) }
        let fd = creating ? try target.createFile(path, near: &parent) : try target.open(path, Sys.O_WRONLY)
        open.append((file, fd))
        return fd
    }

    mutating func close(_ file: Int32) {
        if let i = open.firstIndex(where: { $0.file == file }) { Sys.close(open.remove(at: i).fd) }
    }

    mutating func closeAll() {
        for o in open { Sys.close(o.fd) }
        open.removeAll()
        parent.close()
    }
}

/// A shared cursor for threads taking turns at a list. `@unchecked Sendable`:
/// `value` is read and changed only under `lock`.
final class ManagedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func take(_ n: Int) -> Int { lock.withLock { defer { value += n }; return value } }
}
