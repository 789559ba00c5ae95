import XCTest
@testable import AccordCore

final class IDTests: XCTestCase {
    func testHexRoundTripsAndSortsLikeBytes() {
        let a = SHA256Hasher.hash("a"), b = SHA256Hasher.hash("b")
        XCTAssertEqual(ID(hex: a.hex), a)
        XCTAssertEqual(a < b, a.hex < b.hex)
        XCTAssertNil(ID(hex: "zz"))
    }

    func testSHA256MatchesKnownVector() {
        XCTAssertEqual(SHA256Hasher.hash("abc").hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256Hasher.hash([UInt8]()).hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }
}
