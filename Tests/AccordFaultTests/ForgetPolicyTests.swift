import Foundation
import XCTest
import AccordCore
import AccordEngine

/// `Forget.decide` on synthetic snapshots with controlled times (the CLI
/// cannot set a snapshot's `time`). Semantics are restic's: a snapshot kept
/// by any rule is kept; rules apply per host + plan, newest first; a time
/// rule keeps the newest snapshot of each of the last N hours/days/ISO
/// weeks/months/years (UTC) that have one.
final class ForgetPolicyTests: XCTestCase {
    typealias Item = (id: SnapshotID, snapshot: Snapshot)

    func time(_ s: String) -> Timestamp {
        guard let t = Timestamp(rfc3339: s) else { fatalError("bad test time \(s)") }
        return t
    }

    func snap(_ t: String, host: String = "node1", plan: String = "paths", tags: [String] = []) -> Item {
        snap(time(t), host: host, plan: plan, tags: tags)
    }

    func snap(_ t: Timestamp, host: String = "node1", plan: String = "paths", tags: [String] = []) -> Item {
        let s = Snapshot(time: t, host: host, username: "root", plan: plan, tags: tags, paths: ["/srv"],
                         sources: [], parent: nil, manifest: [BlobID(hashing: "manifest \(t.rfc3339)")], summary: .init())
        return (SnapshotID(hashing: "\(t.rfc3339) \(host) \(plan) \(tags)"), s)
    }

    func policy(last: Int = 0, hourly: Int = 0, daily: Int = 0, weekly: Int = 0, monthly: Int = 0, yearly: Int = 0, tags: [String] = []) -> RetentionPolicy {
        var p = RetentionPolicy()
        p.last = last; p.hourly = hourly; p.daily = daily; p.weekly = weekly; p.monthly = monthly; p.yearly = yearly; p.tags = tags
        return p
    }

    /// Times (RFC 3339) of the snapshots kept.
    func kept(_ items: [Item], _ p: RetentionPolicy, plan: String? = nil) -> [String] {
        Forget.decide(items, policy: p, plan: plan).filter(\.keep).map { $0.snapshot.time.rfc3339 }.sorted()
    }

    func keptSet(_ items: [Item], _ p: RetentionPolicy, plan: String? = nil) -> Set<SnapshotID> {
        Set(Forget.decide(items, policy: p, plan: plan).filter(\.keep).map(\.id))
    }

    func full(_ s: String) -> String { time(s).rfc3339 }

    // MARK: Single rules

    func testKeepLastKeepsTheNewestNSnapshots() {
        let items = (1...6).map { snap("2026-03-0\($0)T12:00:00Z") }.shuffled()
        XCTAssertEqual(kept(items, policy(last: 2)), ["2026-03-05T12:00:00Z", "2026-03-06T12:00:00Z"].map(full))
        XCTAssertEqual(kept(items, policy(last: 10)).count, 6, "keep-last larger than the history keeps everything")
        let d = Forget.decide(items, policy: policy(last: 1))
        XCTAssertEqual(d.filter(\.keep).map(\.reasons), [["last"]])
    }

    func testDailyKeepsTheNewestSnapshotOfEachOfTheLastNDaysThatHaveOne() {
        // Days 1, 5 (three snapshots), 9, 20: "the last 3 days" means the last 3 *with* a snapshot.
        let items = [snap("2026-01-01T08:00:00Z"), snap("2026-01-05T01:00:00Z"), snap("2026-01-05T13:30:00Z"),
                     snap("2026-01-05T23:59:59.999999999Z"), snap("2026-01-09T00:00:00Z"), snap("2026-01-20T10:00:00Z")]
        XCTAssertEqual(kept(items, policy(daily: 3)),
                       ["2026-01-05T23:59:59.999999999Z", "2026-01-09T00:00:00Z", "2026-01-20T10:00:00Z"].map(full),
                       "the newest of each day is kept, not the first")
    }

