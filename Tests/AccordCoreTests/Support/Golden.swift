import Foundation
import XCTest
@_exported import AccordTestSupport

/// The shared SplitMix64 generator, under this suite's older name.
typealias TestRandom = SeededRandom

/// Golden files (STYLE.md item 11): compared with the copy in the test
/// bundle; `ACCORD_UPDATE_GOLDEN=1` rewrites the checked-in file instead
/// (then rebuild, and read the diff).
enum Golden {
    static let sourceDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Golden")
    static var updating: Bool { ProcessInfo.processInfo.environment["ACCORD_UPDATE_GOLDEN"] == "1" }

    static func check(_ actual: String, name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        if updating {
            try actual.write(to: sourceDirectory.appendingPathComponent(name), atomically: true, encoding: .utf8)
            print("rewrote golden file Golden/\(name)")
            return
        }
        guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Golden"),
              let expected = try? String(contentsOf: url, encoding: .utf8) else {
            return XCTFail("golden file Golden/\(name) is missing: run the tests with ACCORD_UPDATE_GOLDEN=1 and check it in", file: file, line: line)
        }
        if expected == actual { return }
        let e = expected.split(separator: "\n", omittingEmptySubsequences: false)
        let a = actual.split(separator: "\n", omittingEmptySubsequences: false)
        let first = (0..<min(e.count, a.count)).first { e[$0] != a[$0] } ?? min(e.count, a.count)
        XCTFail("""
            output differs from golden file Golden/\(name) at line \(first + 1) (\(e.count) lines expected, \(a.count) produced):
              expected: \(first < e.count ? String(e[first]) : "<end>")
              actual:   \(first < a.count ? String(a[first]) : "<end>")
            If the format change is intended, rerun with ACCORD_UPDATE_GOLDEN=1, record it in FORMAT.md, and review the diff.
            """, file: file, line: line)
    }
}
