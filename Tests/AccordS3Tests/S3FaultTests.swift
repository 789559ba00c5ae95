import AccordCore
import AccordTestSupport
@_spi(Testing) import AccordS3
import Foundation
import XCTest

/// Faults a real server rarely shows on demand, played by `FaultProxy` in
/// front of it: 503 SlowDown for a while, resets, clock skew answers, and
/// hostile listings (too large, truncated without a token, a token that
/// does not move). Retries are counted, never timed.
final class S3FaultTests: XCTestCase {
    override class func setUp() { super.setUp(); S3Servers.start(self) }
    override class func tearDown() { S3Servers.stop(self); super.tearDown() }

    var proxy: FaultProxy!
    override func tearDown() { proxy?.stop(); proxy = nil; super.tearDown() }

    func backend(attempts: Int = 6, maxListedKeys: Int = S3Backend.defaultMaxListedKeys) throws -> S3Backend {
        let server = try S3Servers.server(Self.self)
        proxy = try FaultProxy(upstreamPort: Int(server.port)!)
        let location = try S3Location(parsing: "s3:http://127.0.0.1:\(proxy.port)/\(server.bucket)/\(freshPrefix())")
        return try S3Backend(location, environment: server.clientEnvironment, retry: S3RetryPolicy(attempts: attempts, baseDelay: 0.01, maxDelay: 0.05), pageSize: 5,
                             maxListedKeys: maxListedKeys)
    }

    static func errorXML(_ code: String) -> String { "<?xml version=\"1.0\"?><Error><Code>\(code)</Code><Message>injected</Message></Error>" }
    static func httpDate(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX"); f.timeZone = TimeZone(identifier: "GMT"); f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return f.string(from: d)
    }

    func testA503ForAWhileIsRetriedAndSucceeds() throws {
        let b = try backend()
        let bytes = Array("a snapshot".utf8), n = SHA256Hasher.hash(bytes).hex
        proxy.inject(.answer(503, headers: [], body: Self.errorXML("SlowDown")), times: 3)
        try bytes.withUnsafeBytes { try b.write(.snapshot, n, $0) }
        XCTAssertEqual(proxy.statistics.faults, 3)
        XCTAssertEqual(b.statistics.retries, 3)
        proxy.inject(.answer(500, headers: [], body: Self.errorXML("InternalError")), times: 1)
        proxy.inject(.answer(429, headers: [], body: ""), times: 1)
        XCTAssertEqual(try b.read(.snapshot, n), bytes)
        XCTAssertEqual(b.statistics.retries, 5)
    }

    /// A bucket in another region: AWS answers 301 naming it; never followed, never retried, and the error says what to set.
    func testARedirectToAnotherRegionIsNotFollowedAndNamesTheRegion() throws {
        let b = try backend()
        proxy.injectAlways(.answer(301, headers: ["x-amz-bucket-region: eu-west-3"], body: Self.errorXML("PermanentRedirect")))
        XCTAssertThrowsError(try b.list(.index)) { e in
            XCTAssertTrue("\(e)".contains("region eu-west-3") && "\(e)".contains("AWS_REGION=eu-west-3"), "\(e)")
        }
        XCTAssertEqual(b.statistics.retries, 0)
    }

    func testA503ThatLastsFailsClearlyAfterTheRetries() throws {
        let b = try backend(attempts: 4)
        proxy.injectAlways(.answer(503, headers: [], body: Self.errorXML("SlowDown")))
        XCTAssertThrowsError(try b.list(.index)) { e in
            guard case S3Error.http(_, _, 503, "SlowDown", _) = e else { return XCTFail("expected HTTP 503 SlowDown, got \(e)") }
            XCTAssertTrue("\(e)".contains("HTTP 503 SlowDown"), "\(e)")
        }
        XCTAssertEqual(proxy.statistics.requests, 4, "the policy's 4 attempts, no more")
    }

    func testResetConnectionsAreRetried() throws {
        let b = try backend()
        let bytes = [UInt8](repeating: 3, count: 200_000), n = SHA256Hasher.hash(bytes).hex
        proxy.inject(.reset, times: 2)
        try bytes.withUnsafeBytes { try b.write(.pack, n, $0) }
        proxy.inject(.reset, times: 2)
        var buf = [UInt8](repeating: 0, count: 10)
        XCTAssertEqual(try buf.withUnsafeMutableBytes { try b.read(.pack, n, at: 5, into: $0) }, 10)
        XCTAssertEqual(b.statistics.retries, 4)
        XCTAssertEqual(try b.read(.pack, n), bytes)
    }

