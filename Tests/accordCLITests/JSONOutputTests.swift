import Foundation
import XCTest
import AccordCore
import AccordRuntime
import AccordTestSupport

/// `check --json`, `forget --json` and `prune --json`: all of stdout is one
/// JSON object (no human text or progress mixed in), its values agree with
/// the repository on disk and with the text output, and the exit codes are
/// those of the text output.
final class JSONOutputTests: AccordTestCase {
    var src: String { scratch.sub("src") }

    /// All of stdout as one JSON object on one line.
    func object(_ r: CommandResult, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "stdout is not one line:\n\(r)", file: file, line: line)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdoutBytes)) as? [String: Any], "not a JSON object:\n\(r)", file: file, line: line)
    }

    /// Three snapshots of `src`, each with a 300 kB random file of its own (so forgetting one frees space).
    func threeSnapshots() throws -> [String] {
        var rng = SeededRandom(seed: 21)
        try Files.mkdir(src)
        try Files.write(src + "/shared", rng.bytes(50_000))
        var ids: [String] = []
        for round in 0..<3 {
            try Files.write(src + "/own", rng.bytes(300_000))
            ids.append(try backup(src, extra: ["--tag", "round\(round)"]).id)
        }
        return ids
    }

    func packBytes() throws -> UInt64 {
        try packFiles().reduce(0) { $0 + (try Sys.lstat(Array($1.utf8))).size }
    }

    func testCheckJSONAgreesWithTheRepositoryAndTheTextAndFailsLikeIt() throws {
        let ids = try threeSnapshots()
        let o = try object(try accordOK("check", "-d", repo, "--json"))
        XCTAssertEqual(o["message_type"] as? String, "check")
        XCTAssertEqual(o["ok"] as? Bool, true)
        XCTAssertEqual(o["snapshots"] as? Int, ids.count)
        XCTAssertEqual(o["packs"] as? Int, packFiles().count)
        XCTAssertEqual(o["errors"] as? [String], [])
        XCTAssertEqual(o["read_data"] as? Bool, false)
        XCTAssertEqual(o["bytes_read"] as? Int, 0)
        let blobs = try XCTUnwrap(o["blobs"] as? Int)
        let text = try accordOK("check", "-d", repo).stdout
        XCTAssertTrue(text.contains("checked \(ids.count) snapshots, \(packFiles().count) packs, \(blobs) blobs"), "text and JSON disagree:\n\(text)\n\(o)")

        let read = try object(try accordOK("check", "-d", repo, "--json", "--read-data"))
        XCTAssertEqual(read["read_data"] as? Bool, true)
        XCTAssertGreaterThan(read["bytes_read"] as? Int ?? 0, 300_000, "a --read-data check read less than one snapshot's own file: \(read)")

        // A pack gone: exit 1 as in text, the JSON still whole on stdout, the problem in it.
        let gone = try XCTUnwrap(packFiles().first)
        try FileManager.default.removeItem(atPath: gone)
        let r = try accord("check", "-d", repo, "--json")
        XCTAssertEqual(r.status, 1, "\(r)")
        let bad = try object(r)
        XCTAssertEqual(bad["ok"] as? Bool, false)
        let errors = try XCTUnwrap(bad["errors"] as? [String])
        XCTAssertFalse(errors.isEmpty, "\(bad)")
        XCTAssertTrue(errors.joined().contains(String(gone.split(separator: "/").last!.prefix(8))), "no error names the missing pack \(gone): \(errors)")
        XCTAssertTrue(r.stderr.contains("check failed"), "\(r)")
    }

    func testForgetJSONListsEveryDecisionWithItsReasonsAndRemovesWhatItSays() throws {
        let ids = try threeSnapshots()
        let dry = try object(try accordOK("forget", "-d", repo, "--keep-last", "1", "--keep-tag", "round0", "--dry-run", "--json"))
        XCTAssertEqual(dry["message_type"] as? String, "forget")
        XCTAssertEqual(dry["dry_run"] as? Bool, true)
        XCTAssertEqual(dry["removed"] as? [String], [ids[1]], "\(dry)")
        XCTAssertEqual(dry["kept"] as? Int, 2)
        XCTAssertEqual(snapshotNames().count, 3, "--dry-run removed snapshots")
        let listed = try XCTUnwrap(dry["snapshots"] as? [[String: Any]])
        XCTAssertEqual(listed.compactMap { $0["id"] as? String }, ids, "every snapshot, oldest first")
        XCTAssertEqual(listed.map { $0["reasons"] as? [String] ?? ["?"] }, [["tag round0"], [], ["last"]])
        XCTAssertEqual(listed.map { $0["keep"] as? Bool }, [true, false, true])
        XCTAssertEqual(listed[2]["tags"] as? [String], ["round2"])
        XCTAssertEqual(listed[2]["short_id"] as? String, String(ids[2].prefix(8)))
        XCTAssertEqual(listed[0]["suspect"] as? Bool, false)

        let real = try object(try accordOK("forget", "-d", repo, "--keep-last", "1", "--keep-tag", "round0", "--json"))
        XCTAssertEqual(real["dry_run"] as? Bool, false)
        XCTAssertEqual(real["removed"] as? [String], [ids[1]])
        XCTAssertEqual(snapshotNames(), [ids[0], ids[2]].sorted(), "forget removed other snapshots than it said")

        let named = try object(try accordOK("forget", "-d", repo, "--json", String(ids[0].prefix(10))))
        XCTAssertEqual(named["removed"] as? [String], [ids[0]])
        let only = try XCTUnwrap((named["snapshots"] as? [[String: Any]])?.first)
        XCTAssertEqual(only["reasons"] as? [String], ["named"])
        XCTAssertEqual(only["keep"] as? Bool, false)
        XCTAssertEqual(snapshotNames(), [ids[2]])
    }

    func testPruneJSONCountsThePacksAndBytesOnDisk() throws {
        let ids = try threeSnapshots()
        try accordOK("forget", "-d", repo, ids[0], ids[1])
        let before = try packBytes(), packsBefore = packFiles().count

        let dry = try object(try accordOK("prune", "-d", repo, "--json", "--dry-run"))
        XCTAssertEqual(dry["message_type"] as? String, "prune")
        XCTAssertEqual(dry["dry_run"] as? Bool, true)
        XCTAssertEqual(packFiles().count, packsBefore, "--dry-run changed packs")
        XCTAssertEqual(try packBytes(), before)

        let r = try accordOK("prune", "-d", repo, "--json")
        let o = try object(r)
        let total = try XCTUnwrap(o["packs_total"] as? Int), deleted = try XCTUnwrap(o["packs_deleted"] as? Int)
        let repacked = try XCTUnwrap(o["packs_repacked"] as? Int), written = try XCTUnwrap(o["packs_written"] as? Int)
        XCTAssertEqual(total, packsBefore)
        XCTAssertEqual(packFiles().count, total - deleted - repacked + written, "the pack counts do not add up to what is on disk: \(o)")
        XCTAssertEqual(o["bytes_before"] as? Int, Int(before))
        XCTAssertEqual(o["bytes_after"] as? Int, Int(try packBytes()), "\(o)")
        let freed = try XCTUnwrap(o["bytes_freed"] as? Int)
        XCTAssertEqual(freed, Int(before) - Int(try packBytes()))
        XCTAssertGreaterThan(freed, 300_000, "two forgotten 300 kB random files freed too little: \(o)")
        XCTAssertGreaterThan(dry["bytes_freed"] as? Int ?? 0, 300_000, "the dry run foresaw too little: \(dry)")
        try assertCheckPasses(nil, "after prune --json")
    }

    func testForgetPruneJSONNestsThePruneObject() throws {
        let ids = try threeSnapshots()
        let o = try object(try accordOK("forget", "-d", repo, "--keep-last", "1", "--prune", "--json"))
        XCTAssertEqual(o["removed"] as? [String], Array(ids.prefix(2)))
        let prune = try XCTUnwrap(o["prune"] as? [String: Any], "\(o)")
        XCTAssertEqual(prune["message_type"] as? String, "prune")
        XCTAssertGreaterThan(prune["bytes_freed"] as? Int ?? 0, 300_000, "\(prune)")
    }
}
