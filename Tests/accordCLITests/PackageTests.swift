import Foundation
import XCTest
import AccordTestSupport

/// The packages an admin installs (`make deb`; README.md, "Running it in
/// production"). The install test needs the release build behind the package:
/// it runs when ACCORD_SLOW_TESTS=1 (building the package if need be) or when
/// .build-dist holds one already, and is skipped otherwise, saying so.
final class PackageTests: AccordTestCase {
    static let root = AccordBinary.packageRoot
    static let dist = root + "/.build-dist"

    func sh(_ script: String, timeout: Double = 180) throws -> CommandResult {
        try runProcess("/bin/sh", ["-c", script], timeout: timeout)
    }

    /// The example plan shipped in the package is one `accord plan show` accepts.
    func testExamplePlanFileLoads() throws {
        let r = try accordOK("plan", "show", "--plan", Self.root + "/packaging/examples/plan.yaml")
        XCTAssertTrue(r.stdout.contains("name: ae5-site-b"), "\(r)")
    }

    /// check-binary.sh is what keeps the package self-contained: the debug
    /// build (Swift runtime and libcrypto shared) must be refused, naming them.
    func testCheckBinaryRefusesADynamicallyLinkedSwiftRuntime() throws {
        let floor = scratch.sub("floor")
        let r = try runProcess("/bin/bash", [Self.root + "/packaging/check-binary.sh", AccordBinary.path, floor])
        XCTAssertEqual(r.status, 1, "\(r)")
        XCTAssertTrue(r.stderr.contains("libswiftCore.so"), "the shared Swift runtime is not named:\n\(r)")
        XCTAssertFalse(Files.exists(floor), "a refused binary got a glibc floor")
    }

    func debFile() throws -> String {
        func existing() -> String? {
            ((try? FileManager.default.contentsOfDirectory(atPath: Self.dist)) ?? [])
                .filter { $0.hasPrefix("accord_") && $0.hasSuffix(".deb") }.sorted().last.map { Self.dist + "/" + $0 }
        }
        if let d = existing() { return d }
        guard slowTestsEnabled else { throw XCTSkip("no .build-dist/accord_*.deb: run `make deb` or set ACCORD_SLOW_TESTS=1 (a release build)") }
        let r = try runProcess("/usr/bin/make", ["-C", Self.root, "deb"], timeout: 3600)
        XCTAssertTrue(r.ok, "make deb failed:\n\(r)")
        return try XCTUnwrap(existing(), "make deb wrote no .build-dist/accord_*.deb")
    }

