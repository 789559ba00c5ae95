import Foundation
import Yams
import AccordCore
import AccordRuntime

/// The node's settings file: one YAML document, `/etc/accord/accord.yaml`
/// (or the file named by `$ACCORD_SETTINGS`, for tests: sudo's env_reset
/// drops it, so a client over ssh cannot choose it). Each feature owns a
/// top-level section:
///
///     serve:
///       repository: /opt/anaconda_backup   # the only directory serve opens (default: the client's --repo)
///       idle-timeout: 600                  # seconds without a request before serve closes the session
///       max-clock-skew: 86400              # how far a snapshot's time may lie ahead of this node's clock, at most 86400 (Repository.futureSkewSeconds)
///     repository:
///       password-file: /etc/accord/repository.key   # the passphrase of the repository's key (after --password-file and $ACCORD_PASSWORD_FILE/_COMMAND)
///       encryption: aes-256-gcm            # what init and a first backup create: aes-256-gcm (default) or none
///     metrics:
///       file: /var/lib/prometheus/node-exporter/accord.prom   # Prometheus metrics after each backup, sync, check, forget, prune (--metrics-file)
///     log:
///       file: /var/log/accord.log          # one line per step of those commands, appended (--log-file)
///
/// Unknown keys are refused, naming the key (a typo must not silently unpin
/// the repository). When accord runs as root, the file must be a regular file
/// owned by root and writable by no one else, in a directory of the same kind:
/// it decides what a client over ssh may reach. A missing file means defaults.
public struct Settings: Equatable, Sendable {
    public static let defaultPath = "/etc/accord/accord.yaml"
    public static let environmentVariable = "ACCORD_SETTINGS"
    /// No settings document needs more; a larger file is refused unread.
    public static let maxFileSize = 1 << 20

    public struct Serve: Equatable, Sendable {
        /// The pinned repository directory (absolute), or nil: the client's --repo.
        public var repository: String?
        public var idleTimeout: Int = 600
        public var maxClockSkew: Int = 86_400
        public init() {}
    }

    /// How this node's clients open and create repositories (issue 15).
    public struct RepositoryDefaults: Equatable, Sendable {
        /// An absolute path: the passphrase file, or nil.
        public var passwordFile: String?
        /// "aes-256-gcm" or "none", or nil: the built-in default (aes-256-gcm).
        public var encryption: String?
        public init() {}
    }

    /// Where the commands report (issue 18): absolute paths, or nil (no metrics, no log).
    public struct Monitoring: Equatable, Sendable {
        public var file: String?
        public init() {}
    }

    public var serve = Serve()
    public var repository = RepositoryDefaults()
    public var metrics = Monitoring()
    public var log = Monitoring()
    /// The file these came from; nil when there is none (defaults).
    public var path: String?

    public init() {}

    /// `$ACCORD_SETTINGS` if set and not empty, else /etc/accord/accord.yaml.
    public static var path: String {
        if let p = Sys.environment(environmentVariable), !p.isEmpty { return p }
        return defaultPath
    }

    static let keys: [String: Set<String>] = ["serve": ["repository", "idle-timeout", "max-clock-skew"],
                                              "repository": ["password-file", "encryption"],
                                              "metrics": ["file"], "log": ["file"]]
    /// Sections in the order messages list them (serve first, as it came first).
    static let sections = ["serve", "repository", "metrics", "log"]
    public static let encryptionNames = ["aes-256-gcm", "none"]

