import AccordTestSupport

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
}