    func testHourlyBucketsSplitExactlyOnTheHourInUTC() {
        let items = [snap("2026-05-01T10:00:00Z"), snap("2026-05-01T10:59:59.999999999Z"),
                     snap("2026-05-01T11:00:00Z"), snap("2026-05-01T11:00:00.000000001Z"), snap("2026-05-01T12:30:00Z")]
        XCTAssertEqual(kept(items, policy(hourly: 3)),
                       ["2026-05-01T10:59:59.999999999Z", "2026-05-01T11:00:00.000000001Z", "2026-05-01T12:30:00Z"].map(full))
    }

    func testWeeklyBucketsAreISOWeeksAcrossTheYearBoundary() {
        // 2020-12-28 (Mon) … 2021-01-03 (Sun) is ISO week 2020-W53; 2021-01-04 starts 2021-W01.
        // A %Y-%W (or %U) week would split 2020-12-31 from 2021-01-01.
        let items = [snap("2020-12-21T12:00:00Z"), snap("2020-12-28T12:00:00Z"), snap("2020-12-31T12:00:00Z"),
                     snap("2021-01-01T12:00:00Z"), snap("2021-01-03T23:00:00Z"), snap("2021-01-04T00:30:00Z")]
        XCTAssertEqual(kept(items, policy(weekly: 2)), ["2021-01-03T23:00:00Z", "2021-01-04T00:30:00Z"].map(full))
        XCTAssertEqual(kept(items, policy(weekly: 3)), ["2020-12-21T12:00:00Z", "2021-01-03T23:00:00Z", "2021-01-04T00:30:00Z"].map(full))
    }

    func testMonthlyAndYearlyBuckets() {
        let items = [snap("2023-12-31T23:59:59Z"), snap("2024-01-01T00:00:01Z"), snap("2024-01-31T10:00:00Z"),
                     snap("2024-02-01T10:00:00Z"), snap("2024-02-29T10:00:00Z"), snap("2024-03-01T00:00:00Z")]
        XCTAssertEqual(kept(items, policy(monthly: 2)), ["2024-02-29T10:00:00Z", "2024-03-01T00:00:00Z"].map(full))
        XCTAssertEqual(kept(items, policy(monthly: 4)),
                       ["2023-12-31T23:59:59Z", "2024-01-31T10:00:00Z", "2024-02-29T10:00:00Z", "2024-03-01T00:00:00Z"].map(full))
        XCTAssertEqual(kept(items, policy(yearly: 5)), ["2023-12-31T23:59:59Z", "2024-03-01T00:00:00Z"].map(full))
    }

    // MARK: Combining

    func testRulesCombineAsAUnionAndEachKeptSnapshotNamesItsReasons() {
        // Hourly snapshots over three days.
        var items: [Item] = []
        for day in 1...3 { for hour in stride(from: 0, to: 24, by: 6) { items.append(snap(String(format: "2026-07-%02dT%02d:00:00Z", day, hour))) } }
        let d = Forget.decide(items, policy: policy(last: 2, daily: 3))
        let keptTimes = d.filter(\.keep).map { $0.snapshot.time.rfc3339 }
        XCTAssertEqual(Set(keptTimes), Set(["2026-07-01T18:00:00Z", "2026-07-02T18:00:00Z", "2026-07-03T12:00:00Z", "2026-07-03T18:00:00Z"].map(full)))
        let newest = d.first { $0.snapshot.time.rfc3339 == full("2026-07-03T18:00:00Z") }!
        XCTAssertEqual(newest.reasons, ["last", "daily"])
        XCTAssertEqual(d.first { $0.snapshot.time.rfc3339 == full("2026-07-03T12:00:00Z") }!.reasons, ["last"])
        XCTAssertTrue(d.filter { !$0.keep }.allSatisfy(\.reasons.isEmpty))
    }

