import AccordCore
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Rebuilds the index from the pack headers (after a lost or corrupt index).
public enum RepairIndex {
    public static func run(_ repository: Repository, log: (String) -> Void) throws -> (packs: Int, blobs: Int, unreadable: [PackID]) {
        var packs: [IndexFile.Pack] = []
        var bad: [PackID] = []
        for id in try repository.listPacks().sorted() {
            do { packs.append(.init(id: id, blobs: try repository.readPackHeader(id))) } catch where isDamage(error) {
                log("pack \(id) is unreadable (\(error)); its blobs are lost")
                bad.append(id)
            } catch {
                // Not the pack's bytes but the way to them (a server's 503 storm, a
                // timeout, a permission): rebuilding now would drop a healthy pack's
                // blobs from the index, so nothing is replaced.
                throw RepairError.packNotRead(id, "\(error)")
            }
        }
        // A delta whose base is stored whole nowhere cannot be read: index it and a backup
        // would reuse it. Left out (its pack stays), so the next backup stores that chunk again.
        let whole = Set(packs.flatMap { $0.blobs.filter { $0.compression != .delta }.map(\.id) })
        for i in packs.indices where packs[i].blobs.contains(where: { $0.compression == .delta }) {
            let pack = packs[i].id
            packs[i].blobs = try packs[i].blobs.filter { e in
                guard e.compression == .delta else { return true }
                let base = try repository.deltaBase(inPack: pack, offset: e.offset)
                if let base, whole.contains(base) { return true }
                log("blob \(e.id) in pack \(pack) is a delta on " + (base.map { "blob \($0), which no pack holds whole" } ?? "a base cut off by the pack's end")
                    + ": left out of the index")
                return false
            }
        }
        let old = try repository.listIndexFiles()
        try repository.replaceIndex(old, with: IndexFile(packs: packs))
        return (packs.count, packs.reduce(0) { $0 + $1.blobs.count }, bad)
    }

    /// The pack's bytes came and are bad (a truncated or garbled header, or the
    /// disk's EIO): its blobs are lost. Anything else is a failure to read.
    static func isDamage(_ error: Error) -> Bool {
        if error is PackError || error is DecodeError { return true }
        if let e = error as? SystemError { return e.errno == EIO }
        return false
    }
}

public enum RepairError: Error, CustomStringConvertible {
    /// A pack header could not be read for a reason other than damage (pack, why).
    case packNotRead(PackID, String)

    public var description: String {
        switch self {
        case .packNotRead(let id, let why):
            return "could not read pack \(id)'s header (\(why)): the index was not changed. Run `accord repair index` again when the storage answers"
        }
    }
}
