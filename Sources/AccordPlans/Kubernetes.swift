import Foundation
import AccordCore
import AccordRuntime

/// Runs kubectl (and friends) as the plan names it, checking every exit status.
public struct Kubectl {
    public let plan: Plan
    public init(plan: Plan) { self.plan = plan }

    /// Runs `{kubectl} ARGS…`; stdin bytes (YAML, never secrets on the command line) are optional.
    /// Returns stdout; a non-zero exit throws with the stderr tail.
    @discardableResult
    public func run(_ args: [String], stdin: [UInt8]? = nil, what: String) throws -> [UInt8] {
        let command = ([plan.kubectl] + args.map(shellQuote)).joined(separator: " ")
        return try runShell(command, stdin: stdin, what: what)
    }
}

/// Runs a shell command, feeding `stdin` and collecting stdout; checks the exit status.
@discardableResult
func runShell(_ command: String, stdin: [UInt8]? = nil, what: String) throws -> [UInt8] {
    let runner = CommandRunner(command: command)
    let out = try runner.start(stdin: stdin != nil)
    var result: [UInt8] = []
    // stdin is written on a thread of its own, so a command that answers
    // while it reads cannot block on a full pipe; a write error is kept.
    let writeError = FirstError()
    let written = DispatchSemaphore(value: 0)
    if let input = stdin {
        let fd = runner.stdinDescriptor
        Thread {
            do { try input.withUnsafeBytes { try Sys.writeAll(fd, $0, path: "stdin of \(command)") } } catch { writeError.record(error) }
            runner.closeStdin()
            written.signal()
        }.start()
    } else {
        written.signal()
    }
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = try buf.withUnsafeMutableBytes { try Sys.read(out, $0.baseAddress!, $0.count, path: "output of \(command)") }
        if n == 0 { break }
        result.append(contentsOf: buf[0..<n])
    }
    let status = runner.wait()
    written.wait()
    guard status.succeeded else { throw PlanRunError.commandFailed(what: what, command: command, status: status.description, stderr: runner.stderrTail) }
    if let e = writeError.value { throw e }
    return result
}


/// Kubernetes objects as the plan saves them: fetched as JSON, volatile
/// metadata removed (fields that are missing are fine), written as YAML.
public enum KubeObjects {
    public static let volatileMetadata = ["creationTimestamp", "resourceVersion", "generation", "selfLink", "uid", "managedFields"]

    /// Path of a saved object in the snapshot.
    public static func path(kind: String, namespace: String, name: String) -> String {
        "/kubernetes/\(plural(kind))/\(namespace)/\(name).yaml"
    }

    public static func plural(_ kind: String) -> String { kind.hasSuffix("s") ? kind + "es" : kind + "s" }

    /// Fetches the objects a spec selects. Named objects that do not exist are reported via `missing`.
    public static func fetch(_ spec: Plan.Objects, kubectl: Kubectl, missing: (String) -> Void) throws -> [(name: String, yaml: [UInt8])] {
        let out = try kubectl.run(["get", spec.kind, "-n", spec.namespace, "-o", "json"], what: "listing \(spec.kind)s in \(spec.namespace)")
        guard let list = try JSONSerialization.jsonObject(with: Data(out)) as? [String: Any],
              let items = list["items"] as? [[String: Any]] else {
            throw PlanRunError.badOutput("kubectl get \(spec.kind) -n \(spec.namespace) -o json did not return a list")
        }
        var byName: [String: [String: Any]] = [:]
        for item in items {
            if let meta = item["metadata"] as? [String: Any], let name = meta["name"] as? String { byName[name] = item }
        }
        for n in spec.names ?? [] where byName[n] == nil { missing("\(spec.kind) \(spec.namespace)/\(n) does not exist in the cluster") }
        let chosen = byName.keys.filter(spec.selects)
        return chosen.sorted().map { name in
            var object = byName[name]!
            object = clean(object)
            return (name, Array(toYAML(object).utf8))
        }
    }

