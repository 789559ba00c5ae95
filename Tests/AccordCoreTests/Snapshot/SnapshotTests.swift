import Foundation
import XCTest
@testable import AccordCore

/// Snapshot JSON: round trips, and mutated JSON is rejected or consistent.
final class SnapshotTests: CodecTestCase {
    func testSnapshotJSONRoundTrips() throws {
        var rng = TestRandom(seed: 24)
        let s = sampleSnapshot(&rng)
        let bytes = try s.encode()
        let back = try Snapshot.decode(bytes, name: "test")
        XCTAssertEqual(try back.encode(), bytes)
        XCTAssertEqual(back.time, s.time)
        XCTAssertEqual(back.time.rfc3339, "2026-09-21T14:13:20.123456789Z")
        XCTAssertEqual(back.manifestIDs, s.manifestIDs)
        XCTAssertEqual(back.parentID, s.parentID)
        XCTAssertEqual(back.summary, s.summary)
        XCTAssertEqual(back.sources, s.sources)
    }

    func testSnapshotDecoderSurvivesMutatedJSON() {
        var rng = TestRandom(seed: 25)
        let bytes = (try? sampleSnapshot(&rng).encode()) ?? []
        XCTAssertFalse(bytes.isEmpty)
        let started = Date()
        var rejected = 0
        for _ in 0..<3000 {
            let mutated = mutate(bytes, &rng)
            if let s = try? Snapshot.decode(mutated, name: "fuzz") {
                XCTAssertEqual(s.manifestIDs.count, s.manifest.count, "accepted a snapshot with a bad manifest id")
                XCTAssertEqual(s.version, Snapshot.currentVersion)
            } else {
                rejected += 1
            }
        }
        XCTAssertGreaterThan(rejected, 1000)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
    }
}
