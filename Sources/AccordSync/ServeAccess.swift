import Foundation
import AccordCore
import AccordRuntime

/// Which repository `accord serve` may open: the narrow door on the DR node.
///
/// The directory is the client's choice (its `serve --repo DIR`) unless the
/// node pins it, by either
/// - `serve.repository` in the settings file (`/etc/accord/accord.yaml`), or
/// - an authorized_keys forced command (`command="sudo -n accord serve --repo DIR",restrict …`):
///   sshd then runs that command whatever the client asked, and puts the
///   client's request in `SSH_ORIGINAL_COMMAND` (kept through sudo by
///   `Defaults:USER env_keep += "SSH_ORIGINAL_COMMAND"`).
///
/// A pinned serve refuses a client-chosen directory that differs from the pin
/// (compared as canonical paths), naming both. A serve started by a local
/// `accord sync --to DIR` (its parent process is this same accord binary) is
/// not a door to another node and is not pinned.
public enum ServeAccess {
    /// A pin: the directory and where it was set, for messages.
    public struct Pin: Equatable, Sendable {
        public var path: String
        public var source: String
        public init(path: String, source: String) { self.path = path; self.source = source }
    }

    /// The repository directory to serve, or a refusal.
    ///
    /// - argument: serve's own `--repo` (from the client, or from the forced command when `originalCommand` is set)
    /// - settingsPin: `serve.repository` of the settings file
    /// - originalCommand: `SSH_ORIGINAL_COMMAND` (nil when serve is not a forced command)
    /// - local: started by a local `accord sync` (`startedByLocalSync`): no pin applies
    public static func repository(argument: String?, settingsPin: Pin?, originalCommand: String?, local: Bool) throws -> String {
        if local {
            guard let a = argument, !a.isEmpty else { throw ServeAccessError.noRepository }
            return a
        }
        var pins: [Pin] = []
        if let s = settingsPin { pins.append(s) }
        var requested: String?
        if let original = originalCommand {
            // A forced command: serve's own --repo is the administrator's, the client's is in the original command.
            guard let a = argument, !a.isEmpty else { throw ServeAccessError.forcedCommandWithoutRepository }
            pins.append(Pin(path: a, source: "the --repo of this ssh key's forced command"))
            requested = try requestedRepository(in: original)
        } else {
            requested = argument.flatMap { $0.isEmpty ? nil : $0 }
        }
        guard let first = pins.first else {
            guard let r = requested else { throw ServeAccessError.noRepository }
            return r
        }
        // Two pins (settings and forced command) must agree: an administrator's mistake, said as such.
        for p in pins.dropFirst() where canonical(p.path) != canonical(first.path) {
            throw ServeAccessError.pinsDisagree(first, p)
        }
        if let r = requested, canonical(r) != canonical(first.path) {
            throw ServeAccessError.notThePinnedRepository(requested: r, pin: first)
        }
        return first.path
    }

    /// The directory named by `serve --repo DIR` (or `-d`, `--directory`, `=` forms) in
    /// the client's command line, as a POSIX shell would split it; nil if it names none.
    /// A command that does not run `serve` is refused: the key may only serve.
    public static func requestedRepository(in command: String) throws -> String? {
        guard let words = shellWords(command) else { throw ServeAccessError.unreadableRequest(command) }
        guard let s = words.firstIndex(of: "serve") else { throw ServeAccessError.notAServeRequest(command) }
        var i = s + 1
        var found: String?
        while i < words.count {
            let w = words[i]
            if ["--repo", "--directory", "-d"].contains(w) {
                guard i + 1 < words.count else { throw ServeAccessError.unreadableRequest(command) }
                found = words[i + 1]; i += 2; continue
            }
            for p in ["--repo=", "--directory=", "-d"] where w.hasPrefix(p) && w.count > p.count { found = String(w.dropFirst(p.count)) }
            i += 1
        }
        return found
    }

