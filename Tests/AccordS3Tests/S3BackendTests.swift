import AccordCore
import AccordRuntime
import AccordTestSupport
@_spi(Testing) import AccordS3
import Foundation
import XCTest

/// What the conformance suite does not cover: the errors a user meets
/// (wrong secret, missing bucket), paged listings, ranged reads of a large
/// pack, a server restarted mid-run, damaged objects and oversized answers.
final class S3BackendTests: XCTestCase {
    override class func setUp() { super.setUp(); S3Servers.start(self) }
    override class func tearDown() { S3Servers.stop(self); super.tearDown() }

    func backend(bucket: String? = nil, environment: [String: String]? = nil, retry: S3RetryPolicy = S3RetryPolicy(attempts: 3, baseDelay: 0.05),
                 pageSize: Int = 1000, maxObjectSize: Int = 1 << 30) throws -> (S3Backend, S3TestServer) {
        let server = try S3Servers.server(Self.self)
        let location = try server.location(bucket: bucket, prefix: freshPrefix())
        XCTAssertEqual(location.host, "127.0.0.1", "tests reach loopback only")
        return (try S3Backend(location, environment: environment ?? server.clientEnvironment, retry: retry, pageSize: pageSize, maxObjectSize: maxObjectSize), server)
    }

    func testAWrongSecretIsOneClearErrorNamingTheBucket() throws {
        let server = try S3Servers.server(Self.self)
        var env = server.clientEnvironment
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        let (b, _) = try backend(environment: env)
        for op in [{ _ = try b.list(.index) }, { try ([1] as [UInt8]).withUnsafeBytes { try b.write(.lock, "l1", $0) } }, { _ = try b.size(.config, "config") }] {
            XCTAssertThrowsError(try op()) { e in
                guard case S3Error.accessDenied(let bucket, _, let code, _) = e else { return XCTFail("expected accessDenied, got \(e)") }
                XCTAssertEqual(bucket, server.bucket)
                XCTAssertTrue("\(e)".contains(server.bucket) && "\(e)".contains("AWS_SECRET_ACCESS_KEY"), "\(e)")
                XCTAssertFalse(code.isEmpty)
                XCTAssertFalse("\(e)".contains("not-the-secret"), "the secret is never printed: \(e)")
            }
        }
        XCTAssertEqual(b.statistics.retries, 0, "a 403 is not retried")
    }

    func testAMissingBucketIsItsOwnError() throws {
        let (b, server) = try backend(bucket: "no-such-bucket-here")
        let n = SHA256Hasher.hash([1]).hex
        let ops: [() throws -> Void] = [
            { _ = try b.list(.snapshot) }, { _ = try b.read(.index, n) }, { _ = try b.size(.index, n) },
            { var x = [UInt8](repeating: 0, count: 4); _ = try x.withUnsafeMutableBytes { try b.read(.pack, n, at: 0, into: $0) } },
            { try ([1] as [UInt8]).withUnsafeBytes { try b.write(.index, n, $0) } },
        ]
        for op in ops {
            XCTAssertThrowsError(try op()) { e in
                XCTAssertEqual(e as? S3Error, .noSuchBucket(bucket: "no-such-bucket-here", endpoint: "http://127.0.0.1:\(server.port)"), "\(e)")
                XCTAssertTrue("\(e)".contains("bucket no-such-bucket-here does not exist"), "\(e)")
            }
        }
    }

    func testListingsSpanPages() throws {
        let (b, _) = try backend(pageSize: 3)
        var made = Set<String>(), packs = Set<String>()
        for i in 0..<10 {
            let bytes = Array("index \(i)".utf8)
            let n = SHA256Hasher.hash(bytes).hex
            try bytes.withUnsafeBytes { try b.write(.index, n, $0) }
            made.insert(n)
            let p = Array("pack \(i)".utf8), pn = SHA256Hasher.hash(p).hex
            try p.withUnsafeBytes { try b.write(.pack, pn, $0) }
            packs.insert(pn)
        }
        let before = b.statistics.requests
        XCTAssertEqual(Set(try b.list(.index)), made)
        XCTAssertEqual(b.statistics.requests - before, 4, "10 keys at 3 a page: 4 pages")
        XCTAssertEqual(Set(try b.list(.pack)), packs, "packs under data/XX/ across pages")
        XCTAssertEqual(try b.list(.snapshot), [], "kinds do not leak into each other")
    }