    /// Loads the settings file (`Settings.path` unless given). A missing file is
    /// the defaults; an unusable one throws, naming the file and the key.
    public static func load(path: String = Settings.path, requireRootOwned: Bool = geteuid() == 0) throws -> Settings {
        let st: FileStatus
        do { st = try Sys.stat(Array(path.utf8)) } catch let e as SystemError where e.isNotFound {
            return Settings()
        } catch {
            throw SettingsError.unusable(path, "cannot read it (\(error))")
        }
        guard st.isRegular else { throw SettingsError.unusable(path, "it is not a regular file") }
        guard st.size <= UInt64(maxFileSize) else { throw SettingsError.unusable(path, "it is \(st.size) bytes, more than a settings file can need (\(maxFileSize))") }
        if requireRootOwned {
            try checkOwnership(path, st, what: "file")
            let dir = (path as NSString).deletingLastPathComponent
            let dst: FileStatus
            do { dst = try Sys.stat(Array((dir.isEmpty ? "." : dir).utf8)) } catch {
                throw SettingsError.unusable(path, "cannot check its directory (\(error))")
            }
            try checkOwnership(path, dst, what: "directory \(dir.isEmpty ? "." : dir)")
        }
        guard access(path, R_OK) == 0 else {
            throw SettingsError.unusable(path, "cannot read it (\(String(cString: strerror(errno)))): make it readable (mode 0644, owned by root)")
        }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw SettingsError.unusable(path, "cannot read it as UTF-8 text (\(error.localizedDescription))")
        }
        var s = try parse(text, source: path)
        s.path = path
        return s
    }

    static func checkOwnership(_ path: String, _ st: FileStatus, what: String) throws {
        guard st.uid == 0 else {
            throw SettingsError.unusable(path, "its \(what) is owned by uid \(st.uid), not root: it decides what a client over ssh may reach (chown root)")
        }
        guard st.permissions & 0o022 == 0 else {
            throw SettingsError.unusable(path, "its \(what) is writable by group or others (mode \(String(st.permissions, radix: 8))): chmod go-w")
        }
    }

    /// Parses a settings document. Empty means defaults.
    public static func parse(_ text: String, source: String) throws -> Settings {
        let node: Any?
        do { node = try Yams.load(yaml: text) } catch { throw SettingsError.unusable(source, "not valid YAML: \(error)") }
        var s = Settings()
        guard let node else { return s }
        guard let top = node as? [String: Any] else { throw SettingsError.unusable(source, "expected a mapping of sections (like serve:) at the top level") }
        for k in top.keys.sorted() where keys[k] == nil {
            throw SettingsError.unusable(source, "unknown key \(k) (known sections: \(sections.joined(separator: ", ")))")
        }
        if let serve = try section(top, "serve", "repository:, idle-timeout:, max-clock-skew:", source) {
            try parseServe(serve, into: &s, source)
        }
        if let repo = try section(top, "repository", "password-file:, encryption:", source) {
            if let v = repo["password-file"] {
                guard let p = v as? String, let path = absolutePath(p) else {
                    throw SettingsError.unusable(source, "repository.password-file must be an absolute path without empty, . or .. components and no trailing /, not \(v)")
                }
                s.repository.passwordFile = path
            }
            if let v = repo["encryption"] {
                guard let e = v as? String, encryptionNames.contains(e) else {
                    throw SettingsError.unusable(source, "repository.encryption must be one of \(encryptionNames.joined(separator: ", ")), not \(v)")
                }
                s.repository.encryption = e
            }
        }
        if let m = try section(top, "metrics", "file:", source), let v = m["file"] {
            guard let p = v as? String, let path = absolutePath(p), metricsFileProblem(path) == nil else {
                throw SettingsError.unusable(source, "metrics.file must be an absolute path ending in .prom (node_exporter's textfile collector reads only those), not \(v)")
            }
            s.metrics.file = path
        }
        if let l = try section(top, "log", "file:", source), let v = l["file"] {
            guard let p = v as? String, let path = absolutePath(p) else {
                throw SettingsError.unusable(source, "log.file must be an absolute path without empty, . or .. components and no trailing /, not \(v)")
            }
            s.log.file = path
        }
        return s
    }

    /// Why `path` cannot be a metrics file, or nil: node_exporter's textfile
    /// collector reads only `*.prom`, and a file it skips silently would look like monitoring.
    public static func metricsFileProblem(_ path: String) -> String? {
        let name = path.split(separator: "/").last ?? ""
        guard name.hasSuffix(".prom"), name.count > 5 else { return "expected a file name ending in .prom (node_exporter's textfile collector reads only those)" }
        return nil
    }

    /// A section's mapping (nil when absent or empty, as `serve:` with nothing under it), its keys checked.
    static func section(_ top: [String: Any], _ name: String, _ shape: String, _ source: String) throws -> [String: Any]? {
        guard let v = top[name], !(v is NSNull) else { return nil }
        guard let m = v as? [String: Any] else { throw SettingsError.unusable(source, "\(name) must be a mapping (\(shape))") }
        let known = keys[name]!
        for k in m.keys.sorted() where !known.contains(k) {
            throw SettingsError.unusable(source, "unknown key \(name).\(k) (known: \(known.sorted().joined(separator: ", ")))")
        }
        return m
    }

    /// `p` if it is absolute, not `/`, with no empty, `.` or `..` component and no NUL.
    static func absolutePath(_ p: String) -> String? {
        guard p.hasPrefix("/"), p != "/", !p.contains("\0"),
              p.split(separator: "/", omittingEmptySubsequences: false).dropFirst().allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else { return nil }
        return p
    }

    static func parseServe(_ serve: [String: Any], into s: inout Settings, _ source: String) throws {
        if let r = serve["repository"] {
            if let p = r as? String, p == "/" { throw SettingsError.unusable(source, "serve.repository cannot be /") }
            guard let p = r as? String, let path = absolutePath(p) else {
                throw SettingsError.unusable(source, "serve.repository must be an absolute path without empty, . or .. components and no trailing /, not \(r)")
            }
            s.serve.repository = path
        }
        s.serve.idleTimeout = try seconds(serve["idle-timeout"], "serve.idle-timeout", default: s.serve.idleTimeout, range: 1...86_400, source)
        // No more than the skew past which `latest` skips a snapshot and `forget` keeps it
        // as suspect: serve would store snapshots that the repository then distrusts.
        let skewLimit = Int(Repository.futureSkewSeconds)
        if let v = serve["max-clock-skew"] as? Int, !(serve["max-clock-skew"] is Bool), v > skewLimit {
            throw SettingsError.unusable(source, "serve.max-clock-skew must be at most \(skewLimit) seconds (the limit past which `latest` skips a snapshot as dated in the future and `forget` keeps it as suspect), not \(v)")
        }
        s.serve.maxClockSkew = try seconds(serve["max-clock-skew"], "serve.max-clock-skew", default: s.serve.maxClockSkew, range: 0...skewLimit, source)
    }

    static func seconds(_ v: Any?, _ key: String, default d: Int, range: ClosedRange<Int>, _ source: String) throws -> Int {
        guard let v else { return d }
        // YAML `true` reads as a Bool, `1.5` as a Double: only whole numbers are seconds here.
        guard !(v is Bool), let n = v as? Int, range.contains(n) else {
            throw SettingsError.unusable(source, "\(key) must be a whole number of seconds from \(range.lowerBound) to \(range.upperBound), not \(v)")
        }
        return n
    }
}

public enum SettingsError: Error, CustomStringConvertible {
    case unusable(String, String)

    public var description: String {
        switch self {
        case .unusable(let p, let why): return "settings file \(p) is unusable: \(why)"
        }
    }
}
