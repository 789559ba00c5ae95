import AccordCore
import AccordRuntime
import AccordS3
import AccordTestSupport
import Foundation
import XCTest

/// The local cache of an s3: repository's index files and snapshots
/// (`CachedBackend` in `$ACCORD_CACHE_DIR/<repository id>`), through the
/// command line against the real S3 server.
final class S3CacheCLITests: AccordTestCase {
    override class func setUp() { super.setUp(); S3Servers.start(self) }
    override class func tearDown() { S3Servers.stop(self); super.tearDown() }

    var server: S3TestServer!
    var prefix = ""
    var cacheBase = ""
    var s3Repo: String { "s3:\(server.scheme)://127.0.0.1:\(server.port)/\(server.bucket)/\(prefix)" }
    var storedRepository: String { server.storage + "/" + server.bucket + "/" + prefix }

    override func setUpWithError() throws {
        try super.setUpWithError()
        server = try S3Servers.server(Self.self)
        prefix = freshPrefix()
        cacheBase = scratch.sub("cache")
        accordEnvironment.merge(server.clientEnvironment) { $1 }
        accordEnvironment["AWS_PROFILE"] = ""
        accordEnvironment["ACCORD_CACHE_DIR"] = cacheBase
    }

    func makeTree() throws -> String {
        let root = scratch.sub("src")
        try TreeBuilder.mkdir(Array(root.utf8))
        var rng = SeededRandom(seed: 1602)
        for i in 0..<40 { try TreeBuilder.write(Array((root + "/f\(i)").utf8), rng.letterText(20_000 + i)) }
        return root
    }