    /// dpkg -i, then `accord version`, `man accord`, the completions and the
    /// installed units (verified with their man page) work; an enabled timer is
    /// disabled on removal; dpkg -r leaves none of the package's files.
    func testDebInstallsWorksAndRemovesWithoutATrace() throws {
        let deb = try debFile()
        guard getuid() == 0 else { throw XCTSkip("dpkg -i needs root") }
        let before = try sh("dpkg-query -W -f='${Status}' accord 2>/dev/null; test -e /usr/bin/accord && echo ' /usr/bin/accord exists'")
        guard !before.stdout.contains("install ok installed"), !before.stdout.contains("/usr/bin/accord exists") else {
            throw XCTSkip("accord is installed on this machine already (\(before.stdout)): not replacing it")
        }
        let files = try sh("dpkg-deb --fsys-tarfile '\(deb)' | tar -t | sed 's|^\\./|/|' | grep -v '/$'").stdout
            .split(separator: "\n").map(String.init)
        XCTAssertTrue(files.contains("/usr/bin/accord") && files.contains("/usr/share/man/man1/accord.1.gz"), "\(files)")
        let control = try sh("dpkg-deb --field '\(deb)' Version Depends").stdout
        let floor = try String(contentsOfFile: Self.dist + "/glibc-floor", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(control.contains("libc6 (>= \(floor))") && control.contains("libisal2"), "Depends do not declare the glibc floor \(floor) and ISA-L:\n\(control)")

        defer { _ = try? sh("dpkg -P accord >/dev/null 2>&1") }
        let install = try sh("dpkg -i '\(deb)' 2>&1", timeout: 300)
        XCTAssertTrue(install.ok, "dpkg -i:\n\(install)")

        let packageVersion = try sh("dpkg-deb --field '\(deb)' Version").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let version = try sh("accord version")
        XCTAssertTrue(version.ok && version.stdout.hasPrefix("accord \(packageVersion)\n"),
                      "accord version from PATH does not name the package's version \(packageVersion):\n\(version)")
        XCTAssertTrue(version.stdout.contains("built with Swift") && !version.stdout.contains("commit unknown"), "the release build has no commit:\n\(version)")
        let ldd = try sh("ldd /usr/bin/accord").stdout
        for lib in ["libswiftCore", "libFoundation", "libcrypto", "libz.so", "libdeflate"] {
            XCTAssertFalse(ldd.contains(lib), "the installed binary links \(lib) dynamically:\n\(ldd)")
        }
        let man = try sh("MANPAGER=cat MANWIDTH=100 man accord 2>&1")
        XCTAssertTrue(man.ok && man.stdout.contains("accord") && man.stdout.contains("backup"), "man accord:\n\(man)")
        let completion = try sh("bash -c '. /usr/share/bash-completion/completions/accord && complete -p accord'")
        XCTAssertTrue(completion.ok && completion.stdout.contains("accord"), "the bash completion does not load:\n\(completion)")
        let verify = try sh("systemd-analyze verify /usr/lib/systemd/system/accord-backup.service /usr/lib/systemd/system/accord-backup.timer 2>&1")
        XCTAssertTrue(verify.ok && verify.stdout.isEmpty, "the installed units do not verify cleanly (with their man page):\n\(verify)")
        let enable = try sh("systemctl enable accord-backup.timer 2>&1; test -L /etc/systemd/system/timers.target.wants/accord-backup.timer")
        XCTAssertTrue(enable.ok, "systemctl enable (offline) did not link the timer:\n\(enable)")

        let remove = try sh("dpkg -r accord 2>&1", timeout: 300)
        XCTAssertTrue(remove.ok, "dpkg -r:\n\(remove)")
        for f in files + ["/etc/systemd/system/timers.target.wants/accord-backup.timer"] {
            XCTAssertFalse(Files.exists(f), "dpkg -r left \(f)")
        }
        let status = try sh("dpkg-query -W -f='${Status}' accord 2>/dev/null || true").stdout
        XCTAssertFalse(status.contains("ok installed"), "dpkg still lists accord as installed after dpkg -r: \(status)")
    }

    /// The conda package: `make conda`'s channel (indexed by py-rattler) is
    /// solved and installed into a fresh prefix with no network at all (a new
    /// network namespace), then the prefix's `accord version` runs, finding the
    /// bundled ISA-L in the prefix, and the glibc floor is declared.
    func testCondaPackageInstallsOfflineFromALocalChannelAndRuns() throws {
        let channel = Self.dist + "/conda-channel"
        func package() -> String? {
            ((try? FileManager.default.contentsOfDirectory(atPath: channel + "/linux-64")) ?? [])
                .filter { $0.hasPrefix("accord-") && $0.hasSuffix(".conda") }.sorted().last
        }
        if package() == nil {
            guard slowTestsEnabled else { throw XCTSkip("no .build-dist/conda-channel: run `make conda` or set ACCORD_SLOW_TESTS=1 (a release build)") }
            let r = try runProcess("/usr/bin/make", ["-C", Self.root, "conda"], timeout: 3600)
            XCTAssertTrue(r.ok, "make conda failed:\n\(r)")
        }
        let name = try XCTUnwrap(package(), "make conda wrote no package into \(channel)/linux-64")
        let floor = try String(contentsOfFile: Self.dist + "/glibc-floor", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let repodata = try String(contentsOfFile: channel + "/linux-64/repodata.json", encoding: .utf8)
        XCTAssertTrue(repodata.contains("\"\(name)\"") && repodata.contains("__glibc >=\(floor)"),
                      "the channel's repodata does not list \(name) with __glibc >=\(floor):\n\(repodata)")

        let prefix = scratch.sub("env")
        let python = Self.dist + "/venv/bin/python"
        let install = try runProcess("/usr/bin/unshare", ["--net", python, Self.root + "/packaging/conda/channel.py", "install", channel, prefix], timeout: 300)
        XCTAssertTrue(install.ok && install.stdout.contains("installed accord "), "offline install from the local channel:\n\(install)")
        let version = try runProcess(prefix + "/bin/accord", ["version"])
        let expected = name.dropFirst("accord-".count).split(separator: "-").first.map(String.init) ?? "?"
        XCTAssertTrue(version.ok && version.stdout.hasPrefix("accord \(expected)\n"), "the prefix's accord version:\n\(version)")
        let ldd = try runProcess("/usr/bin/ldd", [prefix + "/bin/accord"]).stdout
        XCTAssertTrue(ldd.contains("libisal.so.2 => \(prefix)/bin/../lib/libisal.so.2") || ldd.contains("libisal.so.2 => \(prefix)/lib/libisal.so.2"),
                      "the bundled ISA-L is not the one loaded:\n\(ldd)")
        for f in ["share/man/man1/accord.1", "share/bash-completion/completions/accord", "share/accord/systemd/accord-backup.timer",
                  "share/accord/examples/plan.yaml", "share/doc/accord/README.md", "conda-meta"] {
            XCTAssertTrue(Files.exists(prefix + "/" + f), "the conda prefix has no \(f)")
        }
        let man = try runProcess("/bin/sh", ["-c", "MANPAGER=cat MANWIDTH=100 man -l '\(prefix)/share/man/man1/accord.1'"])
        XCTAssertTrue(man.ok && man.stdout.contains("backup"), "\(man)")
    }
}
