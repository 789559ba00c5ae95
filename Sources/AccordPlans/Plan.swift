import Foundation
import Yams
import AccordCore

/// A plan: what an AE5 backup reads and the ordered steps its restore runs.
/// Built in: `ae5` (the default) and `ae5-repos` (`--repos-only`). A YAML
/// plan file overrides any field; fields it omits keep the built-in value
/// of the plan named by its `base` (default `ae5`). In commands,
/// `{kubectl}`, `{gravity}`, `{namespace}`, `{postgres}` and `{pguser}`
/// are replaced by the plan's values.
public struct Plan: Codable, Equatable, Sendable {
    public var name: String
    public var description: String
    public var kubectl: String
    public var gravity: String
    public var namespace: String
    public var postgres: Postgres
    public var storage: Storage?
    public var dumps: [Dump]
    public var objects: [Objects]
    public var restoreSteps: [String]
    public var cleanupSQL: [CleanupSQL]
    /// Deployments deleted before a restore (name prefixes).
    public var deleteDeploymentPrefixes: [String]
    public var timeouts: Timeouts

    public struct Postgres: Codable, Equatable, Sendable {
        public var deployment: String
        public var user: String
    }

    public struct Storage: Codable, Equatable, Sendable {
        /// The tree to back up.
        public var root: String
        /// Absolute paths (globs) left out of the backup.
        public var excludes: [String]
        /// Directories under `root` that a restore replaces with the snapshot's copy.
        public var replace: [String]
    }

    /// A command whose stdout is backed up as one virtual file.
    public struct Dump: Codable, Equatable, Sendable {
        /// Path of the virtual file in the snapshot, e.g. `/postgres/pg_dumpall.sql`.
        public var path: String
        public var command: String
        /// Command fed the file on restore (nil: kept only, e.g. the Gravity backup).
        public var restore: String?
        /// Lines dropped from the stream on restore (exact match).
        public var dropLines: [String]?
        /// Chunker profile: `dump` (256 KiB chunks, level 6 for text) or `tree`.
        public var profile: String
    }

    /// Kubernetes objects saved as YAML under `/kubernetes/<kind>s/<namespace>/<name>.yaml`.
    public struct Objects: Codable, Equatable, Sendable {
        public var kind: String
        public var namespace: String
        /// Exact names; nil means every object of this kind in the namespace, filtered below.
        public var names: [String]?
        public var nameContains: String?
        public var excludePrefixes: [String]?
        /// `apply` (default) or `replace` on restore.
        public var method: String?
        /// `always` (default), `config` (skipped by --no-config), `ingress` (only with --ingress).
        public var restoreWhen: String?

        /// Does this spec take the object `name` (of its kind and namespace)?
        /// Backup and restore both ask this, so they select the same objects.
        public func selects(_ name: String) -> Bool {
            if let names, !names.contains(name) { return false }
            if let c = nameContains, !name.contains(c) { return false }
            if let ex = excludePrefixes, ex.contains(where: { name.hasPrefix($0) }) { return false }
            return true
        }
    }

    public struct CleanupSQL: Codable, Equatable, Sendable {
        public var database: String
        public var sql: String
    }

    public struct Timeouts: Codable, Equatable, Sendable {
        /// Seconds to wait for postgres to scale down/up.
        public var scaleSeconds: Int
        /// Seconds to wait for pods to be Running after the restart.
        public var runningSeconds: Int
        /// Seconds between polls.
        public var pollSeconds: Double
    }

    /// Replaces `{placeholders}` in a command.
    public func expand(_ command: String) -> String {
        command.replacingOccurrences(of: "{kubectl}", with: kubectl)
            .replacingOccurrences(of: "{gravity}", with: gravity)
            .replacingOccurrences(of: "{namespace}", with: namespace)
            .replacingOccurrences(of: "{postgres}", with: postgres.deployment)
            .replacingOccurrences(of: "{pguser}", with: postgres.user)
    }

    /// The steps a restore may name, in the order the built-in ae5 plan runs them.
    public static let knownSteps = ["check-marker", "delete-sessions", "stop-postgres", "pre-restore-snapshot",
                                    "replace-storage", "start-postgres", "load-dumps", "cleanup-sql",
                                    "apply-objects", "restart-pods", "remove-marker"]

    public func validate() throws {
        for s in restoreSteps where !Self.knownSteps.contains(s) {
            throw PlanError.invalid(name, "unknown restore step \(s); known: \(Self.knownSteps.joined(separator: ", "))")
        }
        for d in dumps {
            guard d.path.hasPrefix("/") else { throw PlanError.invalid(name, "dump path \(d.path) must be absolute") }
            guard ChunkerProfile.named(d.profile) != nil else { throw PlanError.invalid(name, "dump \(d.path): unknown profile \(d.profile) (tree, dump)") }
        }
        for o in objects {
            if !["secret", "configmap", "ingress"].contains(o.kind) {
                throw PlanError.invalid(name, "object kind \(o.kind) is not one of secret, configmap, ingress")
            }
            if let m = o.method, !["apply", "replace"].contains(m) {
                throw PlanError.invalid(name, "object method \(m) is not apply or replace")
            }
            if let w = o.restoreWhen, !["always", "config", "ingress"].contains(w) {
                throw PlanError.invalid(name, "object restoreWhen \(w) is not always, config or ingress")
            }
        }
        if let s = storage, !s.root.hasPrefix("/") || (s.root.count > 1 && s.root.hasSuffix("/")) || !Self.isCleanPath(String(s.root.dropFirst())) {
            throw PlanError.invalid(name, "storage root \(s.root) must be an absolute path without a trailing /, empty, . or .. components")
        }
        // A replace entry names what a restore deletes and brings back: it must
        // name exactly one path below the root ("." = the root itself).
        if let s = storage, let r = s.replace.first(where: { $0 != "." && ($0.isEmpty || !Self.isCleanPath($0)) }) {
            throw PlanError.invalid(name, "storage replace entry '\(r)' must be a path relative to the storage root (or .), without a leading or trailing /, empty, . or .. components")
        }
        if timeouts.scaleSeconds <= 0 || timeouts.runningSeconds <= 0 || timeouts.pollSeconds <= 0 {
            throw PlanError.invalid(name, "timeouts must be positive")
        }
    }

