import AccordTestSupport
import Foundation
import XCTest

/// The backend contract (`BackendConformanceTests`, in AccordTestSupport so
/// other backends share it) on `LocalBackend`, its default `makeBackend()`.
final class LocalBackendConformanceTests: BackendConformanceTests {
    // Linux test discovery finds only methods declared in this module: each test of the suite, once.
    override func testEveryKindRoundTrips() throws { try super.testEveryKindRoundTrips() }
    override func testRangesReadWhatIsThereAndStopAtTheEnd() throws { try super.testRangesReadWhatIsThereAndStopAtTheEnd() }
    override func testListingIsByKind() throws { try super.testListingIsByKind() }
    override func testDeleteRemovesTheObject() throws { try super.testDeleteRemovesTheObject() }
    override func testMissingObjectsSaySo() throws { try super.testMissingObjectsSaySo() }
    override func testAnInterruptedWriteLeavesNoObject() throws { try super.testAnInterruptedWriteLeavesNoObject() }
    override func testHostileNamesAreRefused() throws { try super.testHostileNamesAreRefused() }

    /// Every subclass of the suite (in any test target) forwards every test of it:
    /// a test added to the suite and not forwarded would silently not run.
    func testEverySubclassForwardsEveryTest() throws {
        let root = AccordBinary.packageRoot + "/Tests"
        func tests(_ text: String, _ prefix: String) -> Set<String> {
            Set(text.split(separator: "\n").compactMap { line in
                guard let r = line.range(of: prefix + "func test") else { return nil }
                return String(line[r.upperBound...].prefix { $0 != "(" })
            })
        }
        let suite = tests(try String(contentsOfFile: root + "/AccordTestSupport/BackendConformanceTests.swift", encoding: .utf8), "open ")
        XCTAssertGreaterThanOrEqual(suite.count, 7)
        var subclasses = 0
        for case let file as String in FileManager.default.enumerator(atPath: root)! where file.hasSuffix(".swift") {
            let text = try String(contentsOfFile: root + "/" + file, encoding: .utf8)
            guard text.contains(": BackendConformanceTests {") else { continue }
            subclasses += 1
            XCTAssertEqual(tests(text, "override "), suite, "\(file) must forward every test of BackendConformanceTests")
        }
        XCTAssertGreaterThanOrEqual(subclasses, 2, "LocalBackend and S3Backend run the suite")
    }
}
