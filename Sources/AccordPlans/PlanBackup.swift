import Foundation
import AccordCore
import AccordEngine

/// Turns a plan into backup options: the storage tree, the dumps as command
/// sources, and the Kubernetes objects as YAML files.
public struct PlanBackup {
    public let plan: Plan
    public init(plan: Plan) { self.plan = plan }

    /// Fetches the Kubernetes objects (the only cluster access before the backup
    /// itself) and builds the options. Missing named objects go to `warn`.
    public func options(base: BackupOptions, warn: (String) -> Void) throws -> BackupOptions {
        var o = base
        o.plan = plan.name
        if !o.tags.contains(plan.name) { o.tags.append(plan.name) }
        if let s = plan.storage {
            o.paths.append(Array(s.root.utf8))
            o.excludes += s.excludes
        }
        for d in plan.dumps {
            if let why = VirtualPath.problem(d.path) { throw PlanError.invalid(plan.name, "dump path \(d.path.debugDescription) is not allowed: \(why)") }
            o.commands.append(CommandSource(path: d.path, command: plan.expand(d.command),
                                            profile: ChunkerProfile.named(d.profile) ?? .dump))
        }
        let kubectl = Kubectl(plan: plan)
        for spec in plan.objects {
            for (name, yaml) in try KubeObjects.fetch(spec, kubectl: kubectl, missing: warn) {
                // Names come from the cluster: one that is not a plain file name is left out, not trusted.
                let path = KubeObjects.path(kind: spec.kind, namespace: spec.namespace, name: name)
                if name.contains("/") || name.hasPrefix(".") || VirtualPath.problem(path) != nil {
                    warn("\(spec.kind) \(spec.namespace)/\(name.debugDescription) has a name that cannot be a file name; not backed up")
                    continue
                }
                o.inlineFiles.append(InlineFile(path: path, bytes: yaml))
            }
        }
        return o
    }
}
