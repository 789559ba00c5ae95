import AccordRuntime
import XCTest
@_spi(Testing) import AccordCore

/// The contract every `Backend` keeps (its doc comment): round trips,
/// ranges, listing by kind, delete, missing objects, atomic writes, names
/// refused. Here (not in AccordCoreTests) so every backend's test target
/// runs the same suite: a subclass overrides `makeBackend()` (and `tearDown`
/// if it needs to) and each `test…` method (Linux test discovery sees only
/// methods declared in the test module); `LocalBackendConformanceTests` runs it as it stands.
open class BackendConformanceTests: XCTestCase {
    /// A fresh, empty backend, and a way to make its next write fail after
    /// the data is staged but before the object takes its name (a crash at
    /// the worst moment); nil if the backend cannot play that.
    open func makeBackend() throws -> (backend: any Backend, interruptNextWrite: (() -> Void)?) {
        var template = Array((NSTemporaryDirectory() + "/accord-backend-XXXXXX").utf8CString)
        guard let dir = mkdtemp(&template) else { throw SystemError(errno: errno, operation: "mkdtemp", path: NSTemporaryDirectory()) }
        let root = String(cString: dir)
        scratch.append(root)
        let layout = RepositoryLayout(root: root)
        for d in layout.subdirectories { try Sys.mkdir(d, mode: 0o700) }
        let local = LocalBackend(layout: layout)
        struct Interrupted: Error {}
        return (local, { local.faultBeforeCommit { _, _ in local.faultBeforeCommit(nil); throw Interrupted() } })
    }

    private var scratch: [String] = []
    open override func tearDown() {
        for d in scratch { _ = try? FileManager.default.removeItem(atPath: d) }
        scratch = []
        super.tearDown()
    }

    /// A valid name of `kind` (content-named kinds: the hash of `bytes`).
    public func name(_ kind: ObjectKind, _ bytes: [UInt8]) -> String {
        switch kind {
        case .config: return "config"
        case .marker: return "restore"
        case .lock: return "lock-" + String(bytes.count)
        default: return SHA256Hasher.hash(bytes).hex
        }
    }

    public func write(_ b: any Backend, _ kind: ObjectKind, _ bytes: [UInt8]) throws -> String {
        let n = name(kind, bytes)
        do { try bytes.withUnsafeBytes { try b.write(kind, n, $0) } } catch BackendError.alreadyExists(.config, _, _) {
            // A server that honours If-None-Match refuses to replace a config (S3Backend): delete it first.
            try b.delete(.config, n)
            try bytes.withUnsafeBytes { try b.write(kind, n, $0) }
        }
        return n
    }

    public func assertNotFound(_ body: @autoclosure () throws -> Any, _ kind: ObjectKind, _ name: String, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { e in
            guard case BackendError.notFound(let k, let n, _) = e else { return XCTFail("expected notFound, got \(e)", line: line) }
            XCTAssertEqual(k, kind, line: line)
            XCTAssertEqual(n, name, line: line)
            XCTAssertTrue("\(e)".contains(name) && "\(e)".contains(kind.rawValue), "message must name the object: \(e)", line: line)
        }
    }

    open func testEveryKindRoundTrips() throws {
        let b = try makeBackend().backend
        var rng = SeededRandom(seed: 1)
        for kind in ObjectKind.allCases {
            for size in [0, 1, 4096, Int(min(300_001, kind.largestObject))] where Int64(size) <= kind.largestObject {   // a backend may refuse a kind's larger object
                let bytes = rng.bytes(size)
                let n = try write(b, kind, bytes)
                XCTAssertEqual(try b.read(kind, n), bytes, "\(kind) of \(size) bytes")
                XCTAssertEqual(try b.size(kind, n), Int64(size))
            }
        }
        // Writing a name again replaces the object whole.
        try ([1, 2, 3] as [UInt8]).withUnsafeBytes { try b.write(.lock, "lock-x", $0) }
        try ([4] as [UInt8]).withUnsafeBytes { try b.write(.lock, "lock-x", $0) }
        XCTAssertEqual(try b.read(.lock, "lock-x"), [4])
    }

    open func testRangesReadWhatIsThereAndStopAtTheEnd() throws {
        let b = try makeBackend().backend
        var rng = SeededRandom(seed: 2)
        let bytes = rng.bytes(10_000)
        for kind in [ObjectKind.pack, .index, .snapshot] {
            let n = try write(b, kind, bytes)
            func read(at offset: Int64, _ count: Int) throws -> [UInt8] {
                var buf = [UInt8](repeating: 0xee, count: count)
                let got = try buf.withUnsafeMutableBytes { try b.read(kind, n, at: offset, into: $0) }
                XCTAssertLessThanOrEqual(got, count)
                return Array(buf[..<got])
            }
            XCTAssertEqual(try read(at: 0, 10_000), bytes)
            XCTAssertEqual(try read(at: 1234, 100), Array(bytes[1234..<1334]))
            XCTAssertEqual(try read(at: 9_990, 100), Array(bytes[9_990...]), "a range crossing the end is cut at it")
            XCTAssertEqual(try read(at: 10_000, 10), [], "at the end: nothing")
            XCTAssertEqual(try read(at: 1 << 40, 10), [], "far past the end: nothing")
            XCTAssertEqual(try read(at: 5, 0), [])
            XCTAssertThrowsError(try read(at: -1, 10), "a negative offset")
        }
    }

