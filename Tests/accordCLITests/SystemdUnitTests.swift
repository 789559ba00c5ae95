import Foundation
import XCTest
import AccordTestSupport

/// packaging/systemd: the nightly backup's service and timer. `systemd-analyze
/// verify` exits 0 on a misspelled key (it only warns), so any output at all is
/// a failure here, and a unit with a planted typo shows that the check sees one.
final class SystemdUnitTests: AccordTestCase {
    static let unitDirectory = AccordBinary.packageRoot + "/packaging/systemd"
    static let units = ["accord-backup.service", "accord-backup.timer"]
    static let installedBinary = "/usr/bin/accord"

    func analyzer() throws -> String {
        let path = "/usr/bin/systemd-analyze"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            XCTFail("\(path) is missing: `make deps` installs it (Debian package systemd)")
            throw XCTSkip("no systemd-analyze")
        }
        return path
    }

    /// Copies the units into the scratch directory, ExecStart pointing at the
    /// built binary (verify refuses a command that does not exist), `edit`
    /// applied to the service's text; returns their paths.
    func stagedUnits(_ edit: (String) -> String = { $0 }) throws -> [String] {
        let dir = scratch.sub("units")
        try Files.mkdir(dir)
        return try Self.units.map { name in
            var text = try String(contentsOfFile: Self.unitDirectory + "/" + name, encoding: .utf8)
            text = text.replacingOccurrences(of: "ExecStart=\(Self.installedBinary) ", with: "ExecStart=\(AccordBinary.path) ")
            if name.hasSuffix(".service") { text = edit(text) }
            try Files.write(dir + "/" + name, Array(text.utf8))
            return dir + "/" + name
        }
    }

    /// `systemd-analyze verify` on `paths`: nil when it passes with no output, else what it said.
    func verify(_ paths: [String]) throws -> String? {
        // --man=no: the man page is installed by the package (PackageTests verifies the installed units with it).
        let r = try runProcess(try analyzer(), ["verify", "--man=no"] + paths)
        let said = (r.stdout + r.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
        return r.ok && said.isEmpty ? nil : "exit \(r.status): \(said)"
    }

    func testUnitsVerifyWithoutAnyWarning() throws {
        let paths = try stagedUnits()
        let service = try String(contentsOfFile: paths[0], encoding: .utf8)
        XCTAssertTrue(service.contains("ExecStart=\(AccordBinary.path) -a backup $ACCORD_BACKUP_FLAGS"), "the units were not staged:\n\(service)")
        if let problem = try verify(paths) { XCTFail("systemd-analyze verify \(Self.units.joined(separator: " ")): \(problem)") }
    }

    /// The test above would pass on units systemd half ignores unless the check
    /// sees warnings: a misspelled key, a bad value, a missing binary each fail it.
    func testVerifyCatchesATypoABadValueAndAMissingBinary() throws {
        let edits: [(String, (String) -> String)] = [
            ("a misspelled key", { $0.replacingOccurrences(of: "PrivateTmp=yes", with: "PrivatTmp=yes") }),
            ("a bad value", { $0.replacingOccurrences(of: "ProtectSystem=strict", with: "ProtectSystem=strictly") }),
            ("a missing binary", { $0.replacingOccurrences(of: "ExecStart=\(AccordBinary.path) ", with: "ExecStart=/nonexistent/accord ") }),
        ]
        for (what, edit) in edits {
            let paths = try stagedUnits(edit)
            XCTAssertNotNil(try verify(paths), "verify passed a service with \(what)")
        }
    }

    /// What the units promise (README, "Running it in production"): daily with a
    /// random delay, caught up after downtime, hardened with the repository
    /// writable, the DR flags from an optional environment file, exit 3 a success.
    func testUnitsScheduleDailyAndHardenTheService() throws {
        let timer = try String(contentsOfFile: Self.unitDirectory + "/accord-backup.timer", encoding: .utf8)
        let service = try String(contentsOfFile: Self.unitDirectory + "/accord-backup.service", encoding: .utf8)
        let timerLines = Set(timer.split(separator: "\n").map(String.init))
        let serviceLines = Set(service.split(separator: "\n").map(String.init))
        for line in ["OnCalendar=*-*-* 01:00:00", "Persistent=true", "WantedBy=timers.target"] {
            XCTAssertTrue(timerLines.contains(line), "the timer has no \(line)")
        }
        XCTAssertTrue(timerLines.contains { $0.hasPrefix("RandomizedDelaySec=") }, "the timer has no random delay")
        for line in ["Type=oneshot", "ExecStart=\(Self.installedBinary) -a backup $ACCORD_BACKUP_FLAGS", "EnvironmentFile=-/etc/accord/backup.env",
                     "ProtectSystem=strict", "ReadWritePaths=-/opt/anaconda_backup", "ExecStartPre=+/usr/bin/install -d -m 0700 /opt/anaconda_backup", "PrivateTmp=yes", "NoNewPrivileges=yes",
                     "SuccessExitStatus=3", "UMask=0077"] {
            XCTAssertTrue(serviceLines.contains(line), "the service has no \(line)")
        }
        // The repository the service may write is the one `accord -a backup` uses by default.
        let help = try accordOK("-a", "backup", "--help").stdout
        XCTAssertTrue(help.contains("/opt/anaconda_backup"), "the default repository is no longer /opt/anaconda_backup: change ReadWritePaths\n\(help)")
    }

    /// The example environment file's flags are ones `accord -a backup` accepts:
    /// validation passes, and the run stops at the (missing) plan before any ssh.
    func testExampleEnvironmentFileHoldsFlagsTheLegacyParserAccepts() throws {
        let text = try String(contentsOfFile: AccordBinary.packageRoot + "/packaging/examples/backup.env", encoding: .utf8)
        let line = try XCTUnwrap(text.split(separator: "\n").map(String.init).first { $0.hasPrefix("#ACCORD_BACKUP_FLAGS=") },
                                 "packaging/examples/backup.env shows no #ACCORD_BACKUP_FLAGS= example")
        // systemd strips the quotes and splits the unquoted $ACCORD_BACKUP_FLAGS at spaces.
        let value = String(line.drop { $0 != "=" }.dropFirst()).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        let flags = value.split(separator: " ").map(String.init)
        XCTAssertTrue(flags.contains("-s") && flags.contains("-n"), "the example does not configure the DR node: \(line)")
        let r = try accord(["-a", "backup"] + flags + ["-d", repo, "--plan", scratch.sub("no-such-plan.yaml")])
        XCTAssertEqual(r.status, 1, "accord -a backup \(value):\n\(r)")
        XCTAssertTrue(r.stderr.contains("no-such-plan.yaml") && !r.stderr.contains("Usage:"), "\(r)")
    }

    /// The service's sandbox, as its directives make it, with the command line
    /// of its ExecStart: a private mount namespace where the whole tree is
    /// read-only (ProtectSystem=strict) but /tmp and /var/tmp (PrivateTmp:
    /// writable, private) and no privilege can be gained (NoNewPrivileges),
    /// UMask=0077. A backup of a plan with a dump command (the plan's `mktemp`,
    /// as the ae5 plan's gravity step) works with its repository in a writable
    /// place (the README's drop-in: ACCORD_REPOSITORY plus ReadWritePaths) and
    /// fails, creating nothing, with it anywhere else: the sandbox is real.
    func testBackupWorksInsideTheServiceSandboxAndOnlyThere() throws {
        guard getuid() == 0 else { throw XCTSkip("a mount namespace needs root") }
        let probe = try runProcess("/usr/bin/unshare", ["-m", "--propagation", "private", "true"])
        guard probe.ok else { throw XCTSkip("unshare -m is not permitted here: \(probe.stderr)") }
        let service = try String(contentsOfFile: Self.unitDirectory + "/accord-backup.service", encoding: .utf8)
        for directive in ["ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes", "UMask=0077"] {
            XCTAssertTrue(service.contains("\n\(directive)\n"), "the service has no \(directive): this test emulates it")
        }
        let exec = try XCTUnwrap(service.split(separator: "\n").first { $0.hasPrefix("ExecStart=") })
        let src = scratch.sub("src"), plan = scratch.sub("plan.yaml")
        try Files.mkdir(src)
        try Files.write(src + "/f", Array("data".utf8))
        try Files.write(plan, Array("""
            base: ae5-repos
            name: sandbox-test
            storage: {root: \(src), excludes: [], replace: ["."]}
            dumps:
            - path: /dump/out.sql
              command: 'f=$(mktemp) && echo "select 1;" > "$f" && cat "$f"; rc=$?; rm -f "$f"; exit $rc'
              profile: dump

            """.utf8))
        // ExecStart's words, the binary the built one, $ACCORD_BACKUP_FLAGS what backup.env would set.
        let words = exec.dropFirst("ExecStart=".count).split(separator: " ").flatMap { w -> [String] in
            w == Self.installedBinary ? [AccordBinary.path] : w == "$ACCORD_BACKUP_FLAGS" ? ["--plan", plan] : [String(w)]
        }
        func sandboxed(repository: String) throws -> CommandResult {
            let quoted = words.map { "'\($0)'" }.joined(separator: " ")
            let script = """
                set -e; mount --bind /tmp /tmp; mount --bind /var/tmp /var/tmp; mount -o remount,bind,ro /
                umask 0077; exec setpriv --no-new-privs env ACCORD_REPOSITORY='\(repository)' \(quoted)
                """
            return try runProcess("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/bash", "-c", script], timeout: 120)
        }
        let ok = try sandboxed(repository: repo)
        XCTAssertTrue(ok.ok && ok.stdout.contains("snapshot "), "the backup fails in the service's sandbox:\n\(ok)")
        XCTAssertEqual(snapshotFiles().count, 1, "\(ok)")
        let outside = "/var/lib/accord-sandbox-test-" + String(UInt64.random(in: 1 ... .max), radix: 16)
        let refused = try sandboxed(repository: outside)
        XCTAssertEqual(refused.status, 1, "a repository outside the writable paths:\n\(refused)")
        XCTAssertTrue(refused.stderr.contains("Read-only file system"), "\(refused)")
        XCTAssertFalse(Files.exists(outside), "the sandbox let accord create \(outside)")
    }
}
