// A real S3 server on loopback for the S3 tests (scripts/testenv/s3-start.sh:
// `rclone serve s3`, which checks SigV4 signatures), one per test class.
import AccordCore
import AccordRuntime
import AccordTestSupport
@_spi(Testing) import AccordS3
import Foundation
import XCTest

struct S3TestServer {
    var directory: String
    var env: [String: String]
    var port: String { env["S3_PORT"]! }
    var bucket: String { env["S3_BUCKET"]! }
    var storage: String { env["S3_STORAGE"]! }
    var caFile: String? { env["S3_CA_FILE"] }
    var scheme: String { env["S3_ENDPOINT"]?.hasPrefix("https:") == true ? "https" : "http" }
    static let scripts = AccordBinary.packageRoot + "/scripts/testenv"

    /// `tls`: https with a certificate from a CA of its own (`caFile`), not trusted by the system.
    /// `virtualHosted`: the server answers `BUCKET.localhost:PORT/KEY` only (`S3_VHOST=1`).
    static func start(tls: Bool = false, virtualHosted: Bool = false) throws -> S3TestServer {
        guard getuid() == 0 else { throw S3StartError(description: "s3-start.sh must run as root (uid \(getuid()))") }
        let dir = "/tmp/accord-s3test-" + hexString(Sys.randomBytes(5))
        let (status, output) = run("s3-start.sh", dir, (tls ? ["S3_TLS": "1"] : [:]).merging(virtualHosted ? ["S3_VHOST": "1"] : [:]) { $1 })
        guard status == 0 else {
            run("s3-stop.sh", dir)
            try? FileManager.default.removeItem(atPath: dir)
            throw S3StartError(description: "s3-start.sh exited with \(status): \(output.suffix(1500))")
        }
        let env = parseEnvLines((try? String(contentsOfFile: dir + "/env", encoding: .utf8)) ?? "")
        for k in ["S3_PORT", "S3_BUCKET", "S3_STORAGE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] where env[k] == nil {
            throw S3StartError(description: "\(dir)/env lacks \(k)")
        }
        return S3TestServer(directory: dir, env: env)
    }

    /// Stops the server, keeping its objects, keys and port (`restart` serves them again).
    func stopServing() { Self.run("s3-stop.sh", directory) }
    @discardableResult func restart() -> Int32 { Self.run("s3-start.sh", directory).0 }

    func stop() {
        stopServing()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// `s3:http://127.0.0.1:PORT/BUCKET/PREFIX`: loopback only, always.
    func location(bucket: String? = nil, prefix: String) throws -> S3Location {
        try S3Location(parsing: "s3:\(scheme)://127.0.0.1:\(port)/\(bucket ?? self.bucket)/\(prefix)")
    }

    /// The credentials and region of the server, and nothing else of the test's environment
    /// (no AWS_PROFILE or HOME credentials of the machine leak in).
    var clientEnvironment: [String: String] {
        ["AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"]!, "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"]!, "AWS_REGION": "us-east-1"]
    }

    @discardableResult
    static func run(_ script: String, _ dir: String, _ extra: [String: String] = [:]) -> (Int32, String) {
        do {
            let env = ProcessInfo.processInfo.environment.merging(extra) { $1 }
            let r = try runProcess("/bin/bash", [scripts + "/" + script, dir], environment: env, timeout: 300)
            return (r.signaled ? -1 : r.status, r.output)
        } catch { return (-1, "cannot run \(script): \(error)") }
    }
}

struct S3StartError: Error, CustomStringConvertible { var description: String }

/// The server for the whole class, started in `class setUp`; tests are skipped
/// (with the reason) only when it cannot start at all.
enum S3Servers {
    // nonisolated(unsafe): XCTest runs a class's setUp, tests and tearDown one after another
    // on one thread, so this is never touched by two threads at once.
    nonisolated(unsafe) static var running: [ObjectIdentifier: Result<S3TestServer, Error>] = [:]

    static func start(_ c: AnyClass, tls: Bool = false, virtualHosted: Bool = false) {
        running[ObjectIdentifier(c)] = Result { try S3TestServer.start(tls: tls, virtualHosted: virtualHosted) }
    }
    static func stop(_ c: AnyClass) { if case .success(let s)? = running.removeValue(forKey: ObjectIdentifier(c)) { s.stop() } }
    static func server(_ c: AnyClass) throws -> S3TestServer {
        switch running[ObjectIdentifier(c)] {
        case .success(let s)?: return s
        case .failure(let e)?: throw XCTSkip("the S3 test server could not start: \(e)")
        case nil: throw XCTSkip("the S3 test server was not started for \(c)")
        }
    }
}

/// A fresh prefix per backend, so tests of one class never see each other's objects.
func freshPrefix() -> String { "t-" + hexString(Sys.randomBytes(6)) }