    /// Does `error` say the client is not `accord sync` (a forced command asked
    /// to run another command, or one that cannot be read)? Such a client gets a
    /// plain line on stderr, not an error frame.
    public static func isNotASyncClient(_ error: Error) -> Bool {
        switch error as? ServeAccessError {
        case .notAServeRequest?, .unreadableRequest?: return true
        default: return false
        }
    }

    /// Splits a command line as `sh` would (quotes and backslashes; no expansion).
    /// nil for an unterminated quote or a trailing backslash.
    static func shellWords(_ s: String) -> [String]? {
        var words: [String] = []
        var current = ""
        var inWord = false
        var it = Array(s).makeIterator()
        while let c = it.next() {
            switch c {
            case " ", "\t", "\n":
                if inWord { words.append(current); current = ""; inWord = false }
            case "'":
                inWord = true
                while true { guard let d = it.next() else { return nil }; if d == "'" { break }; current.append(d) }
            case "\"":
                inWord = true
                while true {
                    guard let d = it.next() else { return nil }
                    if d == "\"" { break }
                    if d == "\\" {
                        guard let e = it.next() else { return nil }
                        if !"$`\"\\\n".contains(e) { current.append("\\") }
                        if e != "\n" { current.append(e) }
                    } else { current.append(d) }
                }
            case "\\":
                guard let d = it.next() else { return nil }
                if d != "\n" { current.append(d); inWord = true }
            default:
                current.append(c); inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }

    /// The path with symlinks resolved as far as it exists, the rest (".", ".."
    /// and repeated slashes) folded lexically; relative to the working directory.
    public static func canonical(_ path: String) -> String {
        var p = path
        if !p.hasPrefix("/") { p = FileManager.default.currentDirectoryPath + "/" + p }
        if let r = realpath(p, nil) { defer { free(r) }; return String(cString: r) }
        var parts: [String] = []
        for c in p.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(String(c))
        }
        // Resolve the longest prefix that exists.
        var n = parts.count
        while n >= 0 {
            let prefix = "/" + parts[0..<n].joined(separator: "/")
            if let r = realpath(prefix, nil) {
                defer { free(r) }
                var resolved = String(cString: r)
                for rest in parts[n...] { resolved += (resolved.hasSuffix("/") ? "" : "/") + rest }
                return resolved
            }
            n -= 1
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Was this process started by a local `accord sync --to DIR`? True when the
    /// parent process runs the same executable: a client over ssh (sshd, a shell,
    /// sudo) cannot make itself serve's parent.
    public static var startedByLocalSync: Bool {
        guard let own = try? Sys.readlink(Array("/proc/self/exe".utf8)),
              let parent = try? Sys.readlink(Array("/proc/\(getppid())/exe".utf8)) else { return false }
        return own == parent
    }
}

public enum ServeAccessError: Error, CustomStringConvertible {
    case noRepository
    case forcedCommandWithoutRepository
    case unreadableRequest(String)
    case notAServeRequest(String)
    case pinsDisagree(ServeAccess.Pin, ServeAccess.Pin)
    case notThePinnedRepository(requested: String, pin: ServeAccess.Pin)

    public var description: String {
        switch self {
        case .noRepository:
            return "serve needs the repository directory: give --repo DIR, or pin it as serve.repository in the settings file"
        case .forcedCommandWithoutRepository:
            return "this ssh key's forced command runs serve without --repo: write command=\"sudo -n /usr/local/bin/accord serve --repo DIR\" in authorized_keys"
        case .unreadableRequest(let c):
            return "cannot read the client's command `\(c.prefix(300))` (SSH_ORIGINAL_COMMAND): expected `… accord serve --repo DIR`"
        case .notAServeRequest(let c):
            return "this ssh key may only run `accord serve` (a forced command); the client asked to run `\(c.prefix(300))`"
        case .pinsDisagree(let a, let b):
            return "the repository is pinned twice, differently: \(a.path) by \(a.source) and \(b.path) by \(b.source); make them the same directory"
        case .notThePinnedRepository(let r, let pin):
            return "the client asked for repository \(r), but this node serves only \(pin.path) (pinned by \(pin.source)): sync to \(pin.path) instead (its -d/--to directory), or change the pin"
        }
    }
}
