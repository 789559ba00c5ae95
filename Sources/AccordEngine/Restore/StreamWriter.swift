import AccordCore
import AccordRuntime

/// Writes a file or stream entry's bytes, in order, to a descriptor (a
/// restore command's stdin, or stdout for `accord dump`), verifying every
/// blob. `dropLines` removes whole lines equal to one of the given strings
/// (e.g. `CREATE ROLE postgres;`, which a running server rejects).
public struct StreamWriter {
    let repository: Repository
    public init(repository: Repository) { self.repository = repository }

    public func write(_ e: ManifestEntry, to fd: Int32, name: String, dropLines: [String] = []) throws {
        let inflater = Inflater()
        var scratch: [UInt8] = [], plain: [UInt8] = []
        let drop = Set(dropLines.map { Array($0.utf8) })
        var carry: [UInt8] = []   // an incomplete last line, when filtering
        for id in e.blobs {
            try repository.readVerified(id, inflater: inflater, scratch: &scratch, into: &plain)
            if drop.isEmpty {
                try plain.withUnsafeBytes { try Sys.writeAll(fd, $0, path: name) }
                continue
            }
            carry.append(contentsOf: plain)
            var out: [UInt8] = []
            out.reserveCapacity(carry.count)
            var lineStart = 0
            for i in 0..<carry.count where carry[i] == 0x0a {
                let line = carry[lineStart..<i]
                if !drop.contains(Array(line)) { out.append(contentsOf: carry[lineStart...i]) }
                lineStart = i + 1
            }
            carry.removeFirst(lineStart)
            try out.withUnsafeBytes { try Sys.writeAll(fd, $0, path: name) }
        }
        if !carry.isEmpty && !drop.contains(carry) { try carry.withUnsafeBytes { try Sys.writeAll(fd, $0, path: name) } }
    }
}
