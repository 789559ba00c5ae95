import Foundation
import XCTest
@testable import AccordCore

/// `Timestamp`: RFC 3339 parsing of what it prints, and rejection of malformed times.
final class TimestampTests: XCTestCase {
    func testTimestampParsesWhatItPrints() {
        for (sec, ns) in [(Int64(0), Int64(0)), (1_700_000_000, 1), (1_700_000_000, 999_999_999), (4_102_444_800, 500_000_000)] {
            let t = Timestamp(seconds: sec, nanoseconds: ns)
            XCTAssertEqual(Timestamp(rfc3339: t.rfc3339), t, t.rfc3339)
        }
        XCTAssertEqual(Timestamp(rfc3339: "2026-11-27T09:30:00Z")?.nanoseconds, 0)
        XCTAssertEqual(Timestamp(rfc3339: "2026-11-27T09:30:00.5Z")?.nanoseconds, 500_000_000)
        for bad in ["", "2026-11-27", "2026-11-27T09:30:00", "yyyy-11-27T09:30:00Z", "2026-11-27T09:30:00.x1Z"] {
            XCTAssertNil(Timestamp(rfc3339: bad), bad)
        }
    }
}
