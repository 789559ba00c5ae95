import ArgumentParser
import Foundation
import AccordCore
import AccordS3
import AccordSync

/// What this accord is: its release, the formats it speaks, how it was built.
/// Defined once here; `accord version`, `accord --version` (both parsers) and
/// the packages (`make deb`, `make conda` read `release` through `accord
/// version --json`) all print these.
enum AccordVersion {
    /// The release, a semantic version: the major number changes when an
    /// accord can no longer read what the previous one wrote.
    static let release = "0.21.0"

    /// The git commit the binary was built from, when the build said so:
    /// `make release` writes `BuildCommit.generated.swift` (ignored by git) and
    /// builds with `-DACCORD_BUILD_COMMIT`; nothing is asked of git at run time.
    static var commit: String? {
        #if ACCORD_BUILD_COMMIT
        return accordBuildCommit
        #else
        return nil
        #endif
    }

    /// The compiler, to the minor version (`#if compiler` knows no more).
    static let swift: String = {
        #if compiler(>=6.5)
        return "6.5 or later"
        #elseif compiler(>=6.4)
        return "6.4"
        #elseif compiler(>=6.3)
        return "6.3"
        #else
        return "6.2 or earlier"
        #endif
    }()

    static let os: String = {
        #if os(Linux)
        return "linux"
        #elseif os(macOS)
        return "macos"
        #else
        return "unknown-os"
        #endif
    }()

    static let arch: String = {
        #if arch(x86_64)
        return "x86_64"
        #elseif arch(arm64)
        return "aarch64"
        #else
        return "unknown-arch"
        #endif
    }()

    /// The C library accord runs on (not the one it was built against): the
    /// packages declare a floor, and this is what an admin compares with it
    /// (`confstr` says "glibc 2.36").
    static var libc: String? {
        #if os(Linux)
        var buffer = [CChar](repeating: 0, count: 64)   // "glibc 2.36"
        let n = confstr(Int32(_CS_GNU_LIBC_VERSION), &buffer, buffer.count)
        guard n > 0, n <= buffer.count else { return nil }
        return String(decoding: buffer.prefix(n - 1).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #else
        return nil
        #endif
    }

    static var repositoryRead: ClosedRange<Int> { RepositoryConfig.readableVersions }

    /// The lines of `accord version` and `--version`; the first is `accord X.Y.Z`
    /// alone, so `accord --version | head -1` is the release.
    static var text: String {
        let r = repositoryRead
        return """
        accord \(release)
        repository format: writes version \(RepositoryConfig.encryptedVersion) (encrypted, the default) or \(RepositoryConfig.currentVersion) (--encryption none), reads versions \(r.lowerBound)-\(r.upperBound); snapshot format \(Snapshot.currentVersion)
        sync protocol: version \(Frame.protocolVersion)
        compression: \(IsalLibrary.shared.description)
        s3: repositories: \(S3Support.description)
        built with Swift \(swift) for \(os) \(arch), commit \(commit ?? "unknown")\(libc.map { "; running on \($0)" } ?? "")
        """
    }

    /// `accord version --json`: a stable schema (README, "Running it in production").
    static var json: [String: Any] {
        var o: [String: Any] = [
            "version": release,
            "repository_format": ["writes": RepositoryConfig.encryptedVersion, "writes_plain": RepositoryConfig.currentVersion, "reads": Array(repositoryRead)],
            "snapshot_format": Snapshot.currentVersion,
            "sync_protocol": Int(Frame.protocolVersion),
            "build": ["swift": swift, "os": os, "arch": arch, "commit": commit ?? NSNull()] as [String: Any],
        ]
        o["libc"] = libc ?? NSNull()
        o["isal"] = IsalLibrary.shared.library?.path ?? NSNull()   // ISA-L is loaded at run time: the file, or null
        o["libcurl"] = S3Support.libcurlVersion ?? NSNull()         // so is libcurl, for s3: repositories: its version, or null
        return o
    }
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Show accord's version, the repository formats and sync protocol it speaks, and how it was built.",
        discussion: """
        Both nodes of a sync need the same sync protocol version, and a repository is readable \
        when its format version is among those listed. `accord --version` prints the same lines.
        """)
    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        if json {
            let data = try JSONSerialization.data(withJSONObject: AccordVersion.json, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(AccordVersion.text)
        }
    }
}
