import Foundation

/// A value handed from another thread (a test's background command).
/// `@unchecked Sendable`: `stored` is read and written only under `lock`.
public final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    public init(_ value: T) { stored = value }
    public var value: T {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
    /// Changes the value in place under the lock (`value.append` would get and set apart).
    public func withLock<R>(_ body: (inout T) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try body(&stored)
    }
}
