// What only the fault-injection suite needs: its text flavour and the
// processes of a running `accord`. The test case, scratch directories,
// files, source trees and the runner are in AccordTestSupport.
import Foundation
import XCTest
import AccordCore
@_exported import AccordTestSupport
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

extension SeededRandom {
    /// The fault suite's text: `letterText` (about 5 bits of entropy a byte).
    mutating func text(_ n: Int) -> [UInt8] { letterText(n) }
}

/// The pid of `parent`'s first child process, from /proc (for killing `accord serve`).
func childProcesses(of parent: Int32) -> [Int32] {
    var out: [Int32] = []
    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = Int32(name), let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8) else { continue }
        // pid (comm) state ppid …: comm may hold spaces, so parse after the last ')'.
        guard let close = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        if fields.count > 2, Int32(fields[1]) == parent { out.append(pid) }
    }
    return out
}

func sleepSeconds(_ s: Double) { if s > 0 { usleep(UInt32(s * 1_000_000)) } }
