import Foundation

/// A FIFO between threads with backpressure: `push` blocks while the queue
/// holds more than `capacity` cost units (an item is always admitted into an
/// empty queue, so one oversized item cannot deadlock). `close()` lets
/// consumers drain and then get nil; `cancel()` wakes everyone at once and
/// makes further pushes and pops fail, so one failing stage stops the rest.
// @unchecked Sendable: every stored field is read and written only while `monitor` (its pthread mutex) is held;
// items cross threads, so they must be Sendable.
//
// `push` and `pop` are @inlinable (their fields @usableFromInline) so a
// client module specializes them for its item type: unspecialized, each call
// looked up generic metadata, a few per cent of a no-change backup, which
// pushes and pops one slot per file.
public final class BoundedQueue<T: Sendable>: @unchecked Sendable {
    @usableFromInline var items: [T?] = []
    @usableFromInline var head = 0
    @usableFromInline var cost = 0
    @usableFromInline var costs: [Int] = []
    @usableFromInline let capacity: Int
    @usableFromInline var closed = false
    public internal(set) var cancelled = false
    // One mutex, two conditions: producers wait for room, consumers for items,
    // and each side wakes only one waiter of the other side per item.
    @usableFromInline let monitor = Monitor()

    /// A waiting consumer is woken once `wakeBatch` items are queued (or on
    /// close), not for each: a consumer that does little per item (the
    /// manifest writer on an incremental run) then drains batches instead of
    /// trading a context switch with the producer for every file.
    @usableFromInline let wakeBatch: Int
    @usableFromInline var waitingConsumers = 0

    public init(capacity: Int, wakeBatch: Int = 1) {
        self.capacity = max(1, capacity)
        self.wakeBatch = max(1, min(wakeBatch, self.capacity))
    }

    /// Returns false if the queue was cancelled (the item is dropped).
    @discardableResult @inlinable
    public func push(_ item: T, cost c: Int = 1) -> Bool {
        monitor.lock()
        defer { monitor.unlock() }
        while !cancelled && cost > 0 && cost + c > capacity { monitor.wait(Monitor.notFull) }
        if cancelled || closed { return false }
        items.append(item)
        costs.append(c)
        cost += c
        // Wake a consumer for a full batch, or when the producer is about to
        // block on a full queue (so a batch larger than what fits cannot stall).
        if waitingConsumers > 0 && (items.count - head >= wakeBatch || cost >= capacity) {
            monitor.signal(Monitor.notEmpty)
        }
        return true
    }

    /// The next item, or nil when closed and drained, or cancelled.
    @inlinable public func pop() -> T? {
        monitor.lock()
        defer { monitor.unlock() }
        while !cancelled && head == items.count && !closed {
            waitingConsumers += 1
            monitor.wait(Monitor.notEmpty)
            waitingConsumers -= 1
        }
        if cancelled || head == items.count { return nil }
        let item = items[head]
        items[head] = nil
        cost -= costs[head]
        head += 1
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head); costs.removeFirst(head); head = 0
        }
        monitor.broadcast(Monitor.notFull)
        return item
    }

    public func close() { monitor.lock(); closed = true; monitor.broadcast(Monitor.notEmpty); monitor.broadcast(Monitor.notFull); monitor.unlock() }
    public func cancel() { monitor.lock(); cancelled = true; monitor.broadcast(Monitor.notEmpty); monitor.broadcast(Monitor.notFull); monitor.unlock() }
}

/// Runs `count` threads of `body` and joins them.
// Sendable: its one field, a DispatchGroup, is thread-safe itself.
public final class WorkerGroup: Sendable {
    private let group = DispatchGroup()
    public init() {}

    public func spawn(_ count: Int, name: String, _ body: @escaping @Sendable (Int) -> Void) {
        for i in 0..<count {
            group.enter()
            let t = Thread { body(i); self.group.leave() }
            t.name = "\(name)-\(i)"
            t.stackSize = 4 << 20
            t.start()
        }
    }

    public func wait() { group.wait() }
}

/// The first error any thread hit; later ones are dropped.
// @unchecked Sendable: `error` is read and written only under `lock`.
public final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var error: Error?
    public init() {}
    public func record(_ e: Error) { lock.lock(); if error == nil { error = e }; lock.unlock() }
    public var value: Error? { lock.lock(); defer { lock.unlock() }; return error }
}

/// Threads to use by default: one per core.
public var defaultThreadCount: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }
