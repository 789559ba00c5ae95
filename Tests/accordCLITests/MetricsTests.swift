import Foundation
import XCTest
import AccordCore
import AccordRuntime
import AccordTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Monitoring (issue 18): the Prometheus metrics file every backup, sync,
/// check, forget and prune writes (its values, its atomic replacement, the
/// last success kept after a failure, hostile content in an old file), the
/// step log, the settings keys, and contrib/'s alert rules and dashboard,
/// checked with Debian's promtool (package `prometheus`).
final class MetricsTests: AccordTestCase {
    var src: String { scratch.sub("src") }
    var promDir: String { scratch.sub("textfile") }
    var prom: String { promDir + "/accord.prom" }
    var logPath: String { scratch.sub("accord.log") }
    var monitor: [String] { ["--metrics-file", prom, "--log-file", logPath] }

    override func setUpWithError() throws {
        try super.setUpWithError()
        try Files.mkdir(src)
        try Files.mkdir(promDir)
        var rng = SeededRandom(seed: 1818)
        try Files.write(src + "/a.txt", rng.letterText(40_000))
        try Files.write(src + "/b.txt", rng.letterText(3_000))
    }

    // MARK: Reading what accord wrote (a parser of our own, not accord's)

    struct Sample { var name: String; var labels: [String: String]; var value: Double }

