import Foundation

/// What a reader whose lock takes its second look while it works
/// (`ObjectLock.acquire(_:command:deferringSecondLook:settle:warn:)`, used by
/// `accord restore` on an object store) does with that look:
///
/// - `settled` is the restore's `RestoreOptions.beforeReplacing`: it waits
///   for the look and throws the conflict it found, so nothing that was in
///   the target is replaced while a racing prune may be deleting packs. When
///   the look could not list the locks (the store failing), it looks once
///   more, now; if that fails too it throws rather than let the restore
///   replace anything unchecked. It runs under the restore's `ReplaceGate`
///   lock: every restore thread that reaches the gate waits for it (once).
/// - `unmetWarning` is what to say when the reader ends, failed or not, about
///   a look `settled` never acted on (a restore into a fresh target, which
///   never waits): nil when there is nothing to say.
public final class SecondLookGate: @unchecked Sendable {
    private let lock: any HeldLock
    private let root: String
    private let command: String
    private let state = NSLock()
    private var acted = false   // under `state`

    public init(_ lock: any HeldLock, root: String, command: String) {
        self.lock = lock; self.root = root; self.command = command
    }

    public func settled() throws {
        guard let found = lock.secondLookConflict() else { return }
        state.withLock { acted = true }
        if case RepositoryError.locked = found { throw found }
        guard let again = lock.lookAgain() else { return }
        if case RepositoryError.locked = again { throw again }
        throw RepositoryError.locked("the locks of repository \(root) could not be listed, before `\(command)` would first replace "
                                     + "something in its target (\(found); once more: \(again)), so nothing there was replaced: "
                                     + "run it again once the store answers, or restore into an empty --target")
    }

    public func unmetWarning() -> String? {
        guard let found = lock.secondLookConflict(), !state.withLock({ acted }) else { return nil }
        if case RepositoryError.locked = found {
            return "while `\(command)` ran, the second look of its lock at \(root) found: \(found). "
                + "It read the repository meanwhile (every blob it used verified against its id) and replaced nothing that was "
                + "in its target before that look; if it reported errors, run it again once that command is done"
        }
        return "the second look of the lock of `\(command)` at \(root) could not list the locks (\(found)); "
            + "it went on, as a command that only reads does when it cannot lock, and replaced nothing that was in its target"
    }
}
