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

    func backend(attempts: Int = 6) throws -> S3Backend {
        let server = try S3Servers.server(Self.self)
        proxy = try FaultProxy(upstreamPort: Int(server.port)!)
        let location = try S3Location(parsing: "s3:http://127.0.0.1:\(proxy.port)/\(server.bucket)/\(freshPrefix())")
        return try S3Backend(location, environment: server.clientEnvironment, retry: S3RetryPolicy(attempts: attempts, baseDelay: 0.01, maxDelay: 0.05), pageSize: 5)
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
}
