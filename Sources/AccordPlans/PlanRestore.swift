import Foundation
import AccordCore
import AccordEngine
import AccordRuntime

public struct PlanRestoreOptions {
    public var override = false
    public var noConfig = false
    public var ingress = false
    /// Overrides the plan's timeouts (seconds) when set.
    public var waitTimeout: Int?
    public var threads = defaultThreadCount
    public var log: (String) -> Void = { _ in }
    /// Where warnings go (the caller prints them): a snapshot skipped as unreadable
    /// while finding the latest, a path the pre-restore snapshot could not read
    /// (from the backup's threads, hence `@Sendable`).
    public var warn: @Sendable (String) -> Void = { _ in }
    /// Seconds to wait for a live holder of a conflicting lock (`--retry-lock`); 0 fails at once.
    public var retryLock: Double = 0
    public init() {}
}

/// Runs a plan's restore steps in order against one snapshot. Every external
/// command's exit status is checked and every wait has a timeout; the first
/// failure stops the restore, so nothing after it is touched. The repository
/// is only read: a second restore of the same snapshot works.
public final class PlanRestore {
    let plan: Plan
    let repository: Repository
    let snapshot: Snapshot
    let snapshotID: SnapshotID
    let options: PlanRestoreOptions
    let kubectl: Kubectl

    public init(plan: Plan, repository: Repository, snapshotID: SnapshotID, snapshot: Snapshot, options: PlanRestoreOptions) {
        self.plan = plan
        self.repository = repository
        self.snapshotID = snapshotID
        self.snapshot = snapshot
        self.options = options
        kubectl = Kubectl(plan: plan)
    }

    /// Restores `snapshot` (an id, a unique prefix or `latest`; nil means the
    /// plan's latest) from `repository`, under the repository's exclusive lock
    /// for the whole run (taken here): a second plan restore or a prune must
    /// not run beside it, and the pre-restore snapshot is taken under it too.
    public static func run(plan: Plan, repository: Repository, snapshot: String?, options: PlanRestoreOptions) throws {
        let lock = try repository.acquireLock(exclusive: true, command: "restore \(plan.name)", retryFor: options.retryLock,
                                              waiting: options.warn, warn: options.warn)
        defer { lock.release() }
        let root = repository.layout.root
        let id: SnapshotID, s: Snapshot
        if let spec = snapshot { (id, s) = try repository.openSnapshot(spec, warn: options.warn) } else {
            guard let last = try repository.openLatestSnapshot(matching: { $0.plan == plan.name }, warn: options.warn) else {
                throw PlanRunError.noSnapshot(plan: plan.name, repository: root)
            }
            (id, s) = last
        }
        options.log("restoring snapshot \(id.short) of plan \(plan.name) from \(root)")
        try PlanRestore(plan: plan, repository: repository, snapshotID: id, snapshot: s, options: options).run()
        options.log("restore of \(id.short) complete")
    }

    var scaleTimeout: Int { options.waitTimeout ?? plan.timeouts.scaleSeconds }
    var runningTimeout: Int { options.waitTimeout ?? plan.timeouts.runningSeconds }

    public func run() throws {
        try validateSnapshot()
        for (n, step) in plan.restoreSteps.enumerated() {
            options.log("step \(step)")
            switch step {
            case "check-marker": try checkMarker()
            case "delete-sessions": try deleteSessions()
            case "stop-postgres": try scalePostgres(to: 0)
            case "pre-restore-snapshot": try preRestoreSnapshot()
            case "replace-storage": try replaceStorage()
            case "start-postgres": try scalePostgres(to: 1)
            case "load-dumps": try loadDumps()
            case "cleanup-sql": try cleanupSQL()
            case "apply-objects": try applyObjects()
            case "restart-pods": try restartPods()
            case "remove-marker":
                do { try repository.removeRestoreMarker() } catch {
                    throw PlanRunError.markerStays(repository.layout.root, error, notRun: Array(plan.restoreSteps[(n + 1)...]))
                }
            default: throw PlanError.invalid(plan.name, "unknown restore step \(step)")
            }
        }
    }

    /// Reads the whole manifest through the validating reader (entries only,
    /// no contents) before the first step: a damaged or hostile snapshot is
    /// refused before any pod is stopped or any path is removed.
    func validateSnapshot() throws {
        var reader = repository.manifestReader(snapshot, id: snapshotID)
        reader.tolerateListErrors = true   // an unloadable chunk list loses one file, as in the restore itself
        while try reader.next() != nil {}
    }

    func checkMarker() throws {
        if options.override { return }
        if try !repository.restoreMarkerPresent() {
            throw PlanRunError.markerMissing(repository.layout.root)
        }
    }