    /// "a/b": no empty, "." or ".." component (so no leading or trailing "/").
    static func isCleanPath(_ p: String) -> Bool {
        p.isEmpty ? true : p.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
    }

    // MARK: Loading

    /// A built-in plan by name, or a YAML file.
    public static func load(_ nameOrPath: String) throws -> Plan {
        if let p = builtIn(nameOrPath) { return p }
        guard nameOrPath.contains("/") || nameOrPath.hasSuffix(".yaml") || nameOrPath.hasSuffix(".yml") else {
            throw PlanError.unknown(nameOrPath)
        }
        let text: String
        do { text = try String(contentsOfFile: nameOrPath, encoding: .utf8) } catch {
            throw PlanError.unreadable(nameOrPath, "\(error.localizedDescription)")
        }
        return try parse(text, source: nameOrPath)
    }

    /// Parses a plan file: its keys override those of its `base` plan.
    public static func parse(_ text: String, source: String) throws -> Plan {
        let node: Any?
        do { node = try Yams.load(yaml: text) } catch { throw PlanError.unreadable(source, "not valid YAML: \(error)") }
        guard let overrides = node as? [String: Any] else { throw PlanError.unreadable(source, "expected a mapping at the top level") }
        if let b = overrides["base"], !(b is String) { throw PlanError.unreadable(source, "base must be the name of a built-in plan, like ae5") }
        let baseName = overrides["base"] as? String ?? "ae5"
        guard let base = builtIn(baseName) else { throw PlanError.unknown(baseName) }
        var merged = try toDictionary(base)
        for (k, v) in overrides where k != "base" {
            guard merged[k] != nil || ["storage", "description"].contains(k) else {
                throw PlanError.unreadable(source, "unknown key \(k)")
            }
            if let sub = v as? [String: Any], var existing = merged[k] as? [String: Any] {
                for (sk, sv) in sub { guard existing[sk] != nil else { throw PlanError.unreadable(source, "unknown key \(k).\(sk)") }; existing[sk] = sv }
                merged[k] = existing
            } else {
                merged[k] = v
            }
        }
        // Entries of lists must not carry unknown keys: a typo like `nameContain:` would widen a selection.
        let listKeys: [String: Set<String>] = [
            "dumps": ["path", "command", "restore", "dropLines", "profile"],
            "objects": ["kind", "namespace", "names", "nameContains", "excludePrefixes", "method", "restoreWhen"],
            "cleanupSQL": ["database", "sql"],
        ]
        for (k, allowed) in listKeys {
            for item in (overrides[k] as? [Any]) ?? [] {
                guard let d = item as? [String: Any] else { throw PlanError.unreadable(source, "entries of \(k) must be mappings") }
                for key in d.keys where !allowed.contains(key) {
                    throw PlanError.unreadable(source, "unknown key \(k)[].\(key) (known: \(allowed.sorted().joined(separator: ", ")))")
                }
            }
        }
        if merged["name"] as? String == base.name && overrides["name"] == nil {
            // Named after the file (not its path), so the same plan file found at another path
            // on the DR node still finds its snapshots. Give `name:` to be explicit.
            let file = source.split(separator: "/").last.map(String.init) ?? source
            merged["name"] = file.hasSuffix(".yaml") ? String(file.dropLast(5)) : file.hasSuffix(".yml") ? String(file.dropLast(4)) : file
        }
        // YAML can say more than a plan holds (dates, binary, .nan, non-text keys):
        // say so here rather than as a confusing type error below.
        guard JSONSerialization.isValidJSONObject(merged) else {
            throw PlanError.unreadable(source, "values must be text, numbers, true/false, lists or mappings with text keys (quote dates and the like)")
        }
        do {
            let data = try JSONSerialization.data(withJSONObject: merged)
            let plan = try JSONDecoder().decode(Plan.self, from: data)
            try plan.validate()
            return plan
        } catch let e as PlanError { throw e } catch {
            throw PlanError.unreadable(source, "a field has the wrong type (\(error))")
        }
    }

    static func toDictionary(_ p: Plan) throws -> [String: Any] {
        let data = try JSONEncoder().encode(p)
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    /// The plan as YAML (what `accord plan show` prints).
    public func yaml() throws -> String {
        let encoder = YAMLEncoder()
        encoder.options.sortKeys = false
        return try encoder.encode(self)
    }
}

public enum PlanError: Error, CustomStringConvertible {
    case unknown(String)
    case unreadable(String, String)
    case invalid(String, String)

    public var description: String {
        switch self {
        case .unknown(let n): return "no plan named \(n): use ae5, ae5-repos, or a path to a YAML plan file"
        case .unreadable(let p, let why): return "plan file \(p) is unusable: \(why)"
        case .invalid(let n, let why): return "plan \(n) is invalid: \(why)"
        }
    }
}
