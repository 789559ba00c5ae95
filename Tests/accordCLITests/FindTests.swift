import Foundation
import XCTest
import AccordCore
import AccordRuntime
import AccordTestSupport

/// `accord find` (issue 18): which snapshots hold a path matching a glob;
/// name and whole-path patterns, `*` stopping at "/" and `**` not, sets,
/// case folding, the --json schema, hostile names escaped, bad patterns refused.
final class FindTests: AccordTestCase {
    var src: String { scratch.sub("src") }

    func jsonLines(_ r: CommandResult) throws -> [[String: Any]] {
        try r.stdout.split(separator: "\n").map { line in
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
        }
    }

    /// Matched paths below `src`, with the short snapshot id: "id /rel".
    func found(_ args: String...) throws -> [String] {
        let r = try accordOK(["find", "-d", repo, "--json"] + args)
        return try jsonLines(r).filter { $0["message_type"] as? String == "match" }.map {
            "\($0["short_id"]!) \(($0["path"] as! String).dropFirst(src.count))"
        }
    }

    /// Two snapshots: `old.sql` only in the first, `new.SQL` only in the second.
    func twoSnapshots() throws -> (String, String) {
        try Files.mkdir(src + "/db")
        try Files.mkdir(src + "/db/deep")
        try Files.write(src + "/db/old.sql", Array("-- old\n".utf8))
        try Files.write(src + "/db/deep/keep.sql", Array("-- kept\n".utf8))
        try Files.write(src + "/notes.txt", Array("x".utf8))
        let first = String(try backup(src).id.prefix(8))
        try FileManager.default.removeItem(atPath: src + "/db/old.sql")
        try Files.write(src + "/db/new.SQL", Array("-- new\n".utf8))
        let second = String(try backup(src).id.prefix(8))
        return (first, second)
    }

    func testNamePatternsFindEachSnapshotHoldingAMatch() throws {
        let (a, b) = try twoSnapshots()
        XCTAssertEqual(try found("*.sql"), ["\(a) /db/deep/keep.sql", "\(a) /db/old.sql", "\(b) /db/deep/keep.sql"])
        XCTAssertEqual(try found("-i", "*.sql"), ["\(a) /db/deep/keep.sql", "\(a) /db/old.sql", "\(b) /db/deep/keep.sql", "\(b) /db/new.SQL"])
        XCTAssertEqual(try found("[no]??.*"), ["\(a) /db/old.sql", "\(b) /db/new.SQL"])
        XCTAssertEqual(try found("[!a-n]*.sql"), ["\(a) /db/old.sql"])
        XCTAssertEqual(try found("-s", b, "old.sql"), [], "-s limits the search to that snapshot")
        XCTAssertEqual(try found("notes.txt", "keep.sql").count, 4, "several patterns: a path matching any")

        let r = try accordOK("find", "-d", repo, "--json", "old.sql")
        let lines = try jsonLines(r)
        let m = try XCTUnwrap(lines.first)
        XCTAssertEqual(m["snapshot"] as? String, try XCTUnwrap(snapshotFiles().first { $0.hasPrefix(a) }))
        XCTAssertEqual(m["kind"] as? String, "file")
        XCTAssertEqual(m["size"] as? Int, 7)
        XCTAssertEqual(m["mode"] as? Int, 0o644)
        XCTAssertNotNil(Timestamp(rfc3339: m["mtime"] as? String ?? ""), "\(m)")
        XCTAssertEqual(lines.last?["message_type"] as? String, "summary")
        XCTAssertEqual(lines.last?["matches"] as? Int, 1)
        XCTAssertEqual(lines.last?["snapshots_matching"] as? Int, 1)
        XCTAssertEqual(lines.last?["snapshots_searched"] as? Int, 2)

        let text = try accordOK("find", "-d", repo, "new.SQL")
        XCTAssertTrue(text.stdout.contains("\(b)  ") && text.stdout.contains(src + "/db/new.SQL"), "\(text)")
        XCTAssertTrue(text.stdout.hasSuffix("1 match(es) in 1 of 2 snapshot(s)\n"), "\(text)")
    }

    func testPathPatternsStarStopsAtSlashGlobstarDoesNot() throws {
        let (a, b) = try twoSnapshots()
        XCTAssertEqual(try found(src + "/db/*.sql"), ["\(a) /db/old.sql"])
        XCTAssertEqual(try found(src + "/**.sql"), ["\(a) /db/deep/keep.sql", "\(a) /db/old.sql", "\(b) /db/deep/keep.sql"])
        XCTAssertEqual(try found("db/*/keep.sql"), ["\(a) /db/deep/keep.sql", "\(b) /db/deep/keep.sql"], "a relative path pattern matches a path's end")
        XCTAssertEqual(try found("b/*/keep.sql"), [], "…at a component boundary")
        XCTAssertEqual(try found(src + "/db?old.sql"), [], "? does not match /")
    }

    /// `ls --json`: one object per entry, in tree order, with the schema `find --json` uses.
    func testLsJSONPrintsOneObjectPerEntry() throws {
        try Files.mkdir(src)
        try Files.write(src + "/a", Array("12345".utf8), mode: 0o600)
        try FileManager.default.createSymbolicLink(atPath: src + "/link", withDestinationPath: "a")
        let id = try backup(src).id
        let r = try accordOK("ls", "-d", repo, "--json", id)
        let lines = try jsonLines(r)
        let mine = lines.filter { ($0["path"] as? String ?? "").hasPrefix(src) }
        XCTAssertEqual(mine.map { "\($0["kind"]!) \(($0["path"] as! String).dropFirst(src.count))" }, ["dir ", "file /a", "symlink /link"])
        XCTAssertEqual(lines.count, try accordOK("ls", "-d", repo, id).stdout.split(separator: "\n").count, "every entry ls lists")
        XCTAssertEqual(mine[1]["size"] as? Int, 5)
        XCTAssertEqual(mine[1]["mode"] as? Int, 0o600)
        XCTAssertEqual(mine[2]["link_target"] as? String, "a")
        XCTAssertNil(mine[1]["link_target"])
        XCTAssertEqual(try accord("ls", "-d", repo, "--json", "--long", id).status, 64)
    }

    func testHostileNamesAreEscapedAndBadPatternsRefused() throws {
        try Files.mkdir(src)
        try TreeBuilder.write(Array((src + "/evil\u{1b}[31m\nfake line.sql").utf8), Array("x".utf8))
        _ = try backup(src)
        let r = try accordOK("find", "-d", repo, "evil*")
        XCTAssertFalse(r.stdout.contains("\u{1b}"), "\(r)")
        XCTAssertTrue(r.stdout.contains("evil\\x1b[31m\\nfake line.sql"), "\(r)")
        XCTAssertEqual(r.stdout.split(separator: "\n").count, 2, "one match line and the summary: \(r)")
        for bad in ["[abc", "x\\", "[z-a]", ""] {
            let refused = try accord("find", "-d", repo, bad)
            XCTAssertEqual(refused.status, 64, "\(bad): \(refused)")
            XCTAssertTrue(refused.stderr.contains("pattern"), "\(bad): \(refused)")
        }
    }
}