    func testKeepTagKeepsTaggedSnapshotsOfAnyAge() {
        let items = [snap("2020-01-01T00:00:00Z", tags: ["audit"]), snap("2021-01-01T00:00:00Z", tags: ["daily"]),
                     snap("2022-01-01T00:00:00Z", tags: ["audit", "daily"]), snap("2026-01-01T00:00:00Z")]
        let d = Forget.decide(items, policy: policy(last: 1, tags: ["audit"]))
        XCTAssertEqual(d.filter(\.keep).map { $0.snapshot.time.rfc3339 }, ["2020-01-01T00:00:00Z", "2022-01-01T00:00:00Z", "2026-01-01T00:00:00Z"].map(full))
        XCTAssertEqual(d[0].reasons, ["tag audit"])
        XCTAssertEqual(kept(items, policy(tags: ["audit", "daily"])).count, 3, "several --keep-tag: any of them keeps")
    }

    func testRulesApplyPerHostAndPlanGroup() {
        let items = [snap("2026-02-01T00:00:00Z", host: "a"), snap("2026-02-02T00:00:00Z", host: "a"),
                     snap("2026-02-01T00:00:00Z", host: "b"), snap("2026-02-03T00:00:00Z", host: "b"),
                     snap("2026-02-01T01:00:00Z", host: "a", plan: "ae5"), snap("2026-02-02T01:00:00Z", host: "a", plan: "ae5")]
        let d = Forget.decide(items, policy: policy(last: 1))
        let keptKeys = Set(d.filter(\.keep).map { "\($0.snapshot.host)/\($0.snapshot.plan)/\($0.snapshot.time.rfc3339.prefix(13))" })
        XCTAssertEqual(keptKeys, ["a/paths/2026-02-02T00", "b/paths/2026-02-03T00", "a/ae5/2026-02-02T01"],
                       "keep-last 1 keeps the newest of every host+plan group")
    }

    func testPlanFilterLeavesOtherPlansUntouched() {
        let items = [snap("2026-02-01T00:00:00Z", plan: "ae5"), snap("2026-02-02T00:00:00Z", plan: "ae5"),
                     snap("2026-02-03T00:00:00Z", plan: "ae5"), snap("2026-01-01T00:00:00Z", plan: "paths"),
                     snap("2026-01-02T00:00:00Z", plan: "paths"), snap("2026-01-01T00:00:00Z", host: "x", plan: "ae5-repos")]
        let d = Forget.decide(items, policy: policy(last: 1), plan: "ae5")
        XCTAssertEqual(d.filter { !$0.keep }.map { $0.snapshot.time.rfc3339 }, ["2026-02-01T00:00:00Z", "2026-02-02T00:00:00Z"].map(full))
        XCTAssertTrue(d.filter { $0.snapshot.plan != "ae5" }.allSatisfy { $0.keep && $0.reasons == ["other plan"] })
    }

    func testPreRestoreSnapshotsAreKeptByEveryPolicy() {
        let items = [snap("2019-05-05T05:05:05Z", tags: ["pre-restore"]), snap("2026-01-01T00:00:00Z"), snap("2026-01-02T00:00:00Z")]
        for p in [policy(last: 1), policy(daily: 1), policy(yearly: 1), policy(tags: ["other"])] {
            let d = Forget.decide(items, policy: p)
            XCTAssertEqual(d.first { $0.snapshot.tags == ["pre-restore"] }?.keep, true, "policy \(p) forgot a pre-restore snapshot")
        }
        XCTAssertEqual(Forget.decide(items, policy: policy(last: 1))[0].reasons, ["pre-restore"])
    }

    func testEverySnapshotGetsExactlyOneDecisionInTimeOrder() {
        var rng = SeededRandom(seed: 11)
        let items = (0..<60).map { _ in snap(Timestamp(seconds: 1_700_000_000 + Int64(rng.int(0..<50_000_000)), nanoseconds: Int64(rng.int(0..<1_000_000_000))),
                                             host: ["a", "b"][rng.int(0..<2)], plan: ["paths", "ae5"][rng.int(0..<2)]) }
        let d = Forget.decide(items, policy: policy(last: 3, weekly: 2))
        XCTAssertEqual(d.count, items.count)
        XCTAssertEqual(Set(d.map(\.id)), Set(items.map(\.id)))
        XCTAssertEqual(d.map(\.snapshot.time), d.map(\.snapshot.time).sorted())
    }

    // MARK: Against an independent reference