    func testClockSkewIsNamedNotCalledAWrongKey() throws {
        let b = try backend()
        proxy.inject(.answer(403, headers: [], body: Self.errorXML("RequestTimeTooSkewed")), times: 1)
        XCTAssertThrowsError(try b.list(.snapshot)) { e in
            guard case S3Error.clockSkew = e else { return XCTFail("expected clockSkew, got \(e)") }
            XCTAssertTrue("\(e)".contains("clock"), "\(e)")
        }
        // Some servers answer 400 AccessDenied: the Date header tells.
        proxy.inject(.answer(400, headers: ["Date: " + Self.httpDate(Date(timeIntervalSinceNow: -7200))], body: Self.errorXML("AccessDenied")), times: 1)
        XCTAssertThrowsError(try b.list(.snapshot)) { e in
            guard case S3Error.clockSkew(_, _, let detail) = e else { return XCTFail("expected clockSkew, got \(e)") }
            XCTAssertTrue(detail.contains("AccessDenied"), detail)
        }
        proxy.inject(.answer(400, headers: ["Date: " + Self.httpDate(Date())], body: Self.errorXML("AccessDenied")), times: 1)
        XCTAssertThrowsError(try b.list(.snapshot)) { e in
            guard case S3Error.accessDenied = e else { return XCTFail("a right clock: access denied, got \(e)") }
        }
        XCTAssertEqual(b.statistics.retries, 0, "none of these is retried")
    }

    func testAWholeReadIsCheckedAgainstTheServersSHA256() throws {
        let b = try backend()
        let sha = SHA256Hasher.hash(Array("abc".utf8)).hex
        proxy.inject(.answer(200, headers: ["x-amz-content-sha256: " + sha], body: "abc"), times: 1)
        XCTAssertEqual(try b.read(.lock, "l1"), Array("abc".utf8))
        proxy.inject(.answer(200, headers: ["x-amz-content-sha256: " + sha], body: "abd"), times: 1)
        XCTAssertThrowsError(try b.read(.lock, "l1")) { e in
            guard case S3Error.contentMismatch(_, "l1", _, let got) = e else { return XCTFail("expected contentMismatch, got \(e)") }
            XCTAssertTrue(got.contains(sha), got)
        }
        proxy.inject(.answer(200, headers: ["Content-Length: 5"], body: "abc"), times: 1)
        XCTAssertThrowsError(try b.read(.lock, "l1"), "a body shorter than its Content-Length")
    }

    func testAnEndlessErrorDocumentIsCutOffAndStillNamed() throws {
        let b = try backend()
        proxy.inject(.answer(403, headers: [], body: "<Error><Code>AccessDenied</Code>" + String(repeating: "x", count: 3 << 20)), times: 1)
        XCTAssertThrowsError(try b.size(.config, "config")) { e in
            guard case S3Error.accessDenied = e else { return XCTFail("expected accessDenied, got \(e)") }
        }
        proxy.inject(.answer(404, headers: [], body: String(repeating: "y", count: 3 << 20)), times: 1)
        assertNotFoundOrThrow(b)
    }

    private func assertNotFoundOrThrow(_ b: S3Backend) {
        XCTAssertThrowsError(try b.read(.lock, "l2")) { e in
            XCTAssertEqual(e as? BackendError, .notFound(.lock, "l2", location: b.location), "\(e)")
        }
    }

    func testHostileListingsAreRefusedNotFollowed() throws {
        let b = try backend()
        let huge = "<ListBucketResult>" + String(repeating: "<Contents><Key>x</Key></Contents>", count: 300_000) + "</ListBucketResult>"
        proxy.injectAlways(.answer(200, headers: [], body: huge))
        XCTAssertThrowsError(try b.list(.index)) { e in XCTAssertEqual(e as? S3Error, .responseTooLarge("GET", S3Backend.maxListPage), "\(e)") }
        proxy.injectAlways(.answer(200, headers: [], body: "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"))
        XCTAssertThrowsError(try b.list(.index)) { e in
            guard case S3Error.badResponse(_, let why) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(why.contains("NextContinuationToken"), why)
        }
        proxy.injectAlways(.answer(200, headers: [], body: "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>same</NextContinuationToken></ListBucketResult>"))
        XCTAssertThrowsError(try b.list(.index)) { e in
            guard case S3Error.badResponse(_, let why) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(why.contains("did not move"), why)
        }
        XCTAssertLessThanOrEqual(proxy.statistics.requests, 4, "a token that does not move is not followed forever")
        proxy.injectAlways(.answer(200, headers: [], body: "<ListBucketResult><Contents><Key>"))
        XCTAssertThrowsError(try b.list(.index)) { e in
            guard case S3Error.badResponse = e else { return XCTFail("\(e)") }
        }
        proxy.injectAlways(.answer(200, headers: [], body: "<ListBucketResult><Contents><Key>../../etc/passwd</Key></Contents><Contents><Key>\(b.s3.prefix)/index/ABC</Key></Contents></ListBucketResult>"))
        XCTAssertEqual(try b.list(.index), [], "keys that are not valid names are left out")
    }