    func testRangedReadsOfALargePack() throws {
        let (b, _) = try backend()
        var rng = SeededRandom(seed: 9)
        let bytes = rng.bytes(3 << 20 + 17)
        let n = SHA256Hasher.hash(bytes).hex
        try bytes.withUnsafeBytes { try b.write(.pack, n, $0) }
        XCTAssertEqual(try b.size(.pack, n), Int64(bytes.count))
        for _ in 0..<40 {
            let off = Int.random(in: 0..<bytes.count), count = Int.random(in: 1...200_000)
            var buf = [UInt8](repeating: 0, count: count)
            let got = try buf.withUnsafeMutableBytes { try b.read(.pack, n, at: Int64(off), into: $0) }
            XCTAssertEqual(got, min(count, bytes.count - off))
            XCTAssertEqual(buf[..<got], bytes[off..<off + got], "range \(off)+\(count)")
        }
        XCTAssertEqual(try b.read(.pack, n), bytes)
    }

    func testAServerRestartedMidRunIsRetried() throws {
        let (b, server) = try backend(retry: S3RetryPolicy(attempts: 12, baseDelay: 0.1, maxDelay: 1))
        let restarted = LockedBox<Int32?>(nil)
        let t = Thread {
            server.stopServing()
            usleep(500_000)
            restarted.value = server.restart()
        }
        var rng = SeededRandom(seed: 5)
        var written: [String: [UInt8]] = [:]
        t.start()
        repeat {
            let bytes = rng.bytes(50_000)
            let n = SHA256Hasher.hash(bytes).hex
            try bytes.withUnsafeBytes { try b.write(.snapshot, n, $0) }
            written[n] = bytes
            XCTAssertEqual(try b.read(.snapshot, n), bytes)
        } while restarted.value == nil
        XCTAssertEqual(restarted.value, 0, "s3-start.sh restarted the server")
        XCTAssertGreaterThan(b.statistics.retries, 0, "requests during the outage were retried")
        XCTAssertEqual(Set(try b.list(.snapshot)), Set(written.keys))
        for (n, bytes) in written.prefix(5) { XCTAssertEqual(try b.read(.snapshot, n), bytes) }
    }

    func testManyThreadsShareOneBackend() throws {
        let (b, _) = try backend()
        let names = LockedBox<[String: [UInt8]]>([:])
        let failures = LockedBox<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            var rng = SeededRandom(seed: UInt64(100 + t))
            for _ in 0..<6 {
                let bytes = rng.bytes(Int.random(in: 1...400_000)), n = SHA256Hasher.hash(bytes).hex
                do {
                    try bytes.withUnsafeBytes { try b.write(.pack, n, $0) }
                    guard try b.read(.pack, n) == bytes else { failures.withLock { $0.append("\(n) read back different") }; continue }
                    var buf = [UInt8](repeating: 0, count: 64)
                    let got = try buf.withUnsafeMutableBytes { try b.read(.pack, n, at: 0, into: $0) }
                    guard buf[..<got] == bytes.prefix(64) else { failures.withLock { $0.append("\(n) range differs") }; continue }
                    names.withLock { $0[n] = bytes }   // one locked step: `value[n] =` would get and set apart
                } catch { failures.withLock { $0.append("\(error)") } }
            }
        }
        XCTAssertEqual(failures.value, [])
        XCTAssertEqual(Set(try b.list(.pack)), Set(names.value.keys))
        XCTAssertEqual(names.value.count, 48)
    }

    func testADamagedObjectIsNotReadAsGood() throws {
        let (b, server) = try backend()
        let bytes = Array(repeating: UInt8(7), count: 5000)
        let n = SHA256Hasher.hash(bytes).hex
        try bytes.withUnsafeBytes { try b.write(.index, n, $0) }
        // Rot one byte on the server's disk (same size, so only the hash can tell).
        let file = server.storage + "/" + server.bucket + "/" + b.s3.prefix + "/index/" + n
        var onDisk = try AtomicFile.read(file)
        XCTAssertEqual(onDisk, bytes)
        onDisk[2500] ^= 1
        try onDisk.withUnsafeBytes { try AtomicFile.write($0, to: file, tmpDirectory: server.directory) }
        XCTAssertThrowsError(try b.read(.index, n)) { e in
            guard case S3Error.contentMismatch(_, let name, _, _) = e else { return XCTFail("expected contentMismatch, got \(e)") }
            XCTAssertEqual(name, n)
        }
    }

    func testAnOversizedObjectIsRefusedBeforeItIsStored() throws {
        let (b, _) = try backend(maxObjectSize: 1000)
        let bytes = Array(repeating: UInt8(1), count: 5000)
        let n = SHA256Hasher.hash(bytes).hex
        try bytes.withUnsafeBytes { try b.write(.pack, n, $0) }
        XCTAssertThrowsError(try b.read(.pack, n)) { e in
            guard case S3Error.responseTooLarge(let what, 1000) = e else { return XCTFail("expected responseTooLarge at 1000, got \(e)") }
            XCTAssertTrue(what.contains(n), what)
        }
        var buf = [UInt8](repeating: 0, count: 100)
        XCTAssertEqual(try buf.withUnsafeMutableBytes { try b.read(.pack, n, at: 4950, into: $0) }, 50, "ranges still read")
    }
}