    /// restic's rules restated differently: for each rule, the distinct
    /// buckets in newest-first order, the first N of them, and the newest
    /// snapshot in each (buckets from Foundation's calendars, not strftime).
    func reference(_ items: [Item], _ p: RetentionPolicy) -> Set<SnapshotID> {
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        var iso = Calendar(identifier: .iso8601)
        iso.timeZone = TimeZone(identifier: "UTC")!
        func date(_ t: Timestamp) -> Date { Date(timeIntervalSince1970: Double(t.seconds)) }
        let rules: [(Int, (Timestamp) -> [Int])] = [
            (p.hourly, { let c = utc.dateComponents([.year, .month, .day, .hour], from: date($0)); return [c.year!, c.month!, c.day!, c.hour!] }),
            (p.daily, { let c = utc.dateComponents([.year, .month, .day], from: date($0)); return [c.year!, c.month!, c.day!] }),
            (p.weekly, { let c = iso.dateComponents([.yearForWeekOfYear, .weekOfYear], from: date($0)); return [c.yearForWeekOfYear!, c.weekOfYear!] }),
            (p.monthly, { let c = utc.dateComponents([.year, .month], from: date($0)); return [c.year!, c.month!] }),
            (p.yearly, { [utc.component(.year, from: date($0))] }),
        ]
        var keep = Set<SnapshotID>()
        let groups = Dictionary(grouping: items) { "\($0.snapshot.host)/\($0.snapshot.plan)" }
        for (_, g) in groups {
            let newestFirst = g.sorted { $0.snapshot.time > $1.snapshot.time }
            for x in newestFirst.prefix(p.last) { keep.insert(x.id) }
            for (n, bucket) in rules where n > 0 {
                var order: [[Int]] = []
                var newest: [[Int]: SnapshotID] = [:]
                for x in newestFirst {
                    let b = bucket(x.snapshot.time)
                    if newest[b] == nil { newest[b] = x.id; order.append(b) }
                }
                for b in order.prefix(n) { keep.insert(newest[b]!) }
            }
            for x in g where x.snapshot.tags.contains(where: { p.tags.contains($0) || $0 == "pre-restore" }) { keep.insert(x.id) }
        }
        return keep
    }

    func testDecisionsMatchAReferenceImplementationOnRandomHistories() {
        var rng = SeededRandom(seed: 0xF0E1)
        for round in 0..<(slowTestsEnabled ? 400 : 60) {
            // A few years of backups at irregular intervals (minutes to weeks), two hosts, two plans.
            var items: [Item] = []
            var t: Int64 = 1_600_000_000 + Int64(rng.int(0..<100_000_000))
            for _ in 0..<rng.int(1..<120) {
                t += Int64([rng.int(60..<3600), rng.int(3600..<86_400), rng.int(86_400..<1_500_000)][rng.int(0..<3)])
                let tags = rng.int(0..<10) == 0 ? ["audit"] : (rng.int(0..<30) == 0 ? ["pre-restore"] : [])
                items.append(snap(Timestamp(seconds: t, nanoseconds: Int64(rng.int(0..<1_000_000_000))),
                                  host: ["a", "b"][rng.int(0..<2)], plan: ["paths", "ae5"][rng.int(0..<2)], tags: tags))
            }
            let p = policy(last: rng.int(0..<4), hourly: rng.int(0..<5), daily: rng.int(0..<8), weekly: rng.int(0..<5),
                           monthly: rng.int(0..<13), yearly: rng.int(0..<3), tags: rng.int(0..<2) == 0 ? ["audit"] : [])
            let got = keptSet(items, p), want = reference(items, p)
            if got != want {
                let extra = got.subtracting(want).compactMap { id in items.first { $0.id == id }?.snapshot.time.rfc3339 }
                let missing = want.subtracting(got).compactMap { id in items.first { $0.id == id }?.snapshot.time.rfc3339 }
                return XCTFail("round \(round), policy \(p): kept but should not: \(extra.sorted()); forgotten but should be kept: \(missing.sorted())")
            }
        }
    }
}