    /// The samples of a text-format file; fails on a line that is neither a
    /// comment nor `name{k="v",…} value`.
    func samples(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> [Sample] {
        let text = String(decoding: try Files.read(path), as: UTF8.self)
        var out: [Sample] = []
        for l in text.split(separator: "\n") where !l.hasPrefix("#") {
            guard let space = l.lastIndex(of: " "), let v = Double(l[l.index(after: space)...]) else {
                XCTFail("not a sample line: \(l)", file: file, line: line); continue
            }
            let series = l[..<space]
            var labels: [String: String] = [:]
            var name = String(series)
            if let brace = series.firstIndex(of: "{") {
                name = String(series[..<brace])
                var body = Array(series[series.index(after: brace)...].dropLast())   // without { and }
                while !body.isEmpty {
                    let eq = body.firstIndex(of: "=")!
                    let key = String(body[..<eq])
                    var i = eq + 2, value = ""
                    while body[i] != "\"" {
                        if body[i] == "\\" { i += 1; value.append(body[i] == "n" ? "\n" : body[i]) } else { value.append(body[i]) }
                        i += 1
                    }
                    labels[key] = value
                    body = Array(body[(i + 1)...].drop { $0 == "," })
                }
            }
            out.append(Sample(name: name, labels: labels, value: v))
        }
        return out
    }

    func value(_ s: [Sample], _ name: String, repository: String? = nil, plan: String? = nil,
               file: StaticString = #filePath, line: UInt = #line) -> Double? {
        let r = repository ?? repo
        let m = s.filter { $0.name == name && $0.labels["repository"] == r && $0.labels["plan"] == plan }
        XCTAssertLessThanOrEqual(m.count, 1, "\(name) written twice for \(r)", file: file, line: line)
        return m.first?.value
    }

    func now() -> Double { Date().timeIntervalSince1970 }

    var promtool: String? { ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) } }

    func requirePromtool() throws -> String {
        guard let p = promtool else { throw XCTSkip("promtool is missing: install Debian's `prometheus` package (`make deps` does)") }
        return p
    }

    /// Only the metrics file is left in its directory: no temporary file.
    func assertOnlyTheMetricsFile(file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try Sys.listDirectory(promDir), ["accord.prom"], "a temporary file was left beside the metrics file", file: file, line: line)
        XCTAssertEqual(try Sys.lstat(prom).permissions, 0o644, "node_exporter (its own user) must read it", file: file, line: line)
    }

    // MARK: Tests

    /// A backup writes its values; a failed one keeps the last success time
    /// and the values of that success, and records the failure and its exit code.
    func testBackupMetricsAndTheLastSuccessKeptAfterAFailure() throws {
        let before = now()
        let r = try accordOK(["backup", "-d", repo, "--json"] + monitor + [src])
        let snap = try decodeBackup(r)
        let after = now()
        try assertOnlyTheMetricsFile()
        var s = try samples(prom)
        let success = try XCTUnwrap(value(s, "accord_backup_last_success_timestamp_seconds"))
        let start = try XCTUnwrap(value(s, "accord_backup_last_start_timestamp_seconds"))
        XCTAssert(before - 1 <= start && start <= success && success <= after + 1, "start \(start), success \(success), run \(before)…\(after)")
        XCTAssertEqual(value(s, "accord_backup_last_failure_timestamp_seconds"), 0, "never failed: 0")
        XCTAssertEqual(value(s, "accord_backup_exit_code"), 0)
        XCTAssertEqual(value(s, "accord_backup_read_bytes"), Double(snap.summary.bytesRead))
        XCTAssertEqual(value(s, "accord_backup_added_bytes"), Double(snap.summary.addedBytes))
        XCTAssertEqual(value(s, "accord_backup_files"), 2)
        XCTAssertEqual(value(s, "accord_repository_snapshots"), 1)
        let stored = ["data", "index", "snapshots", "keys"].reduce(UInt64(Files.size(repo + "/config"))) { $0 + Files.bytes(under: repo + "/" + $1) }
        XCTAssertEqual(value(s, "accord_repository_size_bytes"), Double(stored))
        XCTAssertGreaterThanOrEqual(value(s, "accord_backup_duration_seconds") ?? -1, 0)

        // A failed backup: a source that does not exist.
        let failed = try accord(["backup", "-d", repo] + monitor + [scratch.sub("missing")])
        XCTAssertEqual(failed.status, 1, "\(failed)")
        try assertOnlyTheMetricsFile()
        s = try samples(prom)
        XCTAssertEqual(value(s, "accord_backup_last_success_timestamp_seconds"), success, "the last success is kept after a failure")
        XCTAssertGreaterThanOrEqual(value(s, "accord_backup_last_failure_timestamp_seconds") ?? 0, success)
        XCTAssertGreaterThan(value(s, "accord_backup_last_start_timestamp_seconds") ?? 0, start)
        XCTAssertEqual(value(s, "accord_backup_exit_code"), 1)
        XCTAssertEqual(value(s, "accord_backup_read_bytes"), Double(snap.summary.bytesRead), "a failure reports no values: the success's stay")

        // The step log: one line a step, RFC 3339 time first, mode 0600, appended.
        XCTAssertEqual(try Sys.lstat(logPath).permissions, 0o600)
        let lines = String(decoding: try Files.read(logPath), as: UTF8.self).split(separator: "\n").map(String.init)
        let steps = lines.map { $0.split(separator: " ").first { $0.hasPrefix("step=") } ?? "?" }
        XCTAssertEqual(steps, ["step=start", "step=snapshot", "step=end", "step=start", "step=end"], lines.joined(separator: "\n"))
        let rfc3339 = try NSRegularExpression(pattern: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z accord\[\d+\] command=backup repository=\S+ step="#)
        for l in lines { XCTAssertNotNil(rfc3339.firstMatch(in: l, range: NSRange(l.startIndex..., in: l)), l) }
        XCTAssert(lines[1].contains("id=\(snap.id.prefix(8))"), lines[1])
        XCTAssert(lines[2].hasSuffix("outcome=ok exit=0") || lines[2].contains("outcome=ok exit=0 "), lines[2])
        XCTAssert(lines[4].contains("outcome=failed exit=1") && lines[4].contains("error=\"backup source"), lines[4])
    }

    /// Backup, check, sync, forget, prune and a failing check all write into
    /// one file, which promtool accepts; every name contrib/ uses is in it.
    func testEveryCommandWritesOneFileThatPromtoolAcceptsAndContribUses() throws {
        let promtool = try requirePromtool()
        let dr = scratch.sub("dr")
        try accordOK(["backup", "-d", repo] + monitor + [src])
        var rng = SeededRandom(seed: 2)
        try Files.write(src + "/a.txt", rng.letterText(40_000))   // the first snapshot's a.txt becomes garbage for prune
        try accordOK(["backup", "-d", repo] + monitor + [src])
        try accordOK(["check", "-d", repo] + monitor)
        try accordOK(["sync", "-d", repo, "--to", dr] + monitor)
        try accordOK(["forget", "-d", repo, "--keep-last", "1"] + monitor)
        try accordOK(["prune", "-d", repo] + monitor)
        try accordOK(["forget", "-d", repo, "--keep-last", "1", "--dry-run"] + monitor)   // a dry run writes no metrics
        var s = try samples(prom)
        XCTAssertEqual(value(s, "accord_repository_snapshots"), 1)
        XCTAssertEqual(value(s, "accord_forget_removed_snapshots"), 1, "the dry run after it did not overwrite the value")
        XCTAssertEqual(value(s, "accord_sync_snapshots"), 2)
        XCTAssertGreaterThan(value(s, "accord_sync_sent_bytes") ?? 0, 0)
        XCTAssertGreaterThan(value(s, "accord_prune_freed_bytes") ?? 0, 0)
        XCTAssertEqual(value(s, "accord_check_errors"), 0)
        for c in ["backup", "check", "sync", "forget", "prune"] {
            XCTAssertGreaterThan(value(s, "accord_\(c)_last_success_timestamp_seconds") ?? 0, 0, c)
            XCTAssertEqual(value(s, "accord_\(c)_exit_code"), 0, c)
        }

        // A damaged pack: the check fails, and says so in the file.
        let pack = try XCTUnwrap(packFiles(of: repo).first)
        try Files.flipByte(pack, at: 40)
        let check = try accord(["check", "-d", repo, "--read-data"] + monitor)
        XCTAssertEqual(check.status, 1, "\(check)")
        s = try samples(prom)
        XCTAssertGreaterThan(value(s, "accord_check_last_failure_timestamp_seconds") ?? 0, value(s, "accord_check_last_success_timestamp_seconds") ?? .infinity,
                             "the AccordCheckFailed alert's condition holds")
        XCTAssertGreaterThan(value(s, "accord_check_errors") ?? 0, 0)
        XCTAssertEqual(value(s, "accord_check_exit_code"), 1)
        try assertOnlyTheMetricsFile()

        let lint = try runProcess(promtool, ["check", "metrics"], stdin: String(decoding: try Files.read(prom), as: UTF8.self))
        XCTAssertTrue(lint.ok && lint.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool check metrics:\n\(lint)")

        // Every metric the dashboard and the rules use is one accord wrote here.
        let written = Set(s.map(\.name))
        let contrib = AccordBinary.packageRoot + "/contrib"
        let used = try NSRegularExpression(pattern: #"\baccord_[a-z_]+\b"#)
        for f in ["grafana/accord-dashboard.json", "prometheus/accord-alerts.yml"] {
            let text = String(decoding: try Files.read(contrib + "/" + f), as: UTF8.self)
            let names = Set(used.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { String(text[Range($0.range, in: text)!]) })
            XCTAssertFalse(names.isEmpty, f)
            XCTAssertEqual(names.subtracting(written), [], "\(f) uses metrics accord does not write")
        }
        let dashboard = try JSONSerialization.jsonObject(with: Data(try Files.read(contrib + "/grafana/accord-dashboard.json"))) as? [String: Any]
        XCTAssertFalse((dashboard?["panels"] as? [Any] ?? []).isEmpty, "the dashboard has panels")
    }

    /// `promtool check rules` and `promtool test rules` on contrib/'s alerts:
    /// no backup success in 26 h, and a failed check.
    func testAlertRulesPassPromtool() throws {
        let promtool = try requirePromtool()
        let dir = AccordBinary.packageRoot + "/contrib/prometheus"
        let check = try runProcess(promtool, ["check", "rules", dir + "/accord-alerts.yml"])
        XCTAssertTrue(check.ok && check.stdout.contains("SUCCESS: 2 rules found"), "\(check)")
        let test = try runProcess(promtool, ["test", "rules", dir + "/accord-alerts.test.yml"])
        XCTAssertTrue(test.ok && test.stdout.contains("SUCCESS"), "\(test)")
    }

    /// The settings' metrics.file and log.file; under systemd the step lines
    /// also reach the journal (stderr). Neither file, nor stderr, holds the
    /// passphrase or the password file's path; a plan label is written when given.
    func testSettingsJournalAndNoSecrets() throws {
        let passwordFile = try useEncryption(passphrase: "s3cret-metrics-passphrase")
        let etc = scratch.sub("etc")
        try Files.mkdir(etc)
        chmod(etc, 0o755)
        let settings = etc + "/accord.yaml"
        try Files.write(settings, Array("metrics:\n  file: \(prom)\nlog:\n  file: \(logPath)\n".utf8))
        let stderrFile = scratch.sub("journal")
        try Files.write(stderrFile, [])
        let st = try Sys.lstat(stderrFile)
        let env = ["ACCORD_SETTINGS": settings, "INVOCATION_ID": "0123456789abcdef", "JOURNAL_STREAM": "\(st.device):\(st.inode)"]
        let child = try AccordBinary.start(["backup", "-d", repo, src], outputDirectory: scratch.path,
                                           environment: accordEnvironment.merging(env) { $1 })
        let r = child.finish()
        XCTAssertTrue(r.ok, "\(r)")
        // startProcess wrote stderr to its own file: the journal copy is in there only if fd 2 matched.
        XCTAssertFalse(r.stderr.contains("accord: command=backup"), "stderr that is not the journal stream got step lines:\n\(r)")
        let journal = try startProcess(AccordBinary.path, ["check", "-d", repo], environment: ProcessInfo.processInfo.environment.merging(accordEnvironment.merging(env) { $1 }) { $1 },
                                       stderrPath: stderrFile).finish()
        XCTAssertTrue(journal.ok, "\(journal)")
        XCTAssert(journal.stderr.contains("accord: command=check repository=\(repo) step=start"), "no step lines in the journal:\n\(journal)")
        XCTAssert(journal.stderr.contains("step=end outcome=ok exit=0"), "\(journal)")

        let s = try samples(prom)
        XCTAssertGreaterThan(value(s, "accord_backup_last_success_timestamp_seconds") ?? 0, 0, "metrics.file from the settings")
        XCTAssertGreaterThan(value(s, "accord_check_last_success_timestamp_seconds") ?? 0, 0)
        let log = String(decoding: try Files.read(logPath), as: UTF8.self)
        XCTAssert(log.contains("command=backup") && log.contains("command=check"), "log.file from the settings:\n\(log)")
        for (what, text) in [("metrics", String(decoding: try Files.read(prom), as: UTF8.self)), ("log", log), ("journal", journal.stderr)] {
            XCTAssertFalse(text.contains("s3cret-metrics-passphrase"), "the passphrase is in the \(what)")
            XCTAssertFalse(text.contains(passwordFile), "the password file's path is in the \(what)")
        }

        // A password command that fails saying its secret: stderr has it, the log does not.
        let leaky = try accord(["check", "-d", repo, "--log-file", logPath],
                               environment: ["ACCORD_PASSWORD_FILE": "", "ACCORD_PASSWORD_COMMAND": "echo leaked-s3cret >&2; exit 1", "ACCORD_SETTINGS": scratch.sub("none.yaml")])
        XCTAssertEqual(leaky.status, 1, "\(leaky)")
        let logged = String(decoding: try Files.read(logPath), as: UTF8.self)
        XCTAssert(logged.contains("no passphrase (why is on stderr, not logged)"), logged)
        XCTAssertFalse(logged.contains("leaked-s3cret"), logged)

        // A bad metrics file name is refused before anything runs.
        let bad = try accord(["check", "-d", repo, "--metrics-file", scratch.sub("accord.txt")])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssert(bad.stderr.contains(".prom"), "\(bad)")
    }

    /// The original command line (`accord -a backup`, as the systemd timer
    /// runs it) records its backup under the plan's label, failure included:
    /// here the plan file is missing, so the backup fails before any work.
    func testLegacyBackupRecordsThePlanLabel() throws {
        let plan = scratch.sub("missing-plan.yaml")
        let r = try accord(["-a", "backup", "-d", repo, "--plan", plan] + monitor)
        XCTAssertEqual(r.status, 1, "\(r)")
        let s = try samples(prom)
        XCTAssertEqual(value(s, "accord_backup_exit_code", plan: plan), 1)
        XCTAssertGreaterThan(value(s, "accord_backup_last_failure_timestamp_seconds", plan: plan) ?? 0, 0)
        XCTAssertEqual(value(s, "accord_backup_last_success_timestamp_seconds", plan: plan), 0, "never succeeded: 0, so the 26 h alert fires")
        XCTAssertNil(value(s, "accord_sync_exit_code", plan: plan), "no sync was asked for")
        let log = String(decoding: try Files.read(logPath), as: UTF8.self)
        XCTAssert(log.contains("command=backup plan=\(plan) repository=\(repo) step=end outcome=failed exit=1"), log)
    }

    /// A plan backup through the original command line, as the timer runs it
    /// (a plan file with no dumps and no objects, so no cluster is needed):
    /// its series carry the plan's name, and so do the log lines.
    func testLegacyPlanBackupIsLabelledWithThePlanName() throws {
        let plan = scratch.sub("site.yaml")
        try Files.write(plan, Array("base: ae5\nname: site-b\nstorage:\n  root: \(src)\n  excludes: []\n  replace: []\ndumps: []\nobjects: []\n".utf8))
        try accordOK(["-a", "backup", "-d", repo, "--plan", plan] + monitor)
        let s = try samples(prom)
        XCTAssertEqual(value(s, "accord_backup_exit_code", plan: "site-b"), 0, "\(s.map { "\($0.name) \($0.labels)" })")
        XCTAssertGreaterThan(value(s, "accord_backup_last_success_timestamp_seconds", plan: "site-b") ?? 0, 0)
        XCTAssertEqual(value(s, "accord_backup_files", plan: "site-b"), 2)
        XCTAssertEqual(value(s, "accord_repository_snapshots"), 1, "the repository's series has no plan label")
        let log = String(decoding: try Files.read(logPath), as: UTF8.self)
        XCTAssert(log.contains("command=backup plan=site-b repository=\(repo) step=end outcome=ok exit=0"), log)
    }

    /// Backups of four repositories at once, into one metrics file: each
    /// run's read-merge-replace holds the directory's lock, so none loses
    /// another's series.
    func testConcurrentRunsKeepEachOthersSeries() throws {
        let repos = (0..<4).map { scratch.sub("repo\($0)") }
        let children = try repos.map { try start(["backup", "-d", $0, "--metrics-file", prom, src]) }
        for c in children { let r = c.finish(); XCTAssertTrue(r.ok, "\(r)") }
        let s = try samples(prom)
        for r in repos {
            XCTAssertGreaterThan(value(s, "accord_backup_last_success_timestamp_seconds", repository: r) ?? 0, 0, "\(r)'s series was lost")
            XCTAssertEqual(value(s, "accord_repository_snapshots", repository: r), 1)
        }
        try assertOnlyTheMetricsFile()
    }

    /// An old metrics file is untrusted bytes: garbage, foreign and malformed
    /// lines are dropped, another repository's series kept, a label with a
    /// quote, a backslash and a newline written escaped and read back intact.
    func testHostileOldFileAndEscapedLabels() throws {
        let promtool = try requirePromtool()
        let odd = scratch.sub("re\"po\\x\ny")
        let other = "accord_backup_last_success_timestamp_seconds{repository=\"/elsewhere\"} 1234"
        let junk = [other, "garbage line", "accord_backup_exit_code{repository=\"/x\" 7", "accord_unknown_metric 1",
                    "accord_backup_files{repository=\"/y\",repository=\"/z\"} 1", "accord_backup_files{repository=\"/w\"} 1 2 3",
                    String(repeating: "accord_backup_files{a=\"", count: 2000), "\u{1b}[31m\0\u{ff}"]
        try Files.write(prom, Array(junk.joined(separator: "\n").utf8))
        try accordOK(["backup", "-d", odd, "--metrics-file", prom, src])
        try accordOK(["check", "-d", odd, "--metrics-file", prom])
        let s = try samples(prom)
        XCTAssertEqual(value(s, "accord_backup_last_success_timestamp_seconds", repository: "/elsewhere"), 1234, "another repository's series is kept")
        XCTAssertEqual(Set(s.map { $0.labels["repository"]! }), ["/elsewhere", odd], "malformed lines were dropped: \(s.map(\.labels))")
        XCTAssertGreaterThan(value(s, "accord_backup_last_success_timestamp_seconds", repository: odd) ?? 0, 0, "the escaped label reads back")
        XCTAssertEqual(value(s, "accord_check_exit_code", repository: odd), 0)
        let lint = try runProcess(promtool, ["check", "metrics"], stdin: String(decoding: try Files.read(prom), as: UTF8.self))
        XCTAssertTrue(lint.ok, "promtool check metrics:\n\(lint)")
        try assertOnlyTheMetricsFile()

        // A symbolic link in place of the file (the collector's directory may be
        // writable by node_exporter's user) is neither followed nor replaced.
        let target = scratch.sub("not-metrics")
        try Files.write(target, Array("precious\n".utf8))
        try Sys.unlink(prom)
        XCTAssertEqual(symlink(target, prom), 0)
        let linked = try accord(["check", "-d", odd, "--metrics-file", prom])
        XCTAssertTrue(linked.ok && linked.stderr.contains("cannot write the metrics file \(prom)"), "the command's own outcome stands, with a warning:\n\(linked)")
        XCTAssertEqual(try Files.read(target), Array("precious\n".utf8))
        XCTAssertEqual(try Sys.lstat(prom).isSymlink, true)
        try Sys.unlink(prom)

        // A file too large to be ours is replaced, not read (and said).
        try Files.write(prom, [UInt8](repeating: 0x61, count: (1 << 20) + 1))
        let big = try accordOK(["check", "-d", odd, "--metrics-file", prom])
        XCTAssert(big.stderr.contains("replacing it without reading"), "\(big)")
        XCTAssertEqual(Set(try samples(prom).map(\.name)), Set(["last_start_timestamp_seconds", "last_success_timestamp_seconds", "last_failure_timestamp_seconds",
                                                              "duration_seconds", "exit_code", "errors"].map { "accord_check_" + $0 }
                                                             + ["accord_repository_snapshots", "accord_repository_size_bytes"]),
                       "only the check's own series: the old content was not read")
    }
}
