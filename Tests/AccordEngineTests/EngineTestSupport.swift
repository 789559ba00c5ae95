// What only the engine suite needs: its text flavour and kernel random
// bytes. The test case, scratch directories, tree builder and comparer and
// the runner of the built binary are in AccordTestSupport.
import Foundation
import AccordRuntime
@_exported import AccordTestSupport
import AccordCore

// MARK: Deterministic data

extension SeededRandom {
    /// Compressible, text-like bytes: words from a small vocabulary.
    mutating func text(_ n: Int) -> [UInt8] {
        let words: [[UInt8]] = ["backup", "restore", "chunk", "pack", "index", "manifest", "snapshot", "anaconda",
                                "storage", "postgres", "the", "a", "of", "to", "and", "deduplicated", "\n"].map { Array(($0 + " ").utf8) }
        var out = [UInt8](repeating: 0, count: n + 16)
        var i = 0
        out.withUnsafeMutableBufferPointer { o in
            while i < n {
                var r = next()
                for _ in 0..<8 where i < n {
                    for b in words[Int(r & 0xf) % words.count] { o[i] = b; i &+= 1 }
                    r >>= 8
                }
            }
        }
        return Array(out.prefix(n))
    }
}

/// Fast, non-reproducible bytes from the kernel (for bulk data whose exact value never matters).
func kernelRandomBytes(_ n: Int) -> [UInt8] { Sys.randomBytes(n) }
