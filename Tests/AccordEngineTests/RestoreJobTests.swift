import Foundation
import XCTest
import AccordCore
@testable import AccordEngine
import AccordTestSupport

/// How a restore shares a pack's blobs among its threads (`RestoreFileWriter.makeJobs`).
final class RestoreJobTests: AccordTestCase {
    /// Twenty files of one 3 MiB content, then small ones: the shared
    /// chunks' references interleave the twenty files over ~60 MiB of
    /// writes, far more than one job's window. Jobs are cut, but never
    /// inside a file whose blobs all lie in one pack: the thread that makes
    /// such a file also writes and finishes it.
    func testJobsNeverSplitAFileMadeByOneThread() throws {
        var rng = SeededRandom(seed: 0x10B5)
        let root = Array(scratch.sub("src").utf8)
        try TreeBuilder.mkdir(root)
        let shared = rng.bytes(3 << 20)
        for i in 0..<20 { try TreeBuilder.write(root.appending("copy\(i).bin"), shared) }
        for i in 0..<200 { try TreeBuilder.write(root.appending("small\(i).txt"), rng.text(3000)) }
        _ = try backup(root.string)

        let repository = try openRepository()
        let writer = RestoreFileWriter(repository: repository, threads: 2, progress: nil)
        for e in try manifestEntries(repository) where e.kind == .file { writer.add(e, at: e.path) }
        let jobs = writer.makeJobs()
        XCTAssertGreaterThan(jobs.count, writer.byPack.filter { !$0.isEmpty }.count,
                             "test setup: some pack should be cut into several jobs")
        var jobOfSoloFile: [Int32: Int] = [:]
        var refsSeen = 0
        for (j, job) in jobs.enumerated() {
            for r in writer.byPack[job.pack][job.refs] {
                refsSeen += 1
                guard writer.files[Int(r.file)].solo else { continue }
                if let other = jobOfSoloFile[r.file], other != j {
                    XCTFail("\(writer.files[Int(r.file)].path.string) is written by jobs \(other) and \(j)")
                }
                jobOfSoloFile[r.file] = j
            }
        }
        XCTAssertEqual(refsSeen, writer.byPack.reduce(0) { $0 + $1.count }, "jobs must cover every reference once")
        XCTAssertGreaterThanOrEqual(jobOfSoloFile.count, 220, "the copies and small files should be solo files")
    }

    /// Two large files, each spread over several packs, and small files: in
    /// pack order each large file's jobs come one after another, so the two
    /// threads would write the same file at once (and wait on its inode lock).
    /// The jobs are reordered so that neighbours write different files, and
    /// still cover every reference once.
    func testNeighbouringJobsWriteDifferentMultiPackFiles() throws {
        var rng = SeededRandom(seed: 0x10B6)
        let root = Array(scratch.sub("src").utf8)
        try TreeBuilder.mkdir(root)
        try TreeBuilder.write(root.appending("a.bin"), rng.bytes(40 << 20))
        try TreeBuilder.write(root.appending("b.bin"), rng.bytes(40 << 20))
        for i in 0..<300 { try TreeBuilder.write(root.appending("small\(i).txt"), rng.bytes(20_000)) }
        _ = try backup(root.string, extra: ["--threads", "1"])   // one reader: each file's chunks lie together

        let repository = try openRepository()
        let writer = RestoreFileWriter(repository: repository, threads: 2, progress: nil)
        for e in try manifestEntries(repository) where e.kind == .file { writer.add(e, at: e.path) }
        let jobs = writer.makeJobs()
        let shared = jobs.map { writer.mainSharedFile($0) }
        // The fewest neighbouring pairs any order can have: the largest group
        // of one file's jobs, less one, beyond all the other jobs.
        let counts = Dictionary(grouping: shared.compactMap { $0 }, by: { $0 }).mapValues(\.count)
        let largest = counts.values.max() ?? 0
        let unavoidable = max(0, largest - 1 - (jobs.count - largest))
        let names = Set(shared.compactMap { $0 }.map { writer.files[Int($0)].path.string })
        XCTAssertEqual(names.count, 2, "test setup: both large files should span packs: \(names)")
        XCTAssertGreaterThan(shared.filter { $0 != nil }.count, 10, "test setup: the large files should make many jobs")
        var samePairs = 0
        for (a, b) in zip(shared, shared.dropFirst()) where a != nil && a == b { samePairs += 1 }
        XCTAssertEqual(samePairs, unavoidable, "neighbouring jobs write the same large file \(samePairs) times: \(shared)")
        var seen = Set<String>()
        for job in jobs {
            for (k, r) in writer.byPack[job.pack][job.refs].enumerated() {
                XCTAssertTrue(seen.insert("\(job.pack)/\(job.refs.lowerBound + k)").inserted, "a reference is in two jobs")
                _ = r
            }
        }
        XCTAssertEqual(seen.count, writer.byPack.reduce(0) { $0 + $1.count }, "jobs must cover every reference once")
    }
}
