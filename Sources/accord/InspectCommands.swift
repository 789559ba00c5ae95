import ArgumentParser
import Foundation
import AccordCore
import AccordEngine
import AccordRuntime

struct Snapshots: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List snapshots.", subcommands: [List.self], defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List snapshots, oldest first.")
        @OptionGroup var repo: RepositoryOptions
        @Flag(help: "Print one JSON array.")
        var json = false

        func run() throws {
            let repository = try repo.open()
            let all = try repository.snapshots { id, error in warn("snapshot \(id.short) is unreadable: \(error)") }
            for (id, s) in all where Repository.isDatedInFuture(s) {
                warn("snapshot \(id.short) is dated \(s.time.short) UTC, in the future: suspect (a wrong clock or a forged snapshot); `latest` skips it and forget's --keep rules do not count it")
            }
            if json {
                var array: [[String: Any]] = []
                for (id, s) in all {
                    var o = (try? JSONSerialization.jsonObject(with: Data(s.encode()))) as? [String: Any] ?? [:]
                    o["id"] = id.hex
                    o["short_id"] = id.short
                    array.append(o)
                }
                let data = try JSONSerialization.data(withJSONObject: array, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            var rows = [["ID", "Time (UTC)", "Host", "Tags", "Paths", "Files", "Size", "Added"]]
            for (id, s) in all {
                let roots = s.sources.filter { $0.kind == "path" }.map(\.path)
                let virtual = s.sources.count - roots.count
                let paths = (roots + (virtual > 0 ? ["+\(virtual) virtual"] : [])).joined(separator: " ")
                rows.append([id.short, s.time.short, escapedText(s.host), escapedText(s.tags.joined(separator: ",")), escapedText(paths),
                             String(s.summary.files), formatBytes(s.summary.totalBytes), formatBytes(s.summary.addedBytes)])
            }
            printTable(rows)
            print("\(all.count) snapshot(s)")
        }
    }
}

func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    var widths = [Int](repeating: 0, count: first.count)
    for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
    for (n, r) in rows.enumerated() {
        let line = r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        print(line)
        if n == 0 { print(String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1))) }
    }
}

struct Ls: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the paths in a snapshot.",
        discussion: """
        Names come from the snapshot and are printed escaped, one per line: a backslash as \\\\, \
        newline, tab and carriage return as \\n, \\t, \\r, other control bytes and bytes that are \
        not UTF-8 as \\xHH (ESC is \\x1b), and C1, line-separator and bidirectional control \
        characters as \\u{XXXX}; so a name can neither fake a line nor send escape sequences to \
        the terminal. With -0 each path is printed raw and ends with a NUL byte, as `find -print0` \
        (for `xargs -0`).
        """)
    @OptionGroup var repo: RepositoryOptions
    @Flag(name: .shortAndLong, help: "Show type, mode, owner, size and mtime.")
    var long = false
    @Flag(name: .customShort("0"), help: "Print raw paths, each ended by a NUL byte instead of a newline (no escaping).")
    var null = false
    @Flag(help: "Print one JSON object a line per entry (schema in README.md, \"Looking inside\").")
    var json = false
    @Argument(help: "Snapshot id, unique id prefix, or 'latest'.")
    var snapshot: String

    func validate() throws {
        if long && null { throw ValidationError("-0 prints bare paths: leave out --long") }
        if json && (long || null) { throw ValidationError("--json prints every attribute: leave out --long and -0") }
    }

    func run() throws {
        let repository = try repo.open()
        let (id, s) = try repository.openSnapshot(snapshot, warn: warn)
        var reader = repository.manifestReader(s, id: id)
        var out: [UInt8] = []
        while let e = try reader.next() {
            if json {
                out += Array(jsonLine(entryJSON(e)).utf8)
                out.append(0x0a)
            } else if null {
                out += e.path
                out.append(0)
            } else {
                if long {
                    let kind: String = ["", "-", "d", "l", "h", "s"][Int(e.kind.rawValue)]
                    let mode = String(e.mode, radix: 8)
                    let t = Timestamp(seconds: e.mtimeSec, nanoseconds: e.mtimeNsec).short
                    out += Array("\(kind) \(String(repeating: "0", count: max(0, 4 - mode.count)) + mode) \(e.uid):\(e.gid) \(String(e.size).leftPad(12)) \(t) ".utf8)
                }
                out += Array(escapedName(e.path).utf8)
                if e.kind == .symlink || e.kind == .hardlink { out += Array(" -> ".utf8) + Array(escapedName(e.linkTarget).utf8) }
                out.append(0x0a)
            }
            if out.count > 1 << 16 { try out.withUnsafeBytes { try Sys.writeStdout($0) }; out.removeAll(keepingCapacity: true) }
        }
        try out.withUnsafeBytes { try Sys.writeStdout($0) }
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dump", abstract: "Write one file (or command output) from a snapshot to stdout.")
    @OptionGroup var repo: RepositoryOptions
    @Argument(help: "Snapshot id, unique id prefix, or 'latest'.")
    var snapshot: String
    @Argument(help: "Absolute path of the file in the snapshot (see `accord ls`).")
    var path: String

    func run() throws {
        let repository = try repo.open()
        let (id, s) = try repository.openSnapshot(snapshot)
        do { try Dump.write(snapshot: id, s, path: Array(path.utf8), repository: repository, to: 1) } catch let e as Dump.Failure {
            switch e {
            case .notAFile(_, _, let kind): throw ValidationError("\(escapedText(path)) in snapshot \(id.short) is a \(kind), not a file")
            case .notFound: throw ValidationError("no file \(escapedText(path)) in snapshot \(id.short): see `accord ls \(id.short)`")
            }
        }
    }
}
