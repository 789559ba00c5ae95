import Foundation
import AccordCore
import AccordRuntime

/// Which snapshots to keep (restic's semantics): a snapshot kept by any rule
/// is kept. Rules apply per group (host + plan), newest first; a time rule
/// keeps the newest snapshot of each of the last N hours/days/… that have one.
public struct RetentionPolicy: Sendable {
    public var last = 0, hourly = 0, daily = 0, weekly = 0, monthly = 0, yearly = 0
    public var tags: [String] = []
    public init() {}
    public var isEmpty: Bool { last + hourly + daily + weekly + monthly + yearly == 0 && tags.isEmpty }
}

public struct ForgetDecision {
    public var id: SnapshotID
    public var snapshot: Snapshot
    public var keep: Bool
    public var reasons: [String]
    /// Dated in the future (`Repository.isDatedInFuture`): kept, but it took no keep slot.
    public var suspect = false
}

public enum Forget {
    /// Decides for every snapshot. Snapshots tagged `pre-restore` are always
    /// kept (a safety copy taken before a restore); forget them by id.
    /// Snapshots dated more than `Repository.futureSkewSeconds` after `now` are
    /// suspect: kept (forget them by id) and left out of every rule, so a wrong
    /// clock or a forged date cannot push genuine snapshots out of the keep slots.
    public static func decide(_ snapshots: [(id: SnapshotID, snapshot: Snapshot)], policy: RetentionPolicy, plan: String? = nil,
                              now: Timestamp = .now()) -> [ForgetDecision] {
        var out: [ForgetDecision] = []
        let groups = Dictionary(grouping: snapshots) { "\($0.snapshot.host)\u{0}\($0.snapshot.plan)" }
        for key in groups.keys.sorted() {
            let group = groups[key]!.sorted { $0.snapshot.time > $1.snapshot.time }
            if let p = plan, group.first?.snapshot.plan != p {
                out += group.map { ForgetDecision(id: $0.id, snapshot: $0.snapshot, keep: true, reasons: ["other plan"]) }
                continue
            }
            let rules: [(String, Int, (Timestamp) -> String)] = [
                ("last", policy.last, { t in "\(t.seconds)\(t.nanoseconds)" }),
                ("hourly", policy.hourly, { t in bucket(t, "%Y-%m-%d %H") }),
                ("daily", policy.daily, { t in bucket(t, "%Y-%m-%d") }),
                ("weekly", policy.weekly, { t in bucket(t, "%G-%V") }),
                ("monthly", policy.monthly, { t in bucket(t, "%Y-%m") }),
                ("yearly", policy.yearly, { t in bucket(t, "%Y") }),
            ]
            var counts = [Int](repeating: 0, count: rules.count)
            var lastKey = [String?](repeating: nil, count: rules.count)
            for (id, s) in group {
                if Repository.isDatedInFuture(s, now: now) {
                    out.append(ForgetDecision(id: id, snapshot: s, keep: true, reasons: ["suspect: dated in the future"], suspect: true))
                    continue
                }
                var reasons: [String] = []
                for (i, rule) in rules.enumerated() where rule.1 > 0 && counts[i] < rule.1 {
                    let k = rule.2(s.time)
                    if k != lastKey[i] {
                        lastKey[i] = k
                        counts[i] += 1
                        reasons.append(rule.0)
                    }
                }
                for t in policy.tags where s.tags.contains(t) { reasons.append("tag \(t)") }
                if s.tags.contains("pre-restore") { reasons.append("pre-restore") }
                out.append(ForgetDecision(id: id, snapshot: s, keep: !reasons.isEmpty, reasons: reasons))
            }
        }
        return out.sorted { $0.snapshot.time < $1.snapshot.time }
    }

    static func bucket(_ t: Timestamp, _ format: String) -> String {
        var time = time_t(t.seconds)
        var tmv = tm()
        gmtime_r(&time, &tmv)
        var buf = [Int8](repeating: 0, count: 64)
        let n = strftime(&buf, 64, format, &tmv)
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Removes snapshot files (the index and packs are untouched: run prune).
    public static func remove(_ ids: [SnapshotID], from repository: Repository) throws {
        for id in ids { try repository.deleteSnapshot(id) }
    }
}
