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
            o.commands.append(CommandSource(path: d.path, command: plan.expand(d.command),
                                            profile: ChunkerProfile.named(d.profile) ?? .dump))
        }
        let kubectl = Kubectl(plan: plan)
        for spec in plan.objects {
            for (name, yaml) in try KubeObjects.fetch(spec, kubectl: kubectl, missing: warn) {
                o.inlineFiles.append(InlineFile(path: KubeObjects.path(kind: spec.kind, namespace: spec.namespace, name: name), bytes: yaml))
            }
        }
        return o
    }
}