    /// Removes volatile metadata (and status) so the object can be applied to a new cluster.
    public static func clean(_ object: [String: Any]) -> [String: Any] {
        var o = object
        if var meta = o["metadata"] as? [String: Any] {
            for f in volatileMetadata { meta.removeValue(forKey: f) }
            o["metadata"] = meta
        }
        o.removeValue(forKey: "status")
        return o
    }

    /// A small YAML emitter for JSON values: block mappings and sequences,
    /// strings double-quoted with JSON escapes (valid YAML 1.2), keys sorted.
    public static func toYAML(_ value: Any) -> String {
        var out = ""
        emit(value, indent: 0, into: &out, inline: false)
        return out
    }

    static func scalar(_ v: Any) -> String? {
        switch v {
        case let s as String:
            let data = (try? JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
            let text = String(decoding: data, as: UTF8.self)
            return String(text.dropFirst().dropLast())
        case let n as NSNumber:
            if String(describing: type(of: n)).contains("Boolean") || String(cString: n.objCType) == "c" { return n.boolValue ? "true" : "false" }
            return n.stringValue
        case is NSNull: return "null"
        default: return nil
        }
    }

    static func emit(_ value: Any, indent: Int, into out: inout String, inline: Bool) {
        let pad = String(repeating: " ", count: indent)
        if let s = scalar(value) { out += s + "\n"; return }
        if let d = value as? [String: Any] {
            if d.isEmpty { out += (inline ? " " : "") + "{}\n"; return }
            if inline { out += "\n" }
            for k in d.keys.sorted() {
                out += pad + scalar(k)! + ":"
                let v = d[k]!
                if let s = scalar(v) { out += " " + s + "\n" }
                else if let a = v as? [Any], a.isEmpty { out += " []\n" }
                else if let m = v as? [String: Any], m.isEmpty { out += " {}\n" }
                else { emit(v, indent: indent + 2, into: &out, inline: true) }
            }
            return
        }
        if let a = value as? [Any] {
            if a.isEmpty { out += (inline ? " " : "") + "[]\n"; return }
            if inline { out += "\n" }
            for v in a {
                out += pad + "-"
                if let s = scalar(v) { out += " " + s + "\n" }
                else { emit(v, indent: indent + 2, into: &out, inline: true) }
            }
        }
    }
}

public enum PlanRunError: Error, CustomStringConvertible {
    case commandFailed(what: String, command: String, status: String, stderr: String)
    case badOutput(String)
    case timeout(String, seconds: Int)
    case markerMissing(String)
    /// The `remove-marker` step failed; `notRun`: the plan's steps after it.
    case markerStays(String, any Error, notRun: [String])
    case noSnapshot(plan: String, repository: String)
    case preRestoreIncomplete(unreadable: [String])

    public var description: String {
        switch self {
        case .commandFailed(let what, let c, let s, let e):
            return "\(what) failed (\(s)): `\(c)`" + (e.isEmpty ? "" : "; stderr: \(e)")
        case .badOutput(let m): return m
        case .timeout(let what, let s): return "timed out after \(s) s waiting for \(what); nothing further was changed (raise --wait-timeout or the plan's timeouts)"
        case .markerStays(let repo, let e, let rest):
            return "the steps before remove-marker ran, but the `restore` marker in \(repo) could not be removed (\(e)): remove it by hand "
                + "(in a bucket, the object PREFIX/restore), or the next plan restore will take it for a new backup and replace live data again"
                + (rest.isEmpty ? "" : "; the plan's steps after remove-marker did not run: \(rest.joined(separator: ", "))")
        case .markerMissing(let repo): return "no `restore` marker in \(repo): the last backup there did not complete (or a restore already ran). Pass --override to restore anyway"
        case .noSnapshot(let p, let r): return "no snapshot of plan \(p) in \(r): run `accord -a backup` first"
        case .preRestoreIncomplete(let paths):
            let shown = paths.prefix(5).joined(separator: ", ") + (paths.count > 5 ? ", …" : "")
            return "the pre-restore snapshot could not read \(paths.count) path(s) (\(shown)); nothing was replaced, since replacing would delete them. Fix their permissions or move them away, then restore again"
        }
    }
}
