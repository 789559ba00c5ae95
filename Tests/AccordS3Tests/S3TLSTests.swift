import AccordCore
import AccordTestSupport
@_spi(Testing) import AccordS3
import XCTest

/// TLS is verified by default: a server whose certificate no trusted CA
/// signed is refused (not retried); the CA-file option trusts a private one.
final class S3TLSTests: XCTestCase {
    override class func setUp() { super.setUp(); S3Servers.start(self, tls: true) }
    override class func tearDown() { S3Servers.stop(self); super.tearDown() }

    func testAnUntrustedCertificateIsRefusedAndACAFileTrustsIt() throws {
        let server = try S3Servers.server(Self.self)
        let location = try server.location(prefix: freshPrefix())
        XCTAssertEqual(location.scheme, "https")
        let bytes = Array("over tls".utf8), n = SHA256Hasher.hash(bytes).hex

        let untrusting = try S3Backend(location, environment: server.clientEnvironment)
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try untrusting.write(.index, n, $0) }) { e in
            guard case S3Error.transport(_, let m) = e else { return XCTFail("expected a TLS failure, got \(e)") }
            XCTAssertTrue(m.lowercased().contains("certificate"), m)
            XCTAssertTrue(m.contains("--s3-ca-file") && m.contains("ACCORD_S3_CA_FILE"), "the error says how to trust a private CA: \(m)")
        }
        XCTAssertEqual(untrusting.statistics.retries, 0, "a certificate that fails verification is not retried")

        let trusting = try S3Backend(location, environment: server.clientEnvironment, caFile: XCTUnwrap(server.caFile))
        try bytes.withUnsafeBytes { try trusting.write(.index, n, $0) }
        XCTAssertEqual(try trusting.read(.index, n), bytes)
        XCTAssertEqual(try trusting.list(.index), [n])
    }
}
