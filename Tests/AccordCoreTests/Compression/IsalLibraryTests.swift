import Foundation
import AccordRuntime
import AccordTestSupport
import XCTest
@testable import AccordCore

/// ISA-L is loaded at run time (`IsalLibrary`), not linked: where it loads,
/// the fast levels are igzip's; where it does not, every level is libdeflate's,
/// and the blobs are the same zlib format either way.
final class IsalLibraryTests: CodecTestCase {
    /// Where libisal2 is installed (`make deps`), this test process loaded it,
    /// from an absolute path, and the default compressor uses it.
    func testTheSystemsIsalIsLoadedAndUsedByDefault() throws {
        guard Sys.environment("ACCORD_NO_ISAL") == nil else { throw XCTSkip("ACCORD_NO_ISAL is set for this run") }
        let lib = try XCTUnwrap(IsalLibrary.shared.library, "libisal.so.2 did not load: \(IsalLibrary.shared.description)")
        XCTAssertTrue(lib.path.hasPrefix("/") && lib.path.hasSuffix("/libisal.so.2"), lib.path)
        XCTAssertTrue(IsalLibrary.shared.description.hasPrefix("igzip (ISA-L, \(lib.path))"), IsalLibrary.shared.description)
        XCTAssertTrue(Deflater(level: .default).usesIgzip)
        XCTAssertFalse(Deflater(level: CompressionLevel(3)).usesIgzip, "level 3 is libdeflate's")
        XCTAssertFalse(Deflater(level: .default, engine: .libdeflate).usesIgzip)
    }

    /// Without ISA-L every engine at every level writes what libdeflate at that
    /// level writes, byte for byte: valid zlib, and no igzip call that failed.
    func testWithoutIsalEveryEngineAndLevelIsLibdeflate() throws {
        var rng = TestRandom(seed: 40)
        let samples = [text(&rng, count: 3000), text(&rng, count: 100_000), [UInt8](repeating: 0, count: 100_000)]
        var packed: [UInt8] = [], reference: [UInt8] = []
        for engine in [Deflater.Engine.automatic, .igzip] {
            for level in Int32(1) ... 9 {
                let deflater = Deflater(level: CompressionLevel(level), engine: engine, isal: nil)
                let libdeflate = Deflater(level: CompressionLevel(level), engine: .libdeflate, isal: nil)
                XCTAssertFalse(deflater.usesIgzip, "\(engine) level \(level)")
                for raw in samples {
                    let what = "no ISA-L, \(engine) level \(level), \(raw.count) bytes"
                    XCTAssertEqual(raw.withUnsafeBytes { deflater.compress($0, into: &packed) }, .zlib, what)
                    try assertValidZlib(packed, raw: raw, what)
                    _ = raw.withUnsafeBytes { libdeflate.compress($0, into: &reference) }
                    XCTAssertEqual(packed, reference, "\(what): not libdeflate's stream")
                }
                let random = rng.bytes(64 << 10)
                XCTAssertEqual(random.withUnsafeBytes { deflater.compress($0, into: &packed) }, .none, "no ISA-L: random data 'compressed'")
                XCTAssertEqual(deflater.igzipFailures, 0)
            }
        }
        let off = Deflater(level: CompressionLevel(0), engine: .automatic, isal: nil)
        XCTAssertEqual(samples[1].withUnsafeBytes { off.compress($0, into: &packed) }, .none, "level 0 compressed")
    }

    /// A blob written with igzip and one written without ISA-L inflate alike
    /// (a repository written on one node is read on the other, whichever has it).
    func testBlobsWithAndWithoutIsalInflateToTheSameBytes() throws {
        let lib = try XCTUnwrap(IsalLibrary.load(["libisal.so.2"]).library, "libisal2 is not installed: run make deps")
        var rng = TestRandom(seed: 41)
        let raw = text(&rng, count: 1 << 20)
        var withIsal: [UInt8] = [], without: [UInt8] = []
        XCTAssertEqual(raw.withUnsafeBytes { Deflater(level: .default, engine: .automatic, isal: lib).compress($0, into: &withIsal) }, .zlib)
        XCTAssertEqual(raw.withUnsafeBytes { Deflater(level: .default, engine: .automatic, isal: nil).compress($0, into: &without) }, .zlib)
        XCTAssertNotEqual(withIsal, without, "igzip and libdeflate wrote the same stream: is igzip in use at all?")
        try assertValidZlib(withIsal, raw: raw, "igzip")
        try assertValidZlib(without, raw: raw, "libdeflate")
    }

