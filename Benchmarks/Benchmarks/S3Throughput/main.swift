// PUT and GET throughput of S3Backend with N parallel transfers against the
// loopback S3 test server (scripts/testenv/s3-start.sh, `rclone serve s3`):
//
//     D=$(mktemp -d) && scripts/testenv/s3-start.sh $D/s3
//     cd Benchmarks && swift build -c release --product S3Throughput && .build/release/S3Throughput $D/s3/env
//     scripts/testenv/s3-stop.sh $D/s3
//
// Environment: S3_BENCH_MIB (object size, 16), S3_BENCH_OBJECTS (per run, 32),
// S3_BENCH_PARALLEL (comma-separated thread counts, "1,4,8").
// Every object read back is checked against its content name (S3Backend does).
import AccordCore
import AccordS3
import Foundation

func env(_ k: String, _ d: String) -> String { ProcessInfo.processInfo.environment[k] ?? d }
let mib = Int(env("S3_BENCH_MIB", "16"))!, count = Int(env("S3_BENCH_OBJECTS", "32"))!
let parallel = env("S3_BENCH_PARALLEL", "1,4,8").split(separator: ",").compactMap { Int($0) }
setvbuf(stdout, nil, _IOLBF, 0)

// The server's env file (s3-start.sh writes DIR/env): endpoint port, bucket, keys.
guard CommandLine.arguments.count == 2, let text = try? String(contentsOfFile: CommandLine.arguments[1], encoding: .utf8) else {
    print("usage: S3Throughput DIR/env   (after scripts/testenv/s3-start.sh DIR)"); exit(2)
}
var serverEnv: [String: String] = [:]
for line in text.split(separator: "\n") {
    if let eq = line.firstIndex(of: "=") { serverEnv[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
}

// Distinct objects (content-named, xorshift bytes: incompressible), made once.
let objects: [[UInt8]] = (0..<count).map { i in
    var b = [UInt8](repeating: 0, count: mib << 20)
    var x = UInt64(i) &* 0x9E3779B97F4A7C15 | 1
    for j in stride(from: 0, to: b.count, by: 8) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; withUnsafeBytes(of: x) { for k in 0..<8 { b[j + k] = $0[k] } } }
    return b
}
let names = objects.map { SHA256Hasher.hash($0).hex }

func timed(_ threads: Int, _ body: @Sendable @escaping (Int) throws -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    let next = NSLock(); nonisolated(unsafe) var i = 0
    DispatchQueue.concurrentPerform(iterations: threads) { _ in
        while true {
            let n: Int = next.withLock { defer { i += 1 }; return i }
            if n >= count { return }
            do { try body(n) } catch { fatalError("\(error)") }
        }
    }
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

print("S3Backend against rclone serve s3 on loopback: \(count) objects of \(mib) MiB per run")
print("threads   PUT MiB/s   GET MiB/s   ranged GET (1 MiB) MiB/s   requests")
for threads in parallel {
    let location = try S3Location(parsing: "s3:http://127.0.0.1:\(serverEnv["S3_PORT"]!)/\(serverEnv["S3_BUCKET"]!)/bench-\(threads)")
    let b = try S3Backend(location, environment: serverEnv)
    let total = Double(count * mib)
    let put = timed(threads) { n in try objects[n].withUnsafeBytes { try b.write(.pack, names[n], $0) } }
    let get = timed(threads) { n in _ = try b.read(.pack, names[n]) }
    let ranged = timed(threads) { n in
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        for r in 0..<mib { _ = try buf.withUnsafeMutableBytes { try b.read(.pack, names[n], at: Int64(r) << 20, into: $0) } }
    }
    print(String(format: "%7d   %9.0f   %9.0f   %24.0f   %8d", threads, total / put, total / get, total / ranged, b.statistics.requests))
}
