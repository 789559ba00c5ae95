import AccordCore
import AccordTestSupport
@_spi(Testing) import AccordS3
import XCTest

/// The backend contract (`BackendConformanceTests`) on `S3Backend` against a
/// real S3 server on loopback: each test gets a fresh prefix in the bucket.
/// An interrupted write is a PUT whose connection is cut halfway through
/// its body: the server must show no object under the name, nor damage the old one.
final class S3BackendConformanceTests: BackendConformanceTests {
    override class func setUp() { super.setUp(); S3Servers.start(self) }
    override class func tearDown() { S3Servers.stop(self); super.tearDown() }

    override func makeBackend() throws -> (backend: any Backend, interruptNextWrite: (() -> Void)?) {
        let server = try S3Servers.server(Self.self)
        let location = try server.location(prefix: freshPrefix())
        XCTAssertEqual(location.host, "127.0.0.1", "tests reach loopback only")
        let b = try S3Backend(location, environment: server.clientEnvironment, retry: S3RetryPolicy(attempts: 3, baseDelay: 0.05))
        return (b, { b.interruptNextUpload(afterBytes: 1000) })
    }

    // Linux test discovery finds only methods declared in this module: each test of the suite, once.
    override func testEveryKindRoundTrips() throws { try super.testEveryKindRoundTrips() }
    override func testRangesReadWhatIsThereAndStopAtTheEnd() throws { try super.testRangesReadWhatIsThereAndStopAtTheEnd() }
    override func testListingIsByKind() throws { try super.testListingIsByKind() }
    override func testDeleteRemovesTheObject() throws { try super.testDeleteRemovesTheObject() }
    override func testMissingObjectsSaySo() throws { try super.testMissingObjectsSaySo() }
    override func testAnInterruptedWriteLeavesNoObject() throws { try super.testAnInterruptedWriteLeavesNoObject() }
    override func testHostileNamesAreRefused() throws { try super.testHostileNamesAreRefused() }
}
