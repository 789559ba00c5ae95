// The Prometheus metrics file (`--metrics-file`, settings `metrics: file:`):
// the text exposition format, in node_exporter's textfile-collector manner:
// one `.prom` file replaced whole (temporary file in the same directory,
// fsync, rename), so the collector never reads half of it.
//
// One file holds every command's series: a run reads the file back, replaces
// the series it writes and keeps the others (another command's, plan's or
// repository's, and its own outcome it did not have this time: the last
// success time survives a failure). Written by hand, not with swift-prometheus:
// that is a registry for a long-running process scraped over HTTP, and it
// cannot read a file's values back; the format is a few lines (below).
#if canImport(Glibc)
import Glibc
#endif
import AccordCore
import AccordRuntime

/// The metrics accord writes: every name in a metrics file, the dashboard and
/// the alert rules is one of these (MetricsTests checks contrib/ against a file).
enum MetricName {
    /// Per command (backup, sync, check, forget, prune), labelled plan (when
    /// there is one) and repository: `accord_<command>_<suffix>`.
    static let perCommand: [(suffix: String, help: String)] = [
        ("last_start_timestamp_seconds", "When the last run started (Unix time)."),
        ("last_success_timestamp_seconds", "When the last run that exited 0 ended (Unix time; 0: never)."),
        ("last_failure_timestamp_seconds", "When the last run that exited non-zero ended (Unix time; 0: never)."),
        ("duration_seconds", "How long the last run took."),
        ("exit_code", "The last run's exit status (0 success, 1 error, 3 backup saved with unreadable files)."),
    ]
    static let commands = ["backup", "sync", "check", "forget", "prune"]
    /// The values a run reports (`CommandRecorder.set`), with their help.
    static let values: [String: String] = [
        "accord_backup_read_bytes": "Bytes the last backup read from its sources.",
        "accord_backup_added_bytes": "Bytes the last backup added to the repository (compressed).",
        "accord_backup_files": "Files in the last backup's snapshot.",
        "accord_sync_sent_bytes": "Bytes the last sync sent over the wire.",
        "accord_sync_snapshots": "Snapshots the last sync sent.",
        "accord_check_errors": "Problems the last check found.",
        "accord_forget_removed_snapshots": "Snapshots the last forget removed.",
        "accord_prune_freed_bytes": "Bytes the last prune freed.",
        "accord_repository_snapshots": "Snapshots in the repository after the last command.",
        "accord_repository_size_bytes": "Bytes the repository's files take (packs, indexes, snapshots, keys, config) after the last command.",
    ]

    static func command(_ c: String, _ suffix: String) -> String { "accord_\(c)_\(suffix)" }

    /// Every name with its help text.
    static let all: [String: String] = {
        var d = values
        for c in commands { for (s, h) in perCommand { d[command(c, s)] = "accord \(c): " + h.prefix(1).lowercased() + h.dropFirst() } }
        return d
    }()
}

/// One sample line: name, labels (sorted by name), value.
struct MetricSample: Equatable {
    var name: String
    var labels: [(String, String)]
    var value: Double

    static func == (a: MetricSample, b: MetricSample) -> Bool {
        a.name == b.name && a.value == b.value && a.labels.elementsEqual(b.labels, by: { $0 == $1 })
    }

    /// The name and labels as written: the identity of the series.
    var series: String {
        labels.isEmpty ? name : name + "{" + labels.map { "\($0.0)=\"\(MetricsText.escape($0.1))\"" }.joined(separator: ",") + "}"
    }
}

/// The text exposition format, the part accord writes: `# HELP`, `# TYPE`
/// gauge, and `name{label="value",…} value` lines, a family's lines together.
enum MetricsText {
    /// No file accord writes comes near this; a larger one is not read back.
    static let maxFileSize = 1 << 20
    /// Series kept at most (a label that changes every run must not grow the file without end).
    static let maxSeries = 5_000