    /// Deployment names in the namespace (kubectl prints `deployment.apps/NAME`).
    func deployments() throws -> [String] {
        let out = try kubectl.run(["get", "deployments", "-n", plan.namespace, "-o", "name"], what: "listing deployments")
        return String(decoding: out, as: UTF8.self).split(whereSeparator: \.isNewline).map { line in
            String(line.split(separator: "/").last ?? Substring(line))
        }
    }

    func deleteSessions() throws {
        for d in try deployments() where plan.deleteDeploymentPrefixes.contains(where: { d.hasPrefix($0) }) {
            try kubectl.run(["delete", "deployment", d, "-n", plan.namespace], what: "deleting deployment \(d)")
            options.log("deleted deployment \(d)")
        }
    }

    /// Pod name → phase in the namespace.
    func pods() throws -> [(name: String, phase: String)] {
        let out = try kubectl.run(["get", "pods", "-n", plan.namespace, "-o",
                                   "jsonpath={range .items[*]}{.metadata.name} {.status.phase}{\"\\n\"}{end}"], what: "listing pods")
        return String(decoding: out, as: UTF8.self).split(whereSeparator: \.isNewline).compactMap { line in
            let parts = line.split(separator: " ")
            guard parts.count >= 2 else { return parts.count == 1 ? (String(parts[0]), "Unknown") : nil }
            return (String(parts[0]), String(parts[1]))
        }
    }

    /// Polls until `done` holds, or throws a timeout naming `what`.
    func wait(_ what: String, seconds: Int, _ done: () throws -> Bool) throws {
        let deadline = Sys.monotonicSeconds() + Double(seconds)
        while true {
            if try done() { return }
            if Sys.monotonicSeconds() >= deadline { throw PlanRunError.timeout(what, seconds: seconds) }
            Thread.sleep(forTimeInterval: min(plan.timeouts.pollSeconds, max(0.05, deadline - Sys.monotonicSeconds())))
        }
    }

    func scalePostgres(to n: Int) throws {
        let d = plan.postgres.deployment
        try kubectl.run(["scale", "deployment", d, "--replicas=\(n)", "-n", plan.namespace], what: "scaling \(d) to \(n)")
        let mine = { (p: (name: String, phase: String)) in p.name.hasPrefix(d + "-") }
        if n == 0 {
            try wait("the pods of \(d) to stop", seconds: scaleTimeout) { try pods().filter(mine).isEmpty }
        } else {
            try wait("a pod of \(d) to be Running", seconds: scaleTimeout) { try pods().filter(mine).contains { $0.phase == "Running" } }
        }
        options.log("\(d) scaled to \(n)")
    }

    /// Paths under the storage root that a restore replaces.
    var replacedPaths: [RawPath] {
        guard let s = plan.storage else { return [] }
        return s.replace.map { sub in
            let p = sub == "." ? s.root : s.root + "/" + sub
            return Array(p.utf8)
        }
    }

    /// Replaces each path with the snapshot's copy. The path itself is the
    /// target (reached through the admin's own symlinks above it); the
    /// snapshot's subtree there is restored onto it, so metadata goes to the
    /// replaced path and what is below it, never to its ancestors, and no
    /// symlink below it is followed.
    func replaceStorage() throws {
        for path in replacedPaths {
            try removeTree(path)
            try Sys.mkdirs(path, mode: 0o755)
            var o = RestoreOptions(target: path)
            o.subtree = path
            o.threads = options.threads
            var failures: [String] = []
            o.onError = { p, e in failures.append("\(p): \(e)") }
            let r = try Restore(repository: repository, options: o).run(snapshot)
            if !failures.isEmpty { throw PlanRunError.badOutput("restoring \(path.displayPath) failed: \(failures.prefix(3).joined(separator: "; "))") }
            options.log("replaced \(path.displayPath): \(r.files) files")
        }
    }

    /// Removes `path` and everything below it, never following a symlink
    /// below it (a symlink is removed itself; the path's parents are the admin's).
    func removeTree(_ path: RawPath) throws {
        let slash = path.lastIndex(of: 0x2f) ?? 0
        let parentPath: RawPath = slash == 0 ? [0x2f] : Array(path[..<slash])
        let name = Array(path[(slash + 1)...])
        guard !name.isEmpty, name != [0x2e], name != [0x2e, 0x2e] else { throw PlanError.invalid(plan.name, "cannot replace \(path.displayPath)") }
        let parent: Int32
        do { parent = try Sys.open(parentPath, Sys.O_RDONLY | Sys.O_DIRECTORY) } catch let e as SystemError where e.isNotFound { return }
        defer { Sys.close(parent) }
        try removeEntry(in: parent, name, path)
    }

