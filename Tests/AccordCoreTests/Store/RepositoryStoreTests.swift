import AccordRuntime
import XCTest
import AccordCore
import AccordTestSupport

/// The repository door over a local backend: blobs assembled into packs,
/// committed, read back verified (deltas through their base), the index
/// reloaded, replaced, and pack headers and delta bases read by id.
final class RepositoryStoreTests: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        var template = Array((NSTemporaryDirectory() + "/accord-store-XXXXXX").utf8CString)
        guard let dir = mkdtemp(&template) else { throw SystemError(errno: errno, operation: "mkdtemp", path: NSTemporaryDirectory()) }
        root = String(cString: dir) + "/repo"
    }

    override func tearDown() {
        _ = try? FileManager.default.removeItem(atPath: (root as NSString).deletingLastPathComponent)
        super.tearDown()
    }

    func testBlobsGoThroughTheDoorAndComeBackVerified() throws {
        let repository = try Repository.initialize(at: root)
        var rng = SeededRandom(seed: 14)
        let base = rng.bytes(50_000)
        var target = base
        target.replaceSubrange(1000..<1010, with: rng.bytes(10))
        let baseID = BlobID(hashing: base), targetID = BlobID(hashing: target)
        // The base zlib-compressed, the target as a delta on it.
        let assembler = repository.makePackAssembler()
        var out: [UInt8] = []
        let c = base.withUnsafeBytes { Deflater(level: .default).compress($0, into: &out) }
        XCTAssertNil(try (c == .none ? base : out).withUnsafeBytes {
            try assembler.add(id: baseID, type: .data, compression: c, rawLength: base.count, stored: $0) })
        let program = try XCTUnwrap(base.withUnsafeBytes { b in target.withUnsafeBytes { DeltaCodec.encode(base: b, target: $0, limit: 40_000) } })
        let stored = baseID.bytes + program
        XCTAssertNil(try stored.withUnsafeBytes { try assembler.add(id: targetID, type: .data, compression: .delta, rawLength: target.count, stored: $0) })
        let sealed = try XCTUnwrap(try assembler.finish())
        XCTAssertNil(try assembler.finish(), "nothing left open")
        try repository.writeIndex(IndexFile(packs: [sealed.pack]))

        try repository.loadIndex()
        try repository.loadIndex()   // a second load replaces, it does not add
        XCTAssertEqual(repository.index.blobCount, 2)
        XCTAssertEqual(repository.indexFiles.count, 1)
        XCTAssertEqual(try repository.readBlob(baseID), base)
        XCTAssertEqual(try repository.readBlob(targetID), target)
        XCTAssertEqual(try repository.packSize(sealed.pack.id), sealed.size)
        XCTAssertEqual(try repository.readPackHeader(sealed.pack.id), sealed.pack.blobs)
        let l = try XCTUnwrap(repository.index.lookup(targetID))
        XCTAssertEqual(try repository.deltaBase(of: targetID, location: l), baseID)
        XCTAssertEqual(try repository.readPack(sealed.pack.id).count, sealed.size)

        // Replacing the index: the new file stands alone.
        let old = try repository.listIndexFiles()
        let newID = try repository.replaceIndex(old, with: IndexFile(packs: [.init(id: sealed.pack.id, blobs: [sealed.pack.blobs[0]])]))
        XCTAssertEqual(try repository.listIndexFiles(), [newID])
        try repository.loadIndex()
        XCTAssertEqual(repository.index.blobCount, 1)
        XCTAssertThrowsError(try repository.readBlob(targetID)) { XCTAssertTrue("\($0)".contains("not in the index"), "\($0)") }

        // A pack gone: the blob read names pack and blob.
        try repository.deletePack(sealed.pack.id)
        XCTAssertThrowsError(try repository.readBlob(baseID)) { e in
            XCTAssertTrue("\(e)".contains("pack \(sealed.pack.id) holding blob \(baseID.short) is missing"), "\(e)")
        }
    }

    func testTheWalkVisitsEachManifestBlobOnceBeforeReadingIt() throws {
        let repository = try Repository.initialize(at: root)
        let a = BlobID(hashing: [1]), b = BlobID(hashing: [2])
        let s = Snapshot(time: .now(), host: "h", username: "u", plan: "", tags: [], paths: ["/"], sources: [], parent: nil,
                         manifest: [a, b, a], summary: .init())
        var seen = Set<BlobID>()
        var visited: [BlobID] = []
        // Neither is stored: the walk names both (a once), then fails reading the manifest.
        XCTAssertThrowsError(try repository.walkReferencedBlobs(snapshot: s, seen: &seen) { id, e in
            XCTAssertNil(e)
            visited.append(id)
        }) { XCTAssertTrue("\($0)".contains("not in the index"), "\($0)") }
        XCTAssertEqual(visited, [a, b])
        XCTAssertThrowsError(try repository.referencedBlobs(snapshot: s))
    }
}
