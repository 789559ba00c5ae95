// Why our own and not NSCondition: one mutex with two conditions, so a queue's
// producers and consumers are woken apart (swift-system has no locks on Linux).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A mutex with two condition variables (pthread), for queues whose
/// producers and consumers wait on different conditions.
// @unchecked Sendable: it is the lock (a pthread mutex); its pointers never change after init.
public final class Monitor: @unchecked Sendable {
    public static let notEmpty = 0
    public static let notFull = 1
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let conds = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 2)

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(conds, nil)
        pthread_cond_init(conds + 1, nil)
    }

    deinit {
        pthread_cond_destroy(conds); pthread_cond_destroy(conds + 1); pthread_mutex_destroy(mutex)
        conds.deallocate(); mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
    public func wait(_ c: Int) { pthread_cond_wait(conds + c, mutex) }
    public func signal(_ c: Int) { pthread_cond_signal(conds + c) }
    public func broadcast(_ c: Int) { pthread_cond_broadcast(conds + c) }
}