    static func page(keys: [String], truncated: String, next: String? = nil) -> String {
        "<ListBucketResult><IsTruncated>\(truncated)</IsTruncated>" + (next.map { "<NextContinuationToken>\($0)</NextContinuationToken>" } ?? "")
            + keys.map { "<Contents><Key>\($0)</Key></Contents>" }.joined() + "</ListBucketResult>"
    }

    /// Review 23 M5: tokens that alternate (A, B, A, …) each differ from the one just
    /// sent; the listing must still end, refused, not loop growing its names.
    func testAListingWhoseTokensComeBackIsRefusedNotWalkedForever() throws {
        let b = try backend()
        for t in ["A", "B", "A", "B", "A", "B"] {
            proxy.inject(.answer(200, headers: [], body: Self.page(keys: [], truncated: "true", next: t)), times: 1)
        }
        XCTAssertThrowsError(try b.list(.index)) { e in
            guard case S3Error.badResponse(_, let why) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(why.contains("\"A\" came back") && why.contains("loops"), why)
        }
        XCTAssertEqual(proxy.statistics.requests, 3, "the third page repeats A: no fourth request")
    }

    /// Review 23 M5: tokens that never repeat still end at `maxListedKeys` keys.
    func testAnEndlessListingIsCappedAtItsKeyLimit() throws {
        let b = try backend(maxListedKeys: 12)
        let prefix = b.s3.key("index/")
        for i in 0..<10 {
            let keys = (0..<5).map { prefix + SHA256Hasher.hash(Array("\(i)-\($0)".utf8)).hex }
            proxy.inject(.answer(200, headers: [], body: Self.page(keys: keys, truncated: "true", next: "t\(i)")), times: 1)
        }
        XCTAssertThrowsError(try b.list(.index)) { e in
            guard case S3Error.badResponse(_, let why) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(why.contains("more than 12 keys"), why)
        }
        XCTAssertEqual(proxy.statistics.requests, 3, "refused on the page that passes the cap")
    }

    /// Review 23 N11: IsTruncated is an xsd:boolean ("1", spaces around); anything
    /// else is refused rather than read as "the last page".
    func testIsTruncatedIsReadAsAnXSDBoolean() throws {
        let b = try backend()
        let prefix = b.s3.key("index/")
        let names = (0..<2).map { SHA256Hasher.hash([UInt8($0)]).hex }
        proxy.inject(.answer(200, headers: [], body: Self.page(keys: [prefix + names[0]], truncated: " 1 ", next: "more")), times: 1)
        proxy.inject(.answer(200, headers: [], body: Self.page(keys: [prefix + names[1]], truncated: "0")), times: 1)
        XCTAssertEqual(Set(try b.list(.index)), Set(names), "a page past the first is read")
        proxy.inject(.answer(200, headers: [], body: Self.page(keys: [prefix + names[0]], truncated: "True", next: "more")), times: 1)
        XCTAssertThrowsError(try b.list(.index)) { e in
            guard case S3Error.badResponse(_, let why) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(why.contains("IsTruncated"), why)
        }
    }

    /// Review 23 W7: a ranged answer shorter than its Content-Range says is the
    /// connection's fault: retried, and after the retries a clear error, never
    /// "the object ends here".
    func testAShortRangedAnswerIsRetriedNotTakenAsTheEnd() throws {
        let b = try backend(attempts: 3)
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<1000).map { _ in UInt8.random(in: 0...255, using: &rng) }, n = SHA256Hasher.hash(bytes).hex
        try bytes.withUnsafeBytes { try b.write(.pack, n, $0) }
        var buf = [UInt8](repeating: 0, count: 100)
        proxy.inject(.answer(206, headers: ["Content-Range: bytes 200-299/1000"], body: String(repeating: "x", count: 10)), times: 1)
        XCTAssertEqual(try buf.withUnsafeMutableBytes { try b.read(.pack, n, at: 200, into: $0) }, 100)
        XCTAssertEqual(buf, Array(bytes[200..<300]), "the retry read the real bytes")
        XCTAssertEqual(b.statistics.retries, 1)