    /// Removes `name` in the open directory `dir` (`path` names it), emptying it first if a directory.
    func removeEntry(in dir: Int32, _ name: RawPath, _ path: RawPath) throws {
        guard let st = try? Sys.lstat(in: dir, name, path: path) else { return }
        if st.isDirectory {
            let sub = try Sys.openDirectory(in: dir, name, path: path)
            defer { Sys.close(sub) }
            for child in try Sys.listDirectory(fd: sub, path: path) { try removeEntry(in: sub, child, path + [0x2f] + child) }
            try Sys.unlink(in: dir, name, directory: true, path: path.displayPath)
        } else {
            try Sys.unlink(in: dir, name, path: path.displayPath)
        }
    }

    /// Finds an entry of the snapshot by path.
    func entry(_ path: String) throws -> ManifestEntry? {
        var reader = repository.manifestReader(snapshot, id: snapshotID)
        let wanted = Array(path.utf8)
        while let e = try reader.next() {
            if e.path == wanted { return e }
            if ManifestEntry.compareTreeOrder(e.path, wanted) > 0 { break }
        }
        return nil
    }

    func loadDumps() throws {
        for d in plan.dumps {
            guard let restore = d.restore else { continue }
            guard let e = try entry(d.path) else { throw PlanRunError.badOutput("snapshot \(snapshotID.short) has no \(d.path) to load") }
            let command = plan.expand(restore)
            let runner = CommandRunner(command: command)
            _ = try runner.start(stdin: true, captureStdout: false)
            var writeError: Error?
            do {
                try StreamWriter(repository: repository).write(e, to: runner.stdinDescriptor, name: "stdin of `\(command)`",
                                                              dropLines: (d.dropLines ?? []).map(plan.expand))
            } catch { writeError = error }
            runner.closeStdin()
            let status = runner.wait()
            guard status.succeeded else {
                throw PlanRunError.commandFailed(what: "loading \(d.path)", command: command, status: status.description, stderr: runner.stderrTail)
            }
            if let w = writeError { throw w }
            options.log("loaded \(d.path) (\(formatBytes(e.size)))")
        }
    }

    func cleanupSQL() throws {
        for c in plan.cleanupSQL {
            try kubectl.run(["exec", "-i", "-n", plan.namespace, "deploy/\(plan.postgres.deployment)", "--",
                             "psql", "-U", plan.postgres.user, "-d", c.database, "-v", "ON_ERROR_STOP=1", "-q"],
                            stdin: Array((c.sql + ";\n").utf8), what: "`\(c.sql)` in \(c.database)")
            options.log("ran `\(c.sql)` in \(c.database)")
        }
    }

    func applyObjects() throws {
        for spec in plan.objects {
            switch spec.restoreWhen ?? "always" {
            case "config" where options.noConfig: options.log("skipping \(KubeObjects.plural(spec.kind)) (--no-config)"); continue
            case "ingress" where !options.ingress: options.log("skipping \(KubeObjects.plural(spec.kind)) (no --ingress)"); continue
            default: break
            }
            let prefix = Array("/kubernetes/\(KubeObjects.plural(spec.kind))/\(spec.namespace)/".utf8)
            var reader = repository.manifestReader(snapshot, id: snapshotID)
            var files: [ManifestEntry] = []
            while let e = try reader.next() {
                if e.kind == .file && e.path.starts(with: prefix) && e.path[prefix.count...].firstIndex(of: 0x2f) == nil { files.append(e) }
            }
            for e in files {
                let name = String(decoding: e.path[prefix.count...].dropLast(5), as: UTF8.self)
                guard spec.selects(name) else { continue }
                var yaml: [UInt8] = []
                for b in e.blobs { yaml += try repository.readBlob(b) }
                let verb = spec.method ?? "apply"
                try kubectl.run([verb, "-n", spec.namespace, "-f", "-"], stdin: yaml, what: "\(verb) of \(spec.kind) \(spec.namespace)/\(name)")
                options.log("\(verb) \(spec.kind) \(spec.namespace)/\(name)")
            }
        }
    }

    func restartPods() throws {
        try kubectl.run(["delete", "pods", "--all", "-n", plan.namespace], what: "restarting the pods in \(plan.namespace)")
        try wait("all pods in \(plan.namespace) to be Running", seconds: runningTimeout) {
            let p = try pods()
            return !p.isEmpty && p.allSatisfy { $0.phase == "Running" || $0.phase == "Succeeded" }
        }
        options.log("all pods Running")
    }
}