    /// `\`, `"` and newline escaped, as the format wants in label values.
    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Renders samples grouped by name (sorted), each family with its help and type.
    static func render(_ samples: [MetricSample]) -> String {
        var out = ""
        let byName = Dictionary(grouping: samples, by: \.name)
        for name in byName.keys.sorted() {
            out += "# HELP \(name) \(MetricName.all[name] ?? "accord metric.")\n# TYPE \(name) gauge\n"
            for s in byName[name]!.sorted(by: { $0.series < $1.series }) { out += "\(s.series) \(format(s.value))\n" }
        }
        return out
    }

    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 9e15 { return String(Int64(v)) }
        return String(v)
    }

    /// The samples of a file accord wrote, for the names accord writes; any
    /// other line (a comment, a foreign or malformed line) is skipped. The
    /// bytes are untrusted: every label and value is checked while parsing.
    static func parse(_ text: Substring) -> [MetricSample] {
        var out: [MetricSample] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) where !line.hasPrefix("#") {
            if let s = parseLine(line), MetricName.all[s.name] != nil { out.append(s) }
            if out.count >= maxSeries { break }
        }
        return out
    }

    static func parseLine(_ line: Substring) -> MetricSample? {
        let u = Array(line.utf8)
        var i = 0
        func isNameByte(_ b: UInt8, first: Bool) -> Bool {
            (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || b == 0x5f || b == 0x3a || (!first && b >= 0x30 && b <= 0x39)
        }
        func name() -> String? {
            let start = i
            while i < u.count, isNameByte(u[i], first: i == start) { i += 1 }
            return i > start ? String(decoding: u[start..<i], as: UTF8.self) : nil
        }
        guard let metric = name() else { return nil }
        var labels: [(String, String)] = []
        if i < u.count, u[i] == 0x7b /* { */ {
            i += 1
            while i < u.count, u[i] != 0x7d /* } */ {
                guard let key = name(), i + 1 < u.count, u[i] == 0x3d, u[i + 1] == 0x22 else { return nil }
                i += 2
                var value: [UInt8] = []
                while i < u.count, u[i] != 0x22 {
                    if u[i] == 0x5c {
                        guard i + 1 < u.count else { return nil }
                        switch u[i + 1] { case 0x6e: value.append(0x0a); case 0x5c, 0x22: value.append(u[i + 1]); default: return nil }
                        i += 2
                    } else { value.append(u[i]); i += 1 }
                }
                guard i < u.count else { return nil }
                i += 1
                guard let v = String(validating: value, as: UTF8.self), !labels.contains(where: { $0.0 == key }) else { return nil }
                labels.append((key, v))
                if i < u.count, u[i] == 0x2c { i += 1 }
            }
            guard i < u.count else { return nil }
            i += 1
        }
        guard i < u.count, u[i] == 0x20 else { return nil }
        let rest = String(decoding: u[(i + 1)...], as: UTF8.self).split(separator: " ")
        guard rest.count == 1, let value = parseValue(rest[0]) else { return nil }   // accord writes no timestamps
        return MetricSample(name: metric, labels: labels.sorted { $0.0 < $1.0 }, value: value)
    }

    static func parseValue(_ s: Substring) -> Double? {
        switch s {
        case "NaN": return .nan
        case "+Inf": return .infinity
        case "-Inf": return -.infinity
        default: return s.count <= 40 ? Double(s) : nil
        }
    }
}

/// Reads, merges and atomically replaces one metrics file.
struct MetricsFile {
    let path: String

    /// Replaces the series in `updates`, adds those of `ifAbsent` the file
    /// lacks, and keeps every other series the file holds. Holds an flock on the
    /// file's directory meanwhile, so two accords (a backup and a check
    /// started by different timers) do not lose each other's series. The
    /// file is mode 0644: node_exporter runs as its own user, and the file
    /// holds no secret. Durable on return.
    func update(_ updates: [MetricSample], ifAbsent: [MetricSample] = []) throws {
        let dir = parentDirectory(path)
        let dirFD = try Sys.open(dir, O_RDONLY | O_DIRECTORY)
        defer { Sys.close(dirFD) }
        // A bounded wait: anyone who can open the directory can flock it, and
        // a lock held forever must cost the metrics, never the backup.
        var waited = 0
        while flock(dirFD, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else { throw SystemError(errno: errno, operation: "flock", path: dir) }
            waited += 1
            guard waited <= 100 else { throw SystemError(errno: EWOULDBLOCK, operation: "flock (held by another process for 10 s)", path: dir) }
            usleep(100_000)
        }
        var merged: [String: MetricSample] = [:]
        for s in try readExisting() { merged[s.series] = s }
        for s in updates { merged[s.series] = s }
        for s in ifAbsent where merged[s.series] == nil { merged[s.series] = s }
        try write(Array(MetricsText.render(Array(merged.values)).utf8))
    }

    /// The samples the file holds now; a missing file holds none. One too
    /// large to be ours is not read (its series are lost, with a warning).
    func readExisting() throws -> [MetricSample] {
        let fd: Int32
        // Non-blocking: a FIFO planted in the directory must not hang the open.
        do { fd = try Sys.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK) } catch let e as SystemError where e.isNotFound { return [] }
        defer { Sys.close(fd) }
        let st = try Sys.fstat(fd, path: path)
        guard st.isRegular, st.size <= UInt64(MetricsText.maxFileSize) else {
            warn("metrics file \(path) is not a regular file of at most \(MetricsText.maxFileSize) bytes: replacing it without reading its series back")
            return []
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.size))
        let n = try bytes.withUnsafeMutableBytes { try Sys.preadFully(fd, $0.baseAddress!, $0.count, 0, path: path) }
        return MetricsText.parse(String(decoding: bytes.prefix(n), as: UTF8.self)[...])
    }

    /// Temporary file `.NAME.XXXX.tmp` beside the target (node_exporter reads
    /// only `*.prom`), fsync, rename, fsync of the directory.
    func write(_ bytes: [UInt8]) throws {
        let dir = parentDirectory(path)
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let tmp = dir + "/." + name + "." + hexString(Sys.randomBytes(6)) + ".tmp"
        let fd = try Sys.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
        var isOpen = true   // closed once only: another thread may reuse the number
        do {
            try Sys.writeAll(fd, bytes, path: tmp)
            try Sys.fchmod(fd, mode: 0o644, path: tmp)
            try Sys.fsync(fd, path: tmp)
            Sys.close(fd)
            isOpen = false
            try Sys.rename(tmp, path)
            try Sys.fsyncDirectory(dir)
        } catch {
            if isOpen { Sys.close(fd) }
            try? Sys.unlink(tmp)
            throw error
        }
    }
}

/// The directory part of a path (`.` for a bare name).
func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}