    /// The count of "s3: N requests" in a command's output.
    func requests(_ r: CommandResult) throws -> Int {
        let line = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("s3: ") }, r.stdout)
        return try XCTUnwrap(Int(line.split(separator: " ")[1]), String(line))
    }

    /// The repository's cache directory: its id from the config object, and
    /// 16 hex digits of the SHA-256 of its location (`s3Repo` as written).
    func cacheDirectory(_ location: String? = nil) throws -> String {
        let config = try JSONSerialization.jsonObject(with: Data(Files.read(storedRepository + "/config"))) as? [String: Any]
        let id = try XCTUnwrap(config?["id"] as? String)
        return cacheBase + "/" + id + "-" + String(SHA256Hasher.hash(location ?? s3Repo).hex.prefix(16))
    }

    func mode(_ path: String) throws -> UInt32 { try Sys.lstat(path).mode & 0o7777 }

    /// A DR copy made by `sync` into another prefix has the primary's id:
    /// it gets a cache directory of its own (the location is in the name),
    /// so a command on the copy, whose listings lack the primary's newest
    /// index file, leaves the primary's cached files in place.
    func testACopyOfTheRepositoryInAnotherPrefixKeepsACacheOfItsOwn() throws {
        let root = try makeTree()
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, root])
        let copy = "s3:\(server.scheme)://127.0.0.1:\(server.port)/\(server.bucket)/\(freshPrefix())"
        try accordOK(["sync", "-d", s3Repo, "--to", copy])
        XCTAssertTrue(try accordOK(["ls", "-d", copy, "latest"]).stdout.contains(root + "/f1"))
        let primary = try cacheDirectory(), other = try cacheDirectory(copy)
        XCTAssertNotEqual(primary, other)
        XCTAssertFalse(Files.regularFiles(under: other + "/index").isEmpty, "the copy's commands cached its index")
        try TreeBuilder.write(Array((root + "/new").utf8), Array("a file the copy has not got".utf8))
        try accordOK(["backup", "-d", s3Repo, root])
        let before = Set(Files.regularFiles(under: primary))
        XCTAssertGreaterThan(Files.regularFiles(under: primary + "/index").count, Files.regularFiles(under: other + "/index").count,
                             "the primary has an index file the copy lacks")
        XCTAssertFalse(try accordOK(["ls", "-d", copy, "latest"]).stdout.contains(root + "/new"))
        XCTAssertTrue(Set(Files.regularFiles(under: primary)).isSuperset(of: before), "a command on the copy deleted the primary's cached files")
    }

    /// An older accord's cache directory, named by the repository id alone,
    /// is adopted: renamed to the id-and-location name, its files kept.
    func testAnOlderAccordsCacheDirectoryIsAdopted() throws {
        let root = try makeTree()
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, root])
        let dir = try cacheDirectory()
        let cached = Set(Files.regularFiles(under: dir))
        XCTAssertFalse(cached.isEmpty)
        let id = try XCTUnwrap(dir.split(separator: "/").last?.split(separator: "-").first)
        let old = cacheBase + "/" + id
        try Sys.rename(dir, old)
        try accordOK(["snapshots", "-d", s3Repo])
        XCTAssertFalse(Files.exists(old), "the old directory was renamed")
        XCTAssertTrue(Set(Files.regularFiles(under: dir)).isSuperset(of: cached), "with the files it held")
    }

    func testASecondNoChangeBackupWithTheCacheMakesFewerRequests() throws {
        let root = try makeTree()
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, "--no-cache", root])
        try accordOK(["backup", "-d", s3Repo, "--no-cache", root])
        XCTAssertFalse(Files.exists(cacheBase), "--no-cache makes no cache")
        let uncached = try requests(try accordOK(["backup", "-d", s3Repo, "--no-cache", root]))

        try accordOK(["backup", "-d", s3Repo, root])   // fills the cache
        let dir = try cacheDirectory()
        let indexes = Set(try Sys.listDirectory(storedRepository + "/index")), snapshots = Set(try Sys.listDirectory(storedRepository + "/snapshots"))
        XCTAssertEqual(Set(try Sys.listDirectory(dir + "/index")), indexes)
        XCTAssertEqual(Set(try Sys.listDirectory(dir + "/snapshots")), snapshots)
        let cached = try requests(try accordOK(["backup", "-d", s3Repo, root]))
        print("no-change backup on s3: \(uncached) requests without the cache, \(cached) with it")
        XCTAssertLessThan(cached, uncached, "the cache saves the index and snapshot reads")

        for d in [cacheBase, dir, dir + "/index", dir + "/snapshots", dir + "/blobs"] { XCTAssertEqual(try mode(d), 0o700, d) }
        for f in Files.regularFiles(under: dir) { XCTAssertEqual(try mode(f), 0o600, f) }
        // Never packs, config, keys or locks; tree blobs by id in blobs/.
        XCTAssertEqual(Set(try Sys.listDirectory(dir)), ["blobs", "index", "snapshots"])
    }

    func testABadOrForeignCacheFileIsReplacedAndNeverTrusted() throws {
        let root = try makeTree()
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, root])
        let dir = try cacheDirectory()
        let snapshot = try XCTUnwrap(try Sys.listDirectory(dir + "/snapshots").first)
        let index = try XCTUnwrap(try Sys.listDirectory(dir + "/index").first)
        let good = try Files.read(dir + "/snapshots/" + snapshot)

        // A snapshot whose bytes are another's, a truncated index, a name the
        // bucket does not hold, a stray file; and the modes opened up.
        var forged = good
        forged[forged.count / 2] ^= 0x01
        try Files.write(dir + "/snapshots/" + snapshot, forged)
        let indexBytes = try Files.read(dir + "/index/" + index)
        try Files.write(dir + "/index/" + index, Array(indexBytes.prefix(indexBytes.count / 2)))
        let foreign = String(repeating: "ab", count: 32)
        try Files.write(dir + "/snapshots/" + foreign, Array("{}".utf8))
        try Files.write(dir + "/index/stray", Array("junk".utf8))
        try Sys.chmod(Array(dir.utf8), mode: 0o755)

        let ls = try accordOK(["ls", "-d", s3Repo, "latest"])
        XCTAssertTrue(ls.stdout.contains(root + "/f39"), ls.stdout)
        XCTAssertEqual(try Files.read(dir + "/snapshots/" + snapshot), good, "the forged snapshot was replaced by the bucket's")
        XCTAssertEqual(SHA256Hasher.hash(try Files.read(dir + "/index/" + index)).hex, index, "the torn index was replaced")
        XCTAssertFalse(Files.exists(dir + "/snapshots/" + foreign), "an object the bucket does not list is pruned")
        XCTAssertFalse(Files.exists(dir + "/index/stray"))
        XCTAssertEqual(try mode(dir), 0o700)

        // Deleting the cache at any time only costs requests.
        try FileManager.default.removeItem(atPath: cacheBase)
        let again = try accordOK(["backup", "-d", s3Repo, root])
        XCTAssertTrue(again.stdout.contains("read 0 B"), again.stdout)
        XCTAssertEqual(Set(try Sys.listDirectory(dir + "/snapshots")), Set(try Sys.listDirectory(storedRepository + "/snapshots")))
        XCTAssertTrue(try accordOK(["check", "-d", s3Repo]).stdout.contains("no errors found"))
    }

    /// A forget deletes the snapshot in the bucket and in the cache.
    func testForgetRemovesTheCachedSnapshot() throws {
        let root = try makeTree()
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, root])
        try TreeBuilder.write(Array((root + "/new").utf8), Array("new\n".utf8))
        try accordOK(["backup", "-d", s3Repo, root])
        let dir = try cacheDirectory()
        XCTAssertEqual(try Sys.listDirectory(dir + "/snapshots").count, 2)
        try accordOK(["forget", "-d", s3Repo, "--keep-last", "1"])
        XCTAssertEqual(Set(try Sys.listDirectory(dir + "/snapshots")), Set(try Sys.listDirectory(storedRepository + "/snapshots")))
        XCTAssertEqual(try Sys.listDirectory(dir + "/snapshots").count, 1)
    }

    // MARK: Tree blobs (blobs/)

    /// `makeTree` and a dump file (`*.sql`: 4 KiB chunks) of more chunks
    /// than a record keeps inline, so its ids go into a chunk list, a tree blob too.
    func makeTreeWithAChunkList() throws -> String {
        let root = try makeTree()
        var rng = SeededRandom(seed: 1603)
        try TreeBuilder.write(Array((root + "/big.sql").utf8), rng.bytes(6 << 20))
        return root
    }

    /// `makeTreeWithAChunkList` plus 1,500 small files of long names: a
    /// manifest of several pieces, so several tree blobs are cached (a dump
    /// of 6 MiB no longer has a chunk list: its chunks average 256 KiB).
    func makeTreeWithSeveralPieces() throws -> String {
        let root = try makeTreeWithAChunkList()
        try TreeBuilder.mkdir(Array((root + "/many").utf8))
        for i in 0..<1500 {
            try TreeBuilder.write(Array((root + "/many/a-file-with-a-rather-long-name-to-fill-the-manifest-\(i)").utf8), Array("\(i)\n".utf8))
        }
        return root
    }

    /// A backup's requests less the two PUTs (pack, index) of one that stored
    /// new blobs: the test tree's ancestors include the scratch directory,
    /// whose times change with every command, so a manifest piece may be new.
    func readRequests(_ r: CommandResult) throws -> Int {
        let added = try XCTUnwrap(r.stdout.range(of: #"in [0-9]+ new blobs"#, options: .regularExpression).map { r.stdout[$0] }, r.stdout)
        return try requests(r) - (added == "in 0 new blobs" ? 0 : 2)
    }

    /// Tree blobs (manifest pieces, chunk lists) are kept by id in `blobs/`,
    /// put there by the backup that wrote them: a no-change backup then reads
    /// no pack. With the folder emptied it costs a ranged GET per tree blob
    /// (here one manifest piece and one chunk list, in different places of
    /// the pack), and the folder is filled again.
    func testTreeBlobsAreCachedSoANoChangeBackupReadsNoPack() throws {
        let root = try makeTreeWithAChunkList()
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, root])
        let dir = try cacheDirectory(), blobs = dir + "/blobs/"
        XCTAssertGreaterThanOrEqual(try Sys.listDirectory(blobs).count, 1, "the manifest (and a chunk list, if any), cached by the backup that wrote them")
        let warm = try readRequests(try accordOK(["backup", "-d", s3Repo, root]))
        for f in try Sys.listDirectory(blobs) { try FileManager.default.removeItem(atPath: blobs + f) }
        let cold = try readRequests(try accordOK(["backup", "-d", s3Repo, root]))
        print("no-change backup on s3: \(cold) requests with no tree blob cached, \(warm) with them (PUTs of new blobs left out)")
        // The parent's manifest piece and its chunk list (and, when the piece is a delta, as
        // the scratch directory's times make it, its base) cost one ranged GET each without the cache.
        XCTAssertGreaterThanOrEqual(try Sys.listDirectory(blobs).count, 1, "filled again with what was read")
        XCTAssertTrue((1...3).contains(cold - warm), "\(cold - warm) more requests: a ranged GET for each tree blob the parent needs without the cache, none with it")
        XCTAssertEqual(try readRequests(try accordOK(["backup", "-d", s3Repo, root])), warm)
        for f in Files.regularFiles(under: blobs) { XCTAssertEqual(try mode(f), 0o600, f) }
    }

    /// `check` verifies what the bucket holds, not the cached copies: a
    /// manifest piece damaged in its pack is reported though `blobs/` holds it intact.
    func testCheckReadsTheBucketNotTheCachedTreeBlobs() throws {
        let root = try makeTree()
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, root])
        let dir = try cacheDirectory()
        XCTAssertGreaterThan(try Sys.listDirectory(dir + "/blobs").count, 0, "test setup: nothing cached")
        XCTAssertTrue(try accordOK(["check", "-d", s3Repo]).stdout.contains("no errors found"))
        // The manifest pieces are the pack's last blobs before its header: damage every tree blob of it.
        let repository = try Repository.open(backend: try S3Backend(server.location(prefix: prefix), environment: server.clientEnvironment, caFile: server.caFile))
        try repository.loadIndex()
        var damaged = 0
        repository.index.forEach { id, l in
            guard l.type == .tree else { return }
            let pack = self.storedRepository + "/data/" + String(repository.index.pack(of: l).hex.prefix(2)) + "/" + repository.index.pack(of: l).hex
            if (try? flipByte(inFile: pack, at: Int64(l.offset) + Int64(l.storedLength / 2))) != nil { damaged += 1 }
        }
        XCTAssertGreaterThan(damaged, 0, "test setup: no tree blob damaged")
        let r = try accord(["check", "-d", s3Repo])
        XCTAssertFalse(r.ok, "check passed on a bucket whose manifest is damaged, reading the cache:\n\(r)")
    }

    /// Nothing in `blobs/` is trusted: a flipped byte, a file cut short,
    /// another blob's bytes and a FIFO are each found out (decoded and
    /// verified as a pack's bytes are), the pack is read instead, and the
    /// file is replaced by the pack's bytes; a stray name is removed.
    func testABadCachedTreeBlobIsReadFromThePackInstead() throws {
        let root = try makeTreeWithSeveralPieces()
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, root])
        let dir = try cacheDirectory(), blobs = dir + "/blobs/"
        let names = try Sys.listDirectory(blobs).sorted()
        guard names.count >= 2 else { return XCTFail("\(names)") }
        var good: [String: [UInt8]] = [:]
        for n in names { good[n] = try Files.read(blobs + n) }
        var flipped = good[names[0]]!
        flipped[flipped.count / 2] ^= 0x01
        try Files.write(blobs + names[0], flipped)
        try FileManager.default.removeItem(atPath: blobs + names[1])
        XCTAssertEqual(mkfifo(blobs + names[1], 0o600), 0)
        try Files.write(blobs + "stray", Array("junk".utf8))

        let ls = try accordOK(["ls", "-d", s3Repo, "latest"], timeout: 60)
        XCTAssertTrue(ls.stdout.contains(root + "/f39") && ls.stdout.contains(root + "/big.sql"), ls.stdout)
        XCTAssertEqual(try Files.read(blobs + names[0]), good[names[0]], "the flipped file was replaced by the pack's bytes")
        let isFile = try Sys.lstat(blobs + names[1]).mode & 0o170000 == 0o100000
        XCTAssertTrue(isFile, "the FIFO was replaced")
        if isFile { XCTAssertEqual(try Files.read(blobs + names[1]), good[names[1]]) }
        XCTAssertFalse(Files.exists(blobs + "stray"), "a name that is no blob of the index is removed")

        // Cut short, and swapped for another blob's bytes: the same. (Removed
        // first: a FIFO left in place would hang the write and the reads below.)
        for n in names.prefix(2) { try? FileManager.default.removeItem(atPath: blobs + n) }
        try Files.write(blobs + names[0], Array(good[names[0]]!.prefix(good[names[0]]!.count - 1)))
        try Files.write(blobs + names[1], good[names[0]]!)
        let restored = scratch.sub("restored")
        try accordOK(["restore", "-d", s3Repo, "latest", "--target", restored])
        XCTAssertEqual(try Files.read(restored + root + "/big.sql"), try Files.read(root + "/big.sql"))
        for n in names.prefix(2) { XCTAssertEqual(try Files.read(blobs + n), good[n], n) }
    }

    /// In an encrypted repository the cache holds the pack's sealed bytes,
    /// never plaintext: each cached file is found, as it is, in a pack.
    func testCachedTreeBlobsOfAnEncryptedRepositoryAreTheSealedBytes() throws {
        try useEncryption()
        let root = try makeTreeWithSeveralPieces()
        try accordOK(["init", "-d", s3Repo])
        try accordOK(["backup", "-d", s3Repo, root])
        let dir = try cacheDirectory()
        let packs = try Files.regularFiles(under: storedRepository + "/data").map { Data(try Files.read($0)) }
        let cached = try Sys.listDirectory(dir + "/blobs")
        XCTAssertGreaterThanOrEqual(cached.count, 2)
        for n in cached {
            let bytes = Data(try Files.read(dir + "/blobs/" + n))
            XCTAssertTrue(packs.contains { $0.range(of: bytes) != nil }, "\(n) is not a pack's stored bytes")
        }
        let ls = try accordOK(["ls", "-d", s3Repo, "latest"])
        XCTAssertTrue(ls.stdout.contains(root + "/big.sql"), ls.stdout)
    }

    /// Tree blobs of snapshots pruned away leave the cache with them (when
    /// the next command loads the index), and only those.
    func testPruneTakesTheCachedTreeBlobsOfForgottenSnapshotsAway() throws {
        let root = try makeTreeWithSeveralPieces()
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, root])
        // Another tree, so the second snapshot has no parent: its pieces are no deltas on the first's,
        // which then are of no use once the first is forgotten.
        let other = scratch.sub("other")
        try TreeBuilder.mkdir(Array(other.utf8))
        var rng = SeededRandom(seed: 1604)
        try TreeBuilder.write(Array((other + "/big.sql").utf8), rng.bytes(6 << 20))
        try accordOK(["backup", "-d", s3Repo, other])
        let dir = try cacheDirectory()
        let both = Set(try Sys.listDirectory(dir + "/blobs"))
        try accordOK(["forget", "-d", s3Repo, "--keep-last", "1"])
        try accordOK(["prune", "-d", s3Repo, "--max-unused", "0"])
        try accordOK(["ls", "-d", s3Repo, "latest"])
        let kept = Set(try Sys.listDirectory(dir + "/blobs"))
        XCTAssertTrue(kept.isSubset(of: both) && kept.count < both.count, "\(kept) of \(both)")
        // Exactly what the snapshot left needs: the same set a cold read fills in.
        for f in kept { try FileManager.default.removeItem(atPath: dir + "/blobs/" + f) }
        try accordOK(["ls", "-d", s3Repo, "latest"])
        XCTAssertEqual(Set(try Sys.listDirectory(dir + "/blobs")), kept)
    }

    /// A manifest's pieces not cached yet are read with one ranged GET per
    /// pack, not one each; a piece damaged in the pack is still reported as
    /// that blob's damage (it is read again alone, and fails), never cached.
    func testAManifestsPiecesAreReadWithOneRequestPerPack() throws {
        let root = scratch.sub("many")
        try TreeBuilder.mkdir(Array(root.utf8))
        for i in 0..<2000 {   // a manifest of several 16 KiB pieces
            try TreeBuilder.write(Array((root + "/a-file-with-a-rather-long-name-to-fill-the-manifest-\(i)").utf8), Array("\(i)\n".utf8))
        }
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, root])
        let dir = try cacheDirectory(), blobs = dir + "/blobs/"
        XCTAssertGreaterThanOrEqual(try Sys.listDirectory(blobs).count, 6, "several manifest pieces")
        let warm = try readRequests(try accordOK(["backup", "-d", s3Repo, root]))
        for f in try Sys.listDirectory(blobs) { try FileManager.default.removeItem(atPath: blobs + f) }
        let cold = try readRequests(try accordOK(["backup", "-d", s3Repo, root]))
        // The parent's pieces lie in the first backup's pack, but for the few a
        // later backup rewrote (the scratch directory's times, above the tree),
        // stored as deltas on first-backup pieces: one more round for those bases.
        XCTAssertTrue(cold > warm && cold - warm <= 3, "\(cold - warm) requests for the parent's pieces: one per pack and one for the bases")
        // Exactly the latest snapshot's pieces: emptied, then filled by a read-only `ls`.
        for f in try Sys.listDirectory(blobs) { try FileManager.default.removeItem(atPath: blobs + f) }
        try accordOK(["ls", "-d", s3Repo, "latest"])
        let pieces = try Sys.listDirectory(blobs)
        guard pieces.count >= 6 else { return XCTFail("\(pieces.count) pieces cached") }

        // Damage one piece in the bucket's pack (found by its stored bytes), then read it cold.
        let victim = pieces.sorted()[1]
        let bytes = Data(try Files.read(blobs + victim))
        var hit: (path: String, at: Int)?
        for p in Files.regularFiles(under: storedRepository + "/data") {
            if let r = Data(try Files.read(p)).range(of: bytes) { hit = (p, r.lowerBound) }
        }
        let (pack, at) = try XCTUnwrap(hit)
        var packBytes = try Files.read(pack)
        packBytes[at + bytes.count / 2] ^= 0x01
        try Files.write(pack, packBytes)
        for f in try Sys.listDirectory(blobs) { try FileManager.default.removeItem(atPath: blobs + f) }
        let r = try accord(["ls", "-d", s3Repo, "latest"])
        XCTAssertNotEqual(r.status, 0, r.stdout)
        XCTAssertTrue(r.stderr.contains("blob \(victim)"), r.stderr)
        XCTAssertFalse(Files.exists(blobs + victim), "the damaged piece is not kept")
    }

    // MARK: The cache's place (review 23 M6)

    /// A cache folder of another user's is neither used nor cleaned: that
    /// user could swap it for a symlink and have root delete or write anywhere.
    func testACacheOfAnotherUserIsRefusedWithAWarningAndLeftAlone() throws {
        guard geteuid() == 0, let nobody = getpwnam("nobody") else { throw XCTSkip("needs root (chown to nobody)") }
        let root = try makeTree()
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, root])
        let dir = try cacheDirectory()
        try Files.write(dir + "/index/stray", Array("theirs".utf8))
        for p in [dir, dir + "/index", dir + "/index/stray"] {
            try Sys.lchown(Array(p.utf8), uid: nobody.pointee.pw_uid, gid: nobody.pointee.pw_gid)
        }
        let ls = try accordOK(["ls", "-d", s3Repo, "latest"])
        XCTAssertTrue(ls.stdout.contains(root + "/f39"), ls.stdout)
        XCTAssertTrue(ls.stderr.contains("not using the cache") && ls.stderr.contains("owned by uid \(nobody.pointee.pw_uid)"), ls.stderr)
        XCTAssertTrue(Files.exists(dir + "/index/stray"), "nothing deleted in another user's folder")

        // A base others may write (a shared $ACCORD_CACHE_DIR) is refused the same way.
        let shared = scratch.sub("shared")
        try Sys.mkdirs(Array(shared.utf8), mode: 0o700)
        try Sys.chmod(Array(shared.utf8), mode: 0o777)
        let r = try accordOK(["snapshots", "-d", s3Repo], environment: ["ACCORD_CACHE_DIR": shared])
        XCTAssertTrue(r.stderr.contains("others may write"), r.stderr)
        XCTAssertEqual(try Sys.listDirectory(shared), [], "nothing made in it")
    }

    /// A kind folder swapped for a symlink is not followed: the victim's files stay.
    func testASymlinkedCacheFolderIsNotFollowed() throws {
        let root = try makeTree()
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, root])
        let dir = try cacheDirectory()
        let victim = scratch.sub("victim")
        try TreeBuilder.mkdir(Array(victim.utf8))
        try Files.write(victim + "/important.conf", Array("precious\n".utf8))
        try FileManager.default.removeItem(atPath: dir + "/snapshots")
        try Sys.symlink(target: Array(victim.utf8), at: Array((dir + "/snapshots").utf8))
        let r = try accordOK(["snapshots", "-d", s3Repo])
        XCTAssertTrue(r.stderr.contains("not using the cache"), r.stderr)
        XCTAssertEqual(try Sys.listDirectory(victim), ["important.conf"], "nothing deleted or written in the symlink's target")
        XCTAssertEqual(try Files.read(victim + "/important.conf"), Array("precious\n".utf8))
    }

    /// A FIFO named like a cached index file: opened without blocking, found
    /// not to be a file, replaced by the bucket's object; the command ends.
    func testAFIFOInTheCacheDoesNotHangACommand() throws {
        let root = try makeTree()
        try accordOK(["init", "-d", s3Repo, "--encryption", "none"])
        try accordOK(["backup", "-d", s3Repo, root])
        let dir = try cacheDirectory()
        let index = try XCTUnwrap(try Sys.listDirectory(dir + "/index").first)
        try FileManager.default.removeItem(atPath: dir + "/index/" + index)
        XCTAssertEqual(mkfifo(dir + "/index/" + index, 0o600), 0)
        let r = try accordOK(["check", "-d", s3Repo], timeout: 60)
        XCTAssertTrue(r.stdout.contains("no errors found"), r.stdout)
        let isFile = try Sys.lstat(dir + "/index/" + index).mode & 0o170000 == 0o100000
        XCTAssertTrue(isFile, "the FIFO was replaced by the index file")
        if isFile { XCTAssertEqual(SHA256Hasher.hash(try Files.read(dir + "/index/" + index)).hex, index) }   // (reading a FIFO would hang the test)
    }
}
