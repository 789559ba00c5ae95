import Foundation
import XCTest
import AccordCore
import AccordEngine
import AccordRuntime

/// `Forget.decide` and `latest` with snapshots dated in the future (a wrong
/// clock, or a snapshot forged to look newest, issue 13): they are kept as
/// suspect and take no keep slot, so genuine snapshots are never pushed out.
final class FutureSnapshotPolicyTests: XCTestCase {
    typealias Item = (id: SnapshotID, snapshot: Snapshot)
    let now = Timestamp(rfc3339: "2026-06-15T12:00:00Z")!

    func snap(_ t: String, host: String = "node1", plan: String = "paths", tags: [String] = []) -> Item {
        let time = Timestamp(rfc3339: t)!
        let s = Snapshot(time: time, host: host, username: "root", plan: plan, tags: tags, paths: ["/srv"],
                         sources: [], parent: nil, manifest: [BlobID(hashing: "manifest \(t)")], summary: .init())
        return (SnapshotID(hashing: "\(t) \(host) \(plan) \(tags)"), s)
    }

    func policy(last: Int = 0, daily: Int = 0, monthly: Int = 0) -> RetentionPolicy {
        var p = RetentionPolicy()
        p.last = last; p.daily = daily; p.monthly = monthly
        return p
    }

    func testFutureSnapshotsAreKeptAsSuspectAndTakeNoKeepSlot() {
        let genuine = (9...14).map { snap(String(format: "2026-06-%02dT03:00:00Z", $0)) }
        let forged = [snap("2099-01-01T00:00:00Z"), snap("2099-01-02T00:00:00Z"), snap("2026-06-20T00:00:00Z")]
        for p in [policy(daily: 3), policy(last: 2), policy(monthly: 1)] {
            let d = Forget.decide(genuine + forged, policy: p, now: now)
            let kept = Set(d.filter(\.keep).map(\.id))
            let without = Set(Forget.decide(genuine, policy: p, now: now).filter(\.keep).map(\.id))
            XCTAssertEqual(kept, without.union(forged.map(\.id)), "future snapshots changed which genuine ones are kept (\(p))")
            for f in d where forged.map(\.id).contains(f.id) {
                XCTAssertTrue(f.keep && f.suspect, "a future snapshot was not kept as suspect")
                XCTAssertEqual(f.reasons, ["suspect: dated in the future"])
            }
            XCTAssertFalse(d.contains { $0.suspect && genuine.map(\.id).contains($0.id) })
        }
        // Before the fix, keep-daily 3 kept the three forged days and removed every genuine snapshot.
        XCTAssertTrue(Forget.decide(genuine + forged, policy: policy(daily: 3), now: now).contains { $0.id == genuine.last!.id && $0.keep })
    }

    func testASnapshotWithinTheAllowedSkewIsAnOrdinarySnapshot() {
        // 23 hours ahead: a clock a little fast, within Repository.futureSkewSeconds (one day).
        let items = [snap("2026-06-14T03:00:00Z"), snap("2026-06-16T11:00:00Z")]
        let d = Forget.decide(items, policy: policy(last: 1), now: now)
        XCTAssertEqual(d.filter(\.keep).map(\.snapshot.time.rfc3339), [Timestamp(rfc3339: "2026-06-16T11:00:00Z")!.rfc3339])
        XCTAssertFalse(d.contains(where: \.suspect))
        XCTAssertFalse(Repository.isDatedInFuture(items[1].snapshot, now: now))
        XCTAssertTrue(Repository.isDatedInFuture(snap("2026-06-16T12:00:01Z").snapshot, now: now))
    }

    func testLatestSkipsFutureSnapshotsNamingThemAndFailsWhenOnlyThoseExist() throws {
        let dir = "/tmp/accord-future-" + hexString(Sys.randomBytes(5))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try Repository.initialize(at: dir)
        var warnings: [String] = []
        let forged = try r.saveSnapshot(snap("2099-01-01T00:00:00Z").snapshot)
        XCTAssertThrowsError(try r.resolveSnapshot("latest") { warnings.append($0) }, "latest picked the only, future snapshot")
        XCTAssertTrue(warnings.first?.contains("skipping snapshot \(forged.short)") ?? false, "\(warnings)")
        let real = try r.saveSnapshot(snap("2026-06-14T03:00:00Z").snapshot)
        warnings = []
        XCTAssertEqual(try r.resolveSnapshot("latest") { warnings.append($0) }, real)
        XCTAssertEqual(warnings.count, 1, "the skipped snapshot is not named: \(warnings)")
        XCTAssertEqual(try r.resolveSnapshot(forged.hex) { warnings.append($0) }, forged, "an id must still name a future snapshot")
        XCTAssertEqual(try r.latestSnapshot(matching: { $0.plan == "other" }, warn: { _ in })?.id, nil)
    }
}

/// Names of virtual files (`--command NAME=…`, a plan's dumps and Kubernetes
/// objects) checked by the engine itself, whoever calls it (issue 13).
final class VirtualPathTests: XCTestCase {
    func testOnlyAbsoluteCanonicalNamesAreAccepted() {
        for good in ["/db/dump.sql", "/a", "/kubernetes/secrets/default/x.yaml", "/a/..b/.c", "/sp ace/ü"] {
            XCTAssertNil(VirtualPath.problem(good), good)
        }
        for bad in ["", "/", "db/dump.sql", "/x/../..", "/a/./b", "/a//b", "/a/", "/..", "/.", "/a\u{0}b", "/" + String(repeating: "a", count: 5000)] {
            XCTAssertNotNil(VirtualPath.problem(bad), bad.debugDescription)
        }
    }

    func testTheEngineRefusesABadVirtualNameBeforeStoringAnything() throws {
        let dir = "/tmp/accord-vpath-" + hexString(Sys.randomBytes(5))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try Repository.initialize(at: dir)
        try r.loadIndex()
        for (commands, inline) in [([CommandSource(path: "/x/../..", command: "echo hi")], [InlineFile]()),
                                   ([], [InlineFile(path: "/kubernetes/secrets/ns/../../../etc/cron.d/x", bytes: [1])])] {
            var o = BackupOptions()
            o.commands = commands
            o.inlineFiles = inline
            o.threads = 1
            XCTAssertThrowsError(try Backup(repository: r, options: o).run()) { e in
                guard case BackupError.badCommandPath = e else { return XCTFail("\(e)") }
            }
        }
        XCTAssertEqual(try r.listSnapshotIDs(), [])
        XCTAssertEqual(try r.listPacks(), [])
    }
}