    open func testListingIsByKind() throws {
        let b = try makeBackend().backend
        var rng = SeededRandom(seed: 3)
        var made: [ObjectKind: Set<String>] = [:]
        for kind in [ObjectKind.pack, .index, .snapshot, .key] {
            for _ in 0..<3 { made[kind, default: []].insert(try write(b, kind, rng.bytes(100))) }
        }
        for kind in [ObjectKind.pack, .index, .snapshot, .key] {
            XCTAssertEqual(Set(try b.list(kind)), made[kind], "\(kind)")
        }
        XCTAssertEqual(try b.list(.config), [])
        _ = try write(b, .config, [1])
        XCTAssertEqual(try b.list(.config), ["config"])
        // The restore marker: one name, listed without listing the rest of the prefix.
        try? b.delete(.marker, "restore")
        XCTAssertEqual(try b.list(.marker), [])
        _ = try write(b, .marker, [])
        XCTAssertEqual(try b.list(.marker), ["restore"])
        XCTAssertThrowsError(try ([] as [UInt8]).withUnsafeBytes { try b.write(.marker, "config", $0) }, "the marker has one name")
    }

    open func testDeleteRemovesTheObject() throws {
        let b = try makeBackend().backend
        let keep = try write(b, .pack, [1, 2, 3]), gone = try write(b, .pack, [4, 5, 6])
        // A pack read before (its descriptor cached) is deleted all the same.
        var one = [UInt8](repeating: 0, count: 1)
        _ = try one.withUnsafeMutableBytes { try b.read(.pack, gone, at: 0, into: $0) }
        try b.delete(.pack, gone)
        XCTAssertEqual(try b.list(.pack), [keep])
        assertNotFound(try b.read(.pack, gone), .pack, gone)
        assertNotFound(try b.delete(.pack, gone), .pack, gone)
        XCTAssertEqual(try b.read(.pack, keep), [1, 2, 3])
    }

    open func testMissingObjectsSaySo() throws {
        let b = try makeBackend().backend
        let n = SHA256Hasher.hash([UInt8]("absent".utf8)).hex
        for kind in [ObjectKind.pack, .index, .snapshot, .key] {
            assertNotFound(try b.read(kind, n), kind, n)
            assertNotFound(try b.size(kind, n), kind, n)
            var buf = [UInt8](repeating: 0, count: 8)
            assertNotFound(try buf.withUnsafeMutableBytes { try b.read(kind, n, at: 0, into: $0) }, kind, n)
            assertNotFound(try b.delete(kind, n), kind, n)
        }
        assertNotFound(try b.read(.config, "config"), .config, "config")
    }

    open func testAnInterruptedWriteLeavesNoObject() throws {
        let (b, interrupt) = try makeBackend()
        guard let interrupt else { throw XCTSkip("this backend cannot interrupt a write") }
        var rng = SeededRandom(seed: 4)
        let bytes = rng.bytes(70_000)
        let n = name(.pack, bytes)
        interrupt()
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try b.write(.pack, n, $0) })
        XCTAssertEqual(try b.list(.pack), [], "a write cut short must leave nothing under its name")
        assertNotFound(try b.read(.pack, n), .pack, n)
        // Over an existing object: the old one stays whole.
        try ([7, 7] as [UInt8]).withUnsafeBytes { try b.write(.lock, "lock-a", $0) }
        interrupt()
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try b.write(.lock, "lock-a", $0) })
        XCTAssertEqual(try b.read(.lock, "lock-a"), [7, 7])
        // And the next write goes through.
        try bytes.withUnsafeBytes { try b.write(.pack, n, $0) }
        XCTAssertEqual(try b.read(.pack, n), bytes)
    }

    open func testHostileNamesAreRefused() throws {
        let b = try makeBackend().backend
        let hex = SHA256Hasher.hash([1]).hex
        let bad: [(ObjectKind, String)] = [
            (.pack, ".."), (.pack, "../config"), (.pack, "ab/" + hex.dropFirst(3)), (.pack, String(hex.dropLast()) + "\0"),
            (.pack, String(hex.dropLast())), (.pack, hex + "0"), (.pack, hex.uppercased()), (.pack, ""),
            (.index, "../../etc/passwd"), (.snapshot, hex + ".tmp"), (.key, "/" + hex.dropFirst()),
            (.config, "../config"), (.config, "config2"),
            (.lock, ".."), (.lock, "."), (.lock, "a/b"), (.lock, "a\0b"), (.lock, ""), (.lock, String(repeating: "a", count: 129)), (.lock, ".hidden"),
        ]
        for (kind, n) in bad {
            func refused(_ body: () throws -> Any) {
                XCTAssertThrowsError(try body(), "\(kind) \(n.debugDescription)") { e in
                    XCTAssertEqual(e as? BackendError, .invalidName(kind, n), "\(kind) \(n.debugDescription): \(e)")
                }
            }
            refused { try ([1] as [UInt8]).withUnsafeBytes { try b.write(kind, n, $0) } }
            refused { try b.read(kind, n) }
            refused { try b.size(kind, n) }
            refused { try b.delete(kind, n) }
            refused { var x = [UInt8](repeating: 0, count: 4); return try x.withUnsafeMutableBytes { try b.read(kind, n, at: 0, into: $0) } }
        }
        for kind in ObjectKind.allCases { XCTAssertEqual(try b.list(kind), [], "a refused name wrote something (\(kind))") }
        XCTAssertTrue("\(BackendError.invalidName(.lock, "a\0b"))".contains("a?b"), "control bytes are not printed raw")
    }
}
