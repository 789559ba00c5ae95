// Source trees for the command-line and fault tests: random and text files,
// written from a seed, rewritten between backups, and listed so that a
// restore can be compared with what the snapshot saw.
import Foundation
import XCTest
import AccordCore
#if canImport(Glibc)
import Glibc
#endif

// MARK: Source trees

/// A source tree of random (incompressible) and text (compressible) files,
/// a directory of small files and a symlink. Files are named so tests can
/// rewrite some of them between backups.
public struct SourceTree {
    public let root: String
    public var randomFiles: [String] = []
    public var textFiles: [String] = []

    public init(root: String, rng: inout SeededRandom, randomFiles: Int, randomSize: Int, textFiles: Int, textSize: Int, smallFiles: Int = 12) throws {
        self.root = root
        try Files.mkdir(root + "/etc/conf.d")
        for i in 0..<randomFiles {
            let p = root + String(format: "/blob%02d.bin", i)
            try Files.write(p, rng.bytes(randomSize))
            self.randomFiles.append(p)
        }
        for i in 0..<textFiles {
            let p = root + String(format: "/log%02d.txt", i)
            try Files.write(p, rng.letterText(textSize))
            self.textFiles.append(p)
        }
        for i in 0..<smallFiles {
            try Files.write(root + "/etc/conf.d/setting\(i).conf", Array("key\(i) = \(rng.next())\n".utf8), mode: i % 3 == 0 ? 0o600 : 0o644)
        }
        try FileManager.default.createSymbolicLink(atPath: root + "/etc/current", withDestinationPath: "conf.d/setting0.conf")
    }

    /// Rewrites `count` random files (chosen by `rng`) with new content of the same size; returns them.
    @discardableResult
    public func rewriteRandomFiles(_ count: Int, rng: inout SeededRandom) throws -> [String] {
        try rewrite(count, of: randomFiles, rng: &rng) { rng, n in rng.bytes(n) }
    }

    /// Rewrites `count` text files with new text of the same size; returns them.
    @discardableResult
    public func rewriteTextFiles(_ count: Int, rng: inout SeededRandom) throws -> [String] {
        try rewrite(count, of: textFiles, rng: &rng) { rng, n in rng.letterText(n) }
    }

    /// Rewrites `count` files drawn from `pool` with `content` of each one's size.
    private func rewrite(_ count: Int, of files: [String], rng: inout SeededRandom,
                         content: (inout SeededRandom, Int) -> [UInt8]) throws -> [String] {
        var chosen: [String] = []
        var pool = files
        for _ in 0..<min(count, pool.count) {
            let p = pool.remove(at: rng.int(0..<pool.count))
            try Files.write(p, content(&rng, max(1, Files.size(p))))
            chosen.append(p)
        }
        return chosen
    }

    /// Appends text to one text file; returns it.
    @discardableResult
    public func appendText(_ bytes: Int, rng: inout SeededRandom) throws -> String {
        let p = textFiles[rng.int(0..<textFiles.count)]
        try Files.append(p, rng.letterText(bytes))
        return p
    }

    /// What a restore of the tree must reproduce, as the fault suite compares it.
    public func listing() throws -> TreeListing { try listTree(root, .modesTimesAndContent) }
}
