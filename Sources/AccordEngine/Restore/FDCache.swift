import Foundation
import AccordRuntime
import AccordCore

/// A few open descriptors per worker, so consecutive blobs of one file do
/// not reopen it.
struct FDCache {
    private var open: [(file: Int32, fd: Int32)] = []

    /// The descriptor of `file`: cached, or made by `create`.
    mutating func open(_ file: Int32, _ path: RawPath, create: (RawPath) throws -> Int32) throws -> Int32 {
        if let i = open.firstIndex(where: { $0.file == file }) { return open[i].fd }
        if open.count >= 16 { Sys.close(open.removeFirst().fd) }
        let fd = try create(path)
        open.append((file, fd))
        return fd
    }

    mutating func close(_ file: Int32) {
        if let i = open.firstIndex(where: { $0.file == file }) { Sys.close(open.remove(at: i).fd) }
    }

    mutating func closeAll() { for o in open { Sys.close(o.fd) }; open.removeAll() }
}

/// A shared cursor for threads taking turns at a list. `@unchecked Sendable`:
/// `value` is read and changed only under `lock`.
final class ManagedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func take(_ n: Int) -> Int { lock.withLock { defer { value += n }; return value } }
}
