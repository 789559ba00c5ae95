// The step log (`--log-file`, settings `log: file:`): one line per step of a
// command, appended, for an admin reading what last night's run did:
//
//     2026-12-03T02:14:07.412Z accord[4242] command=backup plan=ae5 repository=/opt/anaconda_backup step=end outcome=ok exit=0 seconds=61.2
//
// RFC 3339 time (UTC), then key=value pairs; a value with a space, quote, `=`
// or backslash is quoted, control characters escaped (`escapedText`), so a
// name from a snapshot cannot fake a line. Only step names, counts, ids, the
// repository path and error messages are written: never a passphrase, a key
// or a password file's content (nothing that could hold one reaches `line`).
// Under systemd the same lines (without the time: the journal has it) go to
// stderr, so `journalctl -u accord-backup` shows every step, not only errors.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import AccordRuntime

final class StepLog {
    let path: String?
    /// The descriptor of `path` (O_APPEND), or -1 once it could not be opened (said once).
    private var fd: Int32 = -1
    private var failed = false
    /// True when stderr is the journal: copies go there.
    let journal: Bool

    init(path: String?, journal: Bool = StepLog.stderrIsJournal) {
        self.path = path
        self.journal = journal
    }

    deinit { if fd >= 0 { Sys.close(fd) } }

    /// True when systemd started us ($INVOCATION_ID) and fd 2 is the journal
    /// stream it names ($JOURNAL_STREAM is `device:inode` of that stream):
    /// a test or a shell with the variables inherited but stderr elsewhere gets no copies.
    static var stderrIsJournal: Bool {
        guard let id = Sys.environment("INVOCATION_ID"), !id.isEmpty, let stream = Sys.environment("JOURNAL_STREAM"),
              let st = try? Sys.fstat(2) else { return false }
        return stream == "\(st.device):\(st.inode)"
    }

    /// Writes one line: `pairs` in order, values escaped. A log that cannot
    /// be written is said once on stderr; the command goes on (its exit status is its own).
    func line(_ pairs: [(String, String)]) {
        let text = pairs.map { "\($0.0)=\(Self.quoted($0.1))" }.joined(separator: " ")
        if journal { Sys.writeStderr("accord: \(text)\n") }
        guard let path, !failed else { return }
        if fd < 0 {
            do {
                fd = try Sys.open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode: 0o600)
                guard try Sys.fstat(fd, path: path).isRegular else { throw SystemError(errno: EINVAL, operation: "open (not a regular file)", path: path) }
            } catch {
                if fd >= 0 { Sys.close(fd); fd = -1 }
                failed = true
                warn("cannot write the log file \(path) (\(error)); the command goes on without it")
                return
            }
        }
        // One write per line: O_APPEND keeps lines of concurrent accords whole.
        let full = Self.timestamp() + " accord[\(getpid())] " + text + "\n"
        do { try Sys.writeAll(fd, Array(full.utf8), path: path) } catch {
            failed = true
            warn("cannot write the log file \(path) (\(error)); the command goes on without it")
        }
    }

    /// RFC 3339, UTC, milliseconds: 2026-12-03T02:14:07.412Z.
    static func timestamp(_ t: (sec: Int64, nsec: Int64) = Sys.now()) -> String {
        var secs = time_t(t.sec)
        var tm = Glibc.tm()
        gmtime_r(&secs, &tm)
        func pad(_ v: Int32, _ n: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, n - s.count)) + s }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(t.nsec / 1_000_000), 3))Z"
    }

    /// A value as written: bare when it is plain, else in quotes with `"` and `\` escaped.
    static func quoted(_ v: String) -> String {
        let e = escapedText(v)
        if !e.isEmpty, !e.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\\" }) { return e }
        return "\"" + e.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
