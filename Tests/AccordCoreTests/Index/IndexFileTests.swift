import Foundation
import XCTest
@testable import AccordCore

/// Index files: round trips, every truncation rejected, mutations survived.
final class IndexFileTests: CodecTestCase {
    func testIndexFileRoundTrips() throws {
        var rng = TestRandom(seed: 16)
        for packs in [0, 1, 25] {
            let file = sampleIndex(&rng, packs: packs)
            let bytes = file.encode()
            XCTAssertEqual(try bytes.withUnsafeBytes { try IndexFile.decode($0) }, file)
        }
    }

    func testEveryTruncationOfAnIndexFileIsRejected() {
        var rng = TestRandom(seed: 17)
        let bytes = sampleIndex(&rng, packs: 3).encode()
        for n in 0..<bytes.count {
            XCTAssertThrowsError(try Array(bytes[..<n]).withUnsafeBytes { try IndexFile.decode($0) }, "index cut to \(n) bytes decoded")
        }
        XCTAssertThrowsError(try (bytes + [0]).withUnsafeBytes { try IndexFile.decode($0) }, "trailing byte accepted")
    }

    func testIndexDecoderSurvivesMutations() {
        var rng = TestRandom(seed: 18)
        let bytes = sampleIndex(&rng, packs: 4).encode()
        let started = Date()
        var rejected = 0
        for _ in 0..<4000 {
            let mutated = mutate(bytes, &rng)
            if let file = try? mutated.withUnsafeBytes({ try IndexFile.decode($0) }) {
                XCTAssertEqual(file.encode(), mutated, "an accepted index file does not re-encode to its bytes")
            } else {
                rejected += 1
            }
        }
        XCTAssertGreaterThan(rejected, 1000)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
    }
}
