// Source trees for the fault tests: random and text files, written from a
// seed, rewritten between backups, and listed so that a restore can be
// compared with what the snapshot saw.
import Foundation
import XCTest
import AccordCore
#if canImport(Glibc)
import Glibc
import AccordRuntime
#endif

// MARK: Source trees

/// A source tree of random (incompressible) and text (compressible) files,
/// a directory of small files and a symlink. Files are named so tests can
/// rewrite some of them between backups.
struct SourceTree {
    let root: String
    var randomFiles: [String] = []
    var textFiles: [String] = []

    init(root: String, rng: inout SeededRandom, randomFiles: Int, randomSize: Int, textFiles: Int, textSize: Int, smallFiles: Int = 12) throws {
        self.root = root
        try Files.mkdir(root + "/etc/conf.d")
        for i in 0..<randomFiles {
            let p = root + String(format: "/blob%02d.bin", i)
            try Files.write(p, rng.bytes(randomSize))
            self.randomFiles.append(p)
        }
        for i in 0..<textFiles {
            let p = root + String(format: "/log%02d.txt", i)
            try Files.write(p, rng.text(textSize))
            self.textFiles.append(p)
        }
        for i in 0..<smallFiles {
            try Files.write(root + "/etc/conf.d/setting\(i).conf", Array("key\(i) = \(rng.next())\n".utf8), mode: i % 3 == 0 ? 0o600 : 0o644)
        }
        try FileManager.default.createSymbolicLink(atPath: root + "/etc/current", withDestinationPath: "conf.d/setting0.conf")
    }

    /// Rewrites `count` random files (chosen by `rng`) with new content of the same size; returns them.
    @discardableResult
    func rewriteRandomFiles(_ count: Int, rng: inout SeededRandom) throws -> [String] {
        var chosen: [String] = []
        var pool = randomFiles
        for _ in 0..<min(count, pool.count) {
            let p = pool.remove(at: rng.int(0..<pool.count))
            try Files.write(p, rng.bytes(max(1, Files.size(p))))
            chosen.append(p)
        }
        return chosen
    }

    /// Rewrites `count` text files with new text of the same size; returns them.
    @discardableResult
    func rewriteTextFiles(_ count: Int, rng: inout SeededRandom) throws -> [String] {
        var chosen: [String] = []
        var pool = textFiles
        for _ in 0..<min(count, pool.count) {
            let p = pool.remove(at: rng.int(0..<pool.count))
            try Files.write(p, rng.text(max(1, Files.size(p))))
            chosen.append(p)
        }
        return chosen
    }

    /// Appends text to one text file; returns it.
    @discardableResult
    func appendText(_ bytes: Int, rng: inout SeededRandom) throws -> String {
        let p = textFiles[rng.int(0..<textFiles.count)]
        try Files.append(p, rng.text(bytes))
        return p
    }

    func listing() throws -> TreeListing { try listTree(root) }
}

// MARK: Tree listings

/// What a restore must reproduce about one path: type, permission bits,
/// size, mtime, content hash or link target. Keyed by path relative to the root.
typealias TreeListing = [String: String]

func listTree(_ root: String) throws -> TreeListing {
    var out: TreeListing = [:]
    func visit(_ rel: String) throws {
        let path = rel.isEmpty ? root : root + "/" + rel
        let st = try Sys.lstat(path)
        let meta = "\(String(st.permissions, radix: 8)) mtime \(st.mtimeSec).\(st.mtimeNsec)"
        if st.isDirectory {
            out[rel] = "dir \(meta)"
            for name in try Sys.listDirectory(path) { try visit(rel.isEmpty ? name : rel + "/" + name) }
        } else if st.isSymlink {
            out[rel] = "symlink -> \(try Sys.readlink(Array(path.utf8)).displayPath)"
        } else if st.isRegular {
            out[rel] = "file \(meta) size \(st.size) sha \(SHA256Hasher.hash(try Files.read(path)).short)"
        } else {
            out[rel] = "other"
        }
    }
    try visit("")
    return out
}

/// Fails once per path that differs.
func assertSameTree(_ expected: TreeListing, _ actual: TreeListing, _ what: String,
                    file: StaticString = #filePath, line: UInt = #line) {
    var problems: [String] = []
    for key in Set(expected.keys).union(actual.keys).sorted() {
        let name = key.isEmpty ? "(root)" : key
        switch (expected[key], actual[key]) {
        case let (e?, a?) where e != a: problems.append("\(name): expected \(e), restored \(a)")
        case (_?, nil): problems.append("\(name): missing from the restored tree")
        case (nil, _?): problems.append("\(name): restored but not in the snapshot's source")
        default: break
        }
    }
    if !problems.isEmpty {
        XCTFail("\(what): \(problems.count) path(s) differ:\n  " + problems.prefix(20).joined(separator: "\n  "), file: file, line: line)
    }
}
