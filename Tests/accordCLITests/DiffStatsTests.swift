import Foundation
import XCTest
import AccordCore
import AccordTestSupport

/// `accord diff` and `accord stats`, read-only views of snapshots: each kind of
/// change found once and only once (tree order "a" < "a/b" < "a-c" included),
/// sizes and ratios that add up, names escaped, bad snapshot names refused.
final class DiffStatsTests: AccordTestCase {
    var src: String { scratch.sub("src") }

    func jsonLines(_ r: CommandResult) throws -> [[String: Any]] {
        try r.stdout.split(separator: "\n").map { line in
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
        }
    }

    /// Two snapshots of `src` with one change of every kind between them.
    func twoSnapshots() throws -> (String, String) {
        var rng = SeededRandom(seed: 18)
        try Files.mkdir(src + "/a")
        try Files.mkdir(src + "/t")
        try Files.write(src + "/same", rng.letterText(5000))
        try Files.write(src + "/grows", rng.letterText(100))
        try Files.write(src + "/rewritten", Array("0123456789".utf8))
        try Files.write(src + "/chmodded", Array("x".utf8), mode: 0o644)
        try Files.write(src + "/a/b", Array("gone".utf8))
        try Files.write(src + "/t/becomes-dir", Array("file".utf8))
        try FileManager.default.createSymbolicLink(atPath: src + "/link", withDestinationPath: "same")
        let first = try backup(src).id
        try Files.append(src + "/grows", Array("more".utf8))
        try Files.write(src + "/rewritten", Array("9876543210".utf8))        // same size, new content
        XCTAssertEqual(chmod(src + "/chmodded", 0o600), 0)
        try FileManager.default.removeItem(atPath: src + "/a/b")
        try Files.write(src + "/a-c", Array("new".utf8))
        try FileManager.default.removeItem(atPath: src + "/t/becomes-dir")
        try Files.mkdir(src + "/t/becomes-dir")
        try FileManager.default.removeItem(atPath: src + "/link")
        try FileManager.default.createSymbolicLink(atPath: src + "/link", withDestinationPath: "grows")
        let second = try backup(src).id
        return (first, second)
    }

    func testDiffFindsEveryKindOfChangeOnceInTreeOrder() throws {
        let (a, b) = try twoSnapshots()
        let r = try accordOK("diff", "-d", repo, "--json", a, b)
        let lines = try jsonLines(r)
        let changes = lines.filter { $0["message_type"] as? String == "change" }
        let got = changes.map { "\($0["change"]!) \($0["kind"]!) \(($0["path"] as! String).dropFirst(src.count))" }
        // Directories whose entries changed get a new mtime: metadata changes, listed apart.
        XCTAssertEqual(got.filter { !$0.hasPrefix("metadata dir ") }, [
            "removed file /a/b", "added file /a-c", "metadata file /chmodded", "modified file /grows", "modified symlink /link",
            "modified file /rewritten", "modified dir /t/becomes-dir"], "all changes: \(got)")
        XCTAssertEqual(Set(got.filter { $0.hasPrefix("metadata dir ") }), ["metadata dir ", "metadata dir /a", "metadata dir /t"], "\(got)")
        let summary = try XCTUnwrap(lines.last)
        XCTAssertEqual(summary["message_type"] as? String, "summary")
        let added = summary["added"] as? [String: Any], removed = summary["removed"] as? [String: Any]
        XCTAssertEqual(added?["entries"] as? Int, 1)
        XCTAssertEqual(added?["bytes"] as? Int, 3)
        XCTAssertEqual(removed?["bytes"] as? Int, 4)
        let modified = summary["modified"] as? [String: Any]
        XCTAssertEqual(modified?["entries"] as? Int, changes.filter { $0["change"] as? String == "modified" }.count)
        // grows: 100 → 104; rewritten: 10 → 10; becomes-dir: 4 → 0 (a directory); link: a symlink, no bytes.
        XCTAssertEqual(modified?["old_bytes"] as? Int, 114)
        XCTAssertEqual(modified?["new_bytes"] as? Int, 114)
        let typeChange = try XCTUnwrap(changes.first { ($0["path"] as? String)?.hasSuffix("/t/becomes-dir") == true })
        XCTAssertEqual(typeChange["old_kind"] as? String, "file")
        XCTAssertEqual(typeChange["kind"] as? String, "dir")

        let text = try accordOK("diff", "-d", repo, a, b).stdout
        XCTAssertTrue(text.contains("+ \(src)/a-c  (3 B)\n") && text.contains("- \(src)/a/b  (4 B)\n")
                      && text.contains("M \(src)/grows  (100 B -> 104 B)\n") && text.contains("U \(src)/chmodded\n"), text)
        XCTAssertFalse(text.contains("/same"), "an unchanged file is listed:\n\(text)")
    }

