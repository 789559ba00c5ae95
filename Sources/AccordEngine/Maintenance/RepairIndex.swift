import AccordCore

/// Rebuilds the index from the pack headers (after a lost or corrupt index).
public enum RepairIndex {
    public static func run(_ repository: Repository, log: (String) -> Void) throws -> (packs: Int, blobs: Int, unreadable: [PackID]) {
        var packs: [IndexFile.Pack] = []
        var bad: [PackID] = []
        for id in try repository.listPacks().sorted() {
            do { packs.append(.init(id: id, blobs: try repository.readPackHeader(id))) } catch {
                log("pack \(id) is unreadable (\(error)); its blobs are lost")
                bad.append(id)
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
}