        proxy.inject(.answer(206, headers: ["Content-Range: bytes 200-299/1000"], body: ""), times: 3)
        XCTAssertThrowsError(try buf.withUnsafeMutableBytes { try b.read(.pack, n, at: 200, into: $0) }) { e in
            guard case S3Error.badResponse(_, let why) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(why.contains("sent 0 bytes of a range of 100"), why)
        }
        // A 200 with a Content-Range from the start (rclone's way) cut short is the same.
        proxy.inject(.answer(200, headers: ["Content-Range: bytes 0-999/1000"], body: String(repeating: "x", count: 250)), times: 3)
        XCTAssertThrowsError(try buf.withUnsafeMutableBytes { try b.read(.pack, n, at: 200, into: $0) }) { e in
            guard case S3Error.badResponse(_, let why) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(why.contains("sent 50 bytes of a range of 100"), why)
        }
        // The real end of the object is still an end.
        XCTAssertEqual(try buf.withUnsafeMutableBytes { try b.read(.pack, n, at: 950, into: $0) }, 50)
        XCTAssertEqual(Array(buf[..<50]), Array(bytes[950...]))
        proxy.inject(.answer(206, headers: ["Content-Range: bytes 950-999/1000"], body: String(repeating: "y", count: 50)), times: 1)
        XCTAssertEqual(try buf.withUnsafeMutableBytes { try b.read(.pack, n, at: 950, into: $0) }, 50, "a range cut at TOTAL is complete")
    }

    /// Review 23 W2 and M4: a HEAD or GET is held to its kind's largest object
    /// (a lock 64 KiB, an index 4 GiB), whatever an earlier HEAD said.
    func testSizesAndBodiesAreBoundedByKind() throws {
        let b = try backend(attempts: 1)
        proxy.inject(.raw("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\nConnection: close\r\n\r\n"), times: 1)
        XCTAssertThrowsError(try b.size(.index, String(repeating: "a", count: 64))) { e in
            guard case S3Error.badResponse(_, let why) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(why.contains("9223372036854775807") && why.contains("\(ObjectKind.index.largestObject)"), why)
        }
        let key = String(repeating: "b", count: 64)
        proxy.inject(.raw("HTTP/1.1 200 OK\r\nContent-Length: 65537\r\nConnection: close\r\n\r\n"), times: 1)
        XCTAssertThrowsError(try b.size(.key, key)) { e in
            guard case S3Error.badResponse = e else { return XCTFail("\(e)") }
        }
        proxy.inject(.raw("HTTP/1.1 200 OK\r\nContent-Length: 65536\r\nConnection: close\r\n\r\n"), times: 1)
        XCTAssertEqual(try b.size(.key, key), 65536, "a key file at its limit is fine")
        // A lock's size is told as it is (ObjectLock calls an oversized lock unusable; unlock removes it).
        proxy.inject(.raw("HTTP/1.1 200 OK\r\nContent-Length: 65537\r\nConnection: close\r\n\r\n"), times: 1)
        XCTAssertEqual(try b.size(.lock, "l1"), 65537)
        // An object too large to read can still be deleted (the DELETE goes on to the real server).
        proxy.inject(.raw("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\nConnection: close\r\n\r\n"), times: 1)
        XCTAssertNoThrow(try b.delete(.index, String(repeating: "a", count: 64)))

        // A GET of a lock that brings more than 64 KiB: refused as the bytes come, with or without a Content-Length.
        let big = String(repeating: "z", count: (64 << 10) + 1)
        proxy.inject(.answer(200, headers: [], body: big), times: 1)
        XCTAssertThrowsError(try b.read(.lock, "l1")) { e in
            guard case S3Error.responseTooLarge(let what, let limit) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(limit, 64 << 10); XCTAssertTrue(what.contains("locks/l1"), what)
        }
        proxy.inject(.raw("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + String(repeating: "{", count: (1 << 20) + 1)), times: 1)
        XCTAssertThrowsError(try b.read(.config, "config")) { e in
            guard case S3Error.responseTooLarge(_, let limit) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(limit, 1 << 20)
        }
        proxy.inject(.raw("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + big), times: 1)
        XCTAssertThrowsError(try b.read(.key, key)) { e in
            guard case S3Error.responseTooLarge(_, let limit) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(limit, KeyFile.maxFileSize)
        }
    }

    /// Review 23 N10: a pack may pass `packSize` (1 GiB at most) by its last blob
    /// and header; such a pack's size and body are not refused as too large.
    func testAPackLargerThanTheLargestPackSizeIsNotRefused() throws {
        let b = try backend(attempts: 1)
        let size = Int64(RepositoryConfig.packSizes.upperBound) + Int64(PackFormat.maxStoredLength)
        let n = String(repeating: "c", count: 64)
        proxy.inject(.raw("HTTP/1.1 200 OK\r\nContent-Length: \(size)\r\nConnection: close\r\n\r\n"), times: 1)
        XCTAssertEqual(try b.size(.pack, n), size)
        // The body stops early: the transfer fails, but not as "too large".
        proxy.inject(.raw("HTTP/1.1 200 OK\r\nContent-Length: \(size)\r\nConnection: close\r\n\r\nabc"), times: 1)
        XCTAssertThrowsError(try b.read(.pack, n)) { e in
            if case S3Error.responseTooLarge = e { XCTFail("a pack of \(size) bytes refused: \(e)") }
        }
        XCTAssertGreaterThan(ObjectKind.pack.largestObject, size + Int64(PackFormat.maxHeaderLength) - 1)
    }
}
