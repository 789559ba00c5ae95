import ArgumentParser
import Foundation
import AccordCore
import AccordRuntime

/// `--retry-lock DURATION` of the commands that take the repository lock
/// (backup, restore, check, forget, prune, sync, `-a backup|restore`): while
/// another live accord holds a conflicting lock, wait for it that long instead
/// of failing at once. A command's `run` calls `apply()` before any lock is
/// taken; `withLock` and `runPlanRestore` then read `LockWait.seconds`.
struct LockWaitOptions: ParsableArguments {
    @Option(help: ArgumentHelp("While another accord holds the repository's lock, wait for it up to DURATION (e.g. 30s, 5m, 1h, 1h30m; at most 24h) before failing.",
                               valueName: "DURATION"))
    var retryLock: String?

    func validate() throws {
        if let d = retryLock, LockWait.parse(d) == nil {
            throw ValidationError("--retry-lock \(d.prefix(40).debugDescription): expected a duration like 30s, 5m, 1h or 1h30m, at most 24h")
        }
    }

    var seconds: Double { retryLock.flatMap(LockWait.parse) ?? 0 }

    /// Makes `withLock` wait up to `seconds` for a live holder.
    func apply() { LockWait.seconds = seconds }
}

/// The running command's `--retry-lock`, in seconds (0: fail at once, as without it).
///
/// `@unchecked Sendable`: `value` is read and written only under `lock`.
final class LockWait: @unchecked Sendable {
    private static let shared = LockWait()
    private let lock = NSLock()
    private var value: Double = 0

    static var seconds: Double {
        get { shared.lock.withLock { shared.value } }
        set { shared.lock.withLock { shared.value = newValue } }
    }

    /// The longest wait: a day (a daily backup that waits longer overlaps the next one).
    static let maxSeconds: Double = 24 * 3600

    /// Seconds in `text`: one or more NUMBER UNIT groups (`s`, `m`, `h`; a bare
    /// number is seconds), at most `maxSeconds`; nil when malformed or too
    /// long. Integers only, each checked before it is multiplied (no overflow).
    static func parse(_ text: String) -> Double? {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= 32 else { return nil }
        var total = 0.0, number: Double?, i = 0, units = 0
        while i < bytes.count {
            let c = bytes[i]
            if c >= 0x30 && c <= 0x39 {
                number = (number ?? 0) * 10 + Double(c - 0x30)
                if number! > maxSeconds { return nil }
            } else {
                guard let n = number else { return nil }
                switch c {
                case UInt8(ascii: "s"): total += n
                case UInt8(ascii: "m"): total += n * 60
                case UInt8(ascii: "h"): total += n * 3600
                default: return nil
                }
                number = nil
                units += 1
            }
            i += 1
        }
        if let n = number {
            // A bare number only on its own ("90"), not after a unit ("1h30" is ambiguous).
            guard units == 0 else { return nil }
            total = n
        }
        return total <= maxSeconds ? total : nil
    }

    /// Tells stderr whom the command waits for (never suppressed by --quiet or --json: it explains a pause).
    static func say(_ message: String) { Sys.writeStderr("waiting: \(escapedText(message))\n") }
}
