@testable import AccordS3
import XCTest

/// libcurl is loaded at run time (dlopen): the binary links neither it nor its
/// TLS stack, and a machine without it gets one clear error on an s3: repository.
final class CurlLibraryTests: XCTestCase {
    func testTheSystemLibcurlLoadsWithEveryFunction() throws {
        let lib = try CurlLibrary.shared.get()
        XCTAssertTrue(CurlLibrary.candidates.contains(lib.name), lib.name)
        XCTAssertNotNil(lib.api.pointee.easy_setopt)
        XCTAssertNotNil(lib.api.pointee.slist_free_all)
        let parts = lib.version.split(separator: ".").compactMap { Int($0) }
        XCTAssertGreaterThanOrEqual(parts.count, 2, lib.version)
        XCTAssertTrue(parts[0] > 7 || (parts[0] == 7 && parts[1] >= 85), "libcurl \(lib.version) lacks CURLOPT_PROTOCOLS_STR (7.85)")
    }

    func testAMissingLibraryIsAClearErrorNamingWhatToInstall() {
        guard case .failure(let error) = CurlLibrary.load(["libaccord-no-such-curl.so.4"]) else {
            return XCTFail("a library that does not exist loaded")
        }
        let text = "\(error)"
        XCTAssertTrue(text.contains("libaccord-no-such-curl.so.4"), text)
        XCTAssertTrue(text.contains("apt install libcurl4"), text)
    }

    /// A library that loads but is not libcurl (no curl_easy_init) is refused, not called.
    func testALibraryWithoutCurlsFunctionsIsRefused() {
        guard case .failure(let error) = CurlLibrary.load(["libz.so.1"]) else {
            return XCTFail("libz was taken for libcurl")
        }
        XCTAssertTrue("\(error)".contains("curl_global_init") || "\(error)".contains("undefined symbol"), "\(error)")
    }
}