    func testDiffOfASnapshotWithItselfIsEmptyAndBadNamesAreRefused() throws {
        try Files.mkdir(src)
        try Files.write(src + "/f", Array("x".utf8))
        let id = try backup(src).id
        let r = try accordOK("diff", "-d", repo, "--json", id, "latest")
        XCTAssertEqual(try jsonLines(r).count, 1, "changes between a snapshot and itself:\n\(r)")
        let bad = try accord("diff", "-d", repo, id, "ffffffff")
        XCTAssertEqual(bad.status, 1, "\(bad)")
        XCTAssertTrue(bad.stderr.contains("ffffffff") && !bad.signaled, "\(bad)")
        let missingArgument = try accord("diff", "-d", repo, id)
        XCTAssertEqual(missingArgument.status, 64, "\(missingArgument)")
    }

    /// A name with a newline and an escape sequence cannot fake a line or reach the terminal raw.
    func testDiffEscapesHostileNames() throws {
        try Files.mkdir(src)
        try Files.write(src + "/plain", Array("x".utf8))
        let first = try backup(src).id
        let hostile = src + "/evil\n+ etc-shadow\u{1b}[2J"
        try Files.write(hostile, Array("x".utf8))
        let second = try backup(src).id
        let r = try accordOK("diff", "-d", repo, first, second)
        XCTAssertFalse(r.stdoutBytes.contains(0x1b), "a raw ESC reached stdout:\n\(r)")
        XCTAssertFalse(r.stdout.split(separator: "\n").contains { $0.hasPrefix("+ etc-shadow") }, "a name faked a line:\n\(r)")
        XCTAssertTrue(r.stdout.contains("evil\\n+ etc-shadow\\x1b[2J"), "\(r)")
        let j = try accordOK("diff", "-d", repo, "--json", first, second)
        XCTAssertFalse(j.stdoutBytes.contains(0x1b), "\(j)")
        XCTAssertEqual(try jsonLines(j).count, j.stdout.split(separator: "\n").count)
    }

    func testStatsAddUpAcrossSnapshotsThatShareContent() throws {
        var rng = SeededRandom(seed: 1818)
        try Files.mkdir(src)
        try Files.write(src + "/shared", rng.letterText(3 << 20))
        let first = try backup(src).id
        try Files.write(src + "/second-only", rng.letterText(1 << 20))
        let second = try backup(src).id
        let r = try accordOK("stats", "-d", repo, "--json")
        let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdoutBytes)) as? [String: Any], "\(r)")
        let snaps = try XCTUnwrap(o["snapshots"] as? [[String: Any]])
        XCTAssertEqual(snaps.map { $0["id"] as? String }, [first, second])
        func int(_ d: [String: Any]?, _ k: String) -> Int { (d?[k] as? Int) ?? -1 }
        XCTAssertEqual(int(snaps[0], "logical_bytes"), 3 << 20)
        XCTAssertEqual(int(snaps[1], "logical_bytes"), 4 << 20)
        let total = o["total"] as? [String: Any], repository = o["repository"] as? [String: Any]
        XCTAssertEqual(int(total, "logical_bytes"), 7 << 20)
        // The shared file is stored once: the set's raw bytes are about 4 MiB, not 7.
        XCTAssertLessThan(int(total, "raw_bytes"), int(snaps[0], "raw_bytes") + int(snaps[1], "raw_bytes"))
        XCTAssertGreaterThan(int(total, "raw_bytes"), 4 << 20)
        XCTAssertGreaterThan((total?["deduplication_ratio"] as? Double) ?? 0, 1.5)
        XCTAssertGreaterThan((total?["compression_ratio"] as? Double) ?? 0, 1.2, "letter text compresses")
        // What only the second snapshot needs is what it added (its file and manifest), less than all it needs.
        XCTAssertLessThan(int(snaps[1], "exclusive_stored_bytes"), int(snaps[1], "stored_bytes"))
        XCTAssertGreaterThan(int(snaps[1], "exclusive_stored_bytes"), 0)
        // Every blob is one of these two snapshots': the repository is the set.
        XCTAssertEqual(int(repository, "blobs"), int(total, "unique_blobs"))
        XCTAssertEqual(int(repository, "stored_bytes"), int(total, "stored_bytes"))
        XCTAssertEqual(int(total, "missing_blobs"), 0)

        let one = try accordOK("stats", "-d", repo, "--json", first)
        let s1 = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(one.stdoutBytes)) as? [String: Any])?["snapshots"] as? [[String: Any]])
        XCTAssertEqual(s1.count, 1)
        XCTAssertEqual(int(s1[0], "exclusive_stored_bytes"), int(s1[0], "stored_bytes"), "alone, a snapshot's blobs are all its own")
        let text = try accordOK("stats", "-d", repo).stdout
        XCTAssertTrue(text.contains("2 snapshot(s): 7.00 MiB logical in 3 files"), text)
    }

    func testStatsOfAnEmptyRepositoryAndOfAnUnknownSnapshot() throws {
        try accordOK("init", "-d", repo)
        let r = try accordOK("stats", "-d", repo, "--json")
        let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdoutBytes)) as? [String: Any])
        XCTAssertEqual((o["snapshots"] as? [Any])?.count, 0)
        XCTAssertEqual((o["total"] as? [String: Any])?["logical_bytes"] as? Int, 0)
        let bad = try accord("stats", "-d", repo, "0123abcd")
        XCTAssertEqual(bad.status, 1, "\(bad)")
        XCTAssertTrue(bad.stderr.contains("0123abcd"), "\(bad)")
    }
}