    /// `load` tries each candidate in turn: a file that is no library, a missing
    /// file and a library without igzip's functions are each named in the reason,
    /// and the first candidate that has them wins.
    func testLoadFallsThroughCandidatesAndNamesEachFailure() throws {
        let garbage = scratch + "/garbage/libisal.so.2"
        try Sys.mkdirs(Array((scratch + "/garbage").utf8), mode: 0o700)
        try Data("not an ELF file".utf8).write(to: URL(fileURLWithPath: garbage))
        let missing = scratch + "/missing/libisal.so.2"
        let none = IsalLibrary.load([garbage, missing, "libc.so.6"])
        XCTAssertNil(none.library)
        let why = none.description
        XCTAssertTrue(why.hasPrefix("libdeflate at every level (ISA-L not loaded: "), why)
        XCTAssertTrue(why.contains(garbage) && why.contains(missing) && why.contains("isal_deflate_stateless_init"), why)
        let system = try XCTUnwrap(IsalLibrary.load([garbage, "libisal.so.2"]).library, "libisal2 is not installed: run make deps")
        XCTAssertTrue(system.path.hasPrefix("/") && system.path != garbage, system.path)
    }

    /// The conda layout: `PREFIX/bin/accord` loads `PREFIX/lib/libisal.so.2`
    /// before the system's, and reports that file.
    func testTheLibraryBesideTheBinaryComesFirst() throws {
        let systemPath = try XCTUnwrap(IsalLibrary.load(["libisal.so.2"]).library?.path, "libisal2 is not installed: run make deps")
        let prefix = scratch + "/prefix"
        let exe = Array((prefix + "/bin/accord").utf8)
        try Sys.mkdirs(Array((prefix + "/bin").utf8), mode: 0o755)
        try Files.write(prefix + "/bin/accord", Array("#!/bin/sh\n".utf8), mode: 0o755)
        XCTAssertEqual(IsalLibrary.candidates(executable: exe).names, ["libisal.so.2"], "a lib/ that does not exist is a candidate")
        XCTAssertEqual(IsalLibrary.candidates(executable: nil).names, ["libisal.so.2"])
        XCTAssertEqual(IsalLibrary.candidates(executable: Array("accord".utf8)).names, ["libisal.so.2"])
        try Sys.mkdirs(Array((prefix + "/lib").utf8), mode: 0o755)
        let copy = prefix + "/lib/libisal.so.2"
        try Files.write(copy, Array(try Data(contentsOf: URL(fileURLWithPath: systemPath))), mode: 0o644)   // the file, not the symlink
        let (candidates, skipped) = IsalLibrary.candidates(executable: exe)
        XCTAssertEqual(candidates, [copy, "libisal.so.2"])
        XCTAssertEqual(skipped, [])
        let bundled = try XCTUnwrap(IsalLibrary.load(candidates).library, IsalLibrary.load(candidates).description)
        XCTAssertEqual(bundled.path, prefix + "/lib/libisal.so.2")
        var rng = TestRandom(seed: 42)
        let raw = text(&rng, count: 100_000)
        var packed: [UInt8] = []
        let deflater = Deflater(level: .default, engine: .automatic, isal: bundled)
        XCTAssertTrue(deflater.usesIgzip)
        XCTAssertEqual(raw.withUnsafeBytes { deflater.compress($0, into: &packed) }, .zlib)
        try assertValidZlib(packed, raw: raw, "igzip from the bundled copy")

        // One that others could have replaced is not loaded, and the reason says so.
        try Sys.chmod(Array(copy.utf8), mode: 0o666)
        let open = IsalLibrary.candidates(executable: exe)
        XCTAssertEqual(open.names, ["libisal.so.2"], "a world-writable library beside the binary is a candidate")
        XCTAssertEqual(open.skipped.count, 1)
        XCTAssertTrue(open.skipped.first?.hasPrefix(copy + ": not used") == true, "\(open.skipped)")
        let loaded = IsalLibrary.load(open.names, skipped: open.skipped)
        XCTAssertEqual(loaded.library?.path, systemPath, "the system's is the fallback")

        // Nor one in a lib/ others may write in (they could swap the checked file),
        // nor a symlink (its target is not what was checked).
        try Sys.chmod(Array(copy.utf8), mode: 0o644)
        XCTAssertEqual(IsalLibrary.candidates(executable: exe).names, [copy, "libisal.so.2"])
        try Sys.chmod(Array((prefix + "/lib").utf8), mode: 0o777)
        XCTAssertEqual(IsalLibrary.candidates(executable: exe).names, ["libisal.so.2"], "a library in a world-writable lib/ is a candidate")
        try Sys.chmod(Array((prefix + "/lib").utf8), mode: 0o755)
        try Sys.unlink(Array(copy.utf8))
        try FileManager.default.createSymbolicLink(atPath: copy, withDestinationPath: systemPath)
        let linked = IsalLibrary.candidates(executable: exe)
        XCTAssertEqual(linked.names, ["libisal.so.2"], "a symlink beside the binary is a candidate")
        XCTAssertTrue(linked.skipped.first?.contains("no symlinks") == true, "\(linked.skipped)")
    }
}
