import Foundation
import XCTest
import AccordTestSupport

/// The packages an admin installs (`make deb`; README.md, "Running it in
/// production"). The install tests need the release build behind the package:
/// `make test` and `make package-test` build both packages first and set
/// ACCORD_PACKAGE_TESTS=1, under which a missing package fails the test. Else
/// they run when .build-dist holds one already or ACCORD_SLOW_TESTS=1 (building
/// it), and are skipped otherwise, saying so.
final class PackageTests: AccordTestCase {
    static let root = AccordBinary.packageRoot
    static let dist = root + "/.build-dist"
    static let packagesRequired = ProcessInfo.processInfo.environment["ACCORD_PACKAGE_TESTS"] == "1"

    /// Skips (or, under ACCORD_PACKAGE_TESTS=1, fails) for want of a package `make target` writes.
    func packageMissing(_ what: String, target: String) -> Error {
        if Self.packagesRequired { XCTFail("ACCORD_PACKAGE_TESTS=1 but \(what) is missing: `make \(target)` did not write it") }
        return XCTSkip("no \(what): run `make \(target)` or set ACCORD_SLOW_TESTS=1 (a release build)")
    }

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

    /// check-binary.sh's ldd rule on two real binaries: one linked with ISA-L
    /// (as accord was before it loaded it at run time) is refused, naming it;
    /// one needing only libc passes and gets its glibc floor written.
    func testCheckBinaryRefusesLinkedIsalAndAcceptsLibcAlone() throws {
        let withIsal = scratch.sub("with-isal.c"), libcAlone = scratch.sub("plain.c")
        try Files.write(withIsal, Array("#include <isa-l/igzip_lib.h>\nint main(int c, char **v) { if (c > 5) isal_deflate_stateless_init((void *)v); return 0; }\n".utf8))
        try Files.write(libcAlone, Array("int main(void) { return 0; }\n".utf8))
        let linked = scratch.sub("with-isal"), plain = scratch.sub("plain")
        let cc = try sh("cc -o '\(linked)' '\(withIsal)' -lisal && cc -o '\(plain)' '\(libcAlone)'")
        XCTAssertTrue(cc.ok, "cc:\n\(cc)")
        let refused = try runProcess("/bin/bash", [Self.root + "/packaging/check-binary.sh", linked, scratch.sub("floor1")])
        XCTAssertEqual(refused.status, 1, "\(refused)")
        XCTAssertTrue(refused.stderr.contains("links libisal.so.2 dynamically"), "ISA-L is not named:\n\(refused)")
        XCTAssertFalse(Files.exists(scratch.sub("floor1")), "a refused binary got a glibc floor")
        let accepted = try runProcess("/bin/bash", [Self.root + "/packaging/check-binary.sh", plain, scratch.sub("floor2")])
        XCTAssertTrue(accepted.ok, "a binary needing libc alone was refused:\n\(accepted)")
        let floor = try String(contentsOfFile: scratch.sub("floor2"), encoding: .utf8)
        XCTAssertNotNil(floor.range(of: #"^2\.[0-9]+\n$"#, options: .regularExpression), "floor: \(floor)")

        // A RUNPATH of $ORIGIN (SwiftPM's default) would make dlopen look for
        // libcurl.so.4 and libisal.so.2 beside the binary first: refused.
        let withOrigin = scratch.sub("with-origin")
        XCTAssertTrue(try sh("cc -o '\(withOrigin)' '\(libcAlone)' -Wl,--enable-new-dtags -Wl,-rpath,'$ORIGIN'").ok)
        let rpath = try runProcess("/bin/bash", [Self.root + "/packaging/check-binary.sh", withOrigin, scratch.sub("floor3")])
        XCTAssertEqual(rpath.status, 1, "\(rpath)")
        XCTAssertTrue(rpath.stderr.contains("RUNPATH") && rpath.stderr.contains("--disable-local-rpath"), "\(rpath)")
    }

    /// The deb only recommends libisal2: accord without ISA-L (forced here by
    /// ACCORD_NO_ISAL=1) says so in `accord version` and backs up with
    /// libdeflate, and what either writes the other reads back byte for byte.
    func testWithoutIsalBackupsAreTheSameFormatBothWays() throws {
        let noIsal = ["ACCORD_NO_ISAL": "1"]
        let version = try accordOK(["version"], environment: noIsal)
        XCTAssertTrue(version.stdout.contains("\ncompression: libdeflate at every level (ISA-L not loaded: ACCORD_NO_ISAL is set)\n"), "\(version)")
        let json = try accordOK(["version", "--json"], environment: noIsal)
        XCTAssertTrue(json.stdout.contains("\"isal\":null"), "\(json)")
        XCTAssertTrue(try accordOK("version").stdout.contains("\ncompression: igzip (ISA-L, /"), "libisal2 is installed (make deps) but not used")

        let a = try decodeBackupJSON(try accordOK(["backup", "-d", repo, "--json", "--command", "/db/a.sql=seq 1 300000"], environment: noIsal))
        let b = try decodeBackupJSON(try accordOK("backup", "-d", repo, "--json", "--command", "/db/b.sql=seq 1000000 1300000"))
        let expectedA = (1...300_000).map(String.init).joined(separator: "\n") + "\n"
        let expectedB = (1_000_000...1_300_000).map(String.init).joined(separator: "\n") + "\n"
        XCTAssertEqual(try accordOK("dump", "-d", repo, a.id, "/db/a.sql").stdout, expectedA, "libdeflate's blobs, read with ISA-L")
        XCTAssertEqual(try accordOK(["dump", "-d", repo, b.id, "/db/b.sql"], environment: noIsal).stdout, expectedB, "igzip's blobs, read without ISA-L")
        XCTAssertLessThan(a.summary.addedBytes, UInt64(expectedA.utf8.count / 2), "libdeflate did not compress: \(a.summary)")
        XCTAssertLessThan(b.summary.addedBytes, UInt64(expectedB.utf8.count / 2), "igzip did not compress: \(b.summary)")
        try accordOK(["check", "-d", repo, "--read-data"], environment: noIsal)
    }

    /// ISA-L really absent, not switched off: in a mount namespace where the
    /// system's libisal.so.2 is /dev/null, accord (which links no ISA-L) starts,
    /// names the loader's error in `accord version`, and backs up and reads back.
    func testWithTheSystemsIsalUnloadableAccordStillRunsAndSaysSo() throws {
        guard getuid() == 0 else { throw XCTSkip("masking libisal.so.2 needs root (a mount namespace)") }
        let lib = try sh("readlink -f \"$(ldconfig -p | sed -n 's/^[[:space:]]*libisal\\.so\\.2 (libc6[^)]*) => //p' | head -1)\"")
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(lib.hasPrefix("/") && Files.exists(lib), "libisal2 is not installed (make deps): '\(lib)'")
        let bin = AccordBinary.path
        let r = try runProcess("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/bash", "-c", """
            set -e; mount --bind /dev/null '\(lib)'
            '\(bin)' version
            '\(bin)' backup -d '\(repo)' --command '/db/c.sql=seq 1 200000' >/dev/null
            '\(bin)' dump -d '\(repo)' latest /db/c.sql | cmp - <(seq 1 200000) && echo same bytes
            """])
        XCTAssertTrue(r.ok, "\(r)")
        XCTAssertTrue(r.stdout.contains("\ncompression: libdeflate at every level (ISA-L not loaded: ") && r.stdout.contains("libisal.so.2"),
                      "accord version does not say why ISA-L is not loaded:\n\(r)")
        XCTAssertTrue(r.stdout.hasSuffix("same bytes\n"), "\(r)")
        XCTAssertTrue(try accordOK("version").stdout.contains("\ncompression: igzip (ISA-L, /"), "the mask leaked out of its mount namespace")
    }

    func debFile() throws -> String {
        func existing() -> String? {
            ((try? FileManager.default.contentsOfDirectory(atPath: Self.dist)) ?? [])
                .filter { $0.hasPrefix("accord_") && $0.hasSuffix(".deb") }.sorted().last.map { Self.dist + "/" + $0 }
        }
        if let d = existing() { return d }
        guard slowTestsEnabled else { throw packageMissing(".build-dist/accord_*.deb", target: "deb") }
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
        let depends = try sh("dpkg-deb --field '\(deb)' Depends").stdout
        let recommends = try sh("dpkg-deb --field '\(deb)' Recommends").stdout
        let floor = try String(contentsOfFile: Self.dist + "/glibc-floor", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(depends.contains("libc6 (>= \(floor))"), "Depends do not declare the glibc floor \(floor):\n\(depends)")
        XCTAssertFalse(depends.contains("libisal"), "ISA-L is a hard dependency:\n\(depends)")
        XCTAssertTrue(recommends.contains("libisal2"), "the deb does not recommend ISA-L:\n\(recommends)")
        XCTAssertFalse(depends.contains("libcurl"), "libcurl is a hard dependency (only s3: repositories load it):\n\(depends)")
        XCTAssertTrue(recommends.contains("libcurl4"), "the deb does not recommend libcurl4:\n\(recommends)")

        defer { _ = try? sh("dpkg -P accord >/dev/null 2>&1") }
        let install = try sh("dpkg -i '\(deb)' 2>&1", timeout: 300)
        XCTAssertTrue(install.ok, "dpkg -i:\n\(install)")

        let packageVersion = try sh("dpkg-deb --field '\(deb)' Version").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let version = try sh("accord version")
        XCTAssertTrue(version.ok && version.stdout.hasPrefix("accord \(packageVersion)\n"),
                      "accord version from PATH does not name the package's version \(packageVersion):\n\(version)")
        XCTAssertTrue(version.stdout.contains("built with Swift") && !version.stdout.contains("commit unknown"), "the release build has no commit:\n\(version)")
        let ldd = try sh("ldd /usr/bin/accord").stdout
        for lib in ["libswiftCore", "libFoundation", "libcrypto", "libz.so", "libdeflate", "libisal", "libcurl"] {
            XCTAssertFalse(ldd.contains(lib), "the installed binary links \(lib) dynamically:\n\(ldd)")
        }
        XCTAssertTrue(version.stdout.contains("\ncompression: igzip (ISA-L, /"), "libisal2 is installed (make deps) but the package's accord does not load it:\n\(version)")
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
            guard slowTestsEnabled else { throw packageMissing(".build-dist/conda-channel", target: "conda") }
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
        XCTAssertFalse(ldd.contains("libisal"), "ISA-L is linked, not loaded at run time:\n\(ldd)")
        let real = URL(fileURLWithPath: prefix).resolvingSymlinksInPath().path   // accord names it from /proc/self/exe
        XCTAssertTrue(version.stdout.contains("\ncompression: igzip (ISA-L, \(real)/lib/libisal.so.2) at levels 1-2"),
                      "the bundled ISA-L is not the one loaded:\n\(version)")
        for f in ["share/man/man1/accord.1", "share/bash-completion/completions/accord", "share/accord/systemd/accord-backup.timer",
                  "share/accord/examples/plan.yaml", "share/doc/accord/README.md", "conda-meta"] {
            XCTAssertTrue(Files.exists(prefix + "/" + f), "the conda prefix has no \(f)")
        }
        let man = try runProcess("/bin/sh", ["-c", "MANPAGER=cat MANWIDTH=100 man -l '\(prefix)/share/man/man1/accord.1'"])
        XCTAssertTrue(man.ok && man.stdout.contains("backup"), "\(man)")
    }
}
