// An `accord serve` child spoken to frame by frame (as a hostile client would),
// for the serve-limit and pinning tests.
import Foundation
import XCTest
import AccordCore
import AccordSync
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

final class ServeSession {
    let process = Process()
    let toServe = Pipe()
    let fromServe = Pipe()
    let connection: FrameConnection
    let logPath: String

    /// Starts `accord serve ARGS` (under `prlimit --as` when given) with extra environment.
    init(_ args: [String], logPath: String, environment: [String: String] = [:], addressSpaceLimit: Int? = nil) throws {
        self.logPath = logPath
        if let limit = addressSpaceLimit {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            process.arguments = ["--as=\(limit)", "--", AccordBinary.path, "serve"] + args
        } else {
            process.executableURL = URL(fileURLWithPath: AccordBinary.path)
            process.arguments = ["serve"] + args
        }
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "SSH_ORIGINAL_COMMAND")
        env.removeValue(forKey: "ACCORD_SETTINGS")
        for (k, v) in environment { env[k] = v }
        process.environment = env
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardInput = toServe
        process.standardOutput = fromServe
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        signal(SIGPIPE, SIG_IGN)
        try process.run()
        try? toServe.fileHandleForReading.close()
        try? fromServe.fileHandleForWriting.close()
        connection = FrameConnection(input: fromServe.fileHandleForReading.fileDescriptor,
                                     output: toServe.fileHandleForWriting.fileDescriptor, peer: "accord serve")
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func hello(_ config: [UInt8], flags: UInt16 = 0) throws -> Frame? {
        try connection.send(.hello(version: Frame.protocolVersion, flags: flags, config: config))
        return try connection.receive(timeout: 60)
    }

    /// Writes raw bytes to serve's stdin (a frame header that lies, say).
    func writeRaw(_ bytes: [UInt8]) throws {
        try connection.flush()
        try toServe.fileHandleForWriting.write(contentsOf: Data(bytes))
    }

    /// The server's exit status, closing its input first; nil if it is still running after `timeout` s.
    func exit(timeout: Double = 20, closeInput: Bool = true) -> (status: Int32, signaled: Bool)? {
        if closeInput { try? toServe.fileHandleForWriting.close() }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(5000) }
        if process.isRunning { return nil }
        return (process.terminationStatus, process.terminationReason == .uncaughtSignal)
    }

    func kill() {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }
}

func errorMessage(_ f: Frame?) -> String? {
    if case .error(_, let m)? = f { return m }
    return nil
}

extension SyncTestCase {
    /// A source repository with one snapshot: its config bytes, the snapshot's JSON and id.
    func sourceWithOneSnapshot(seed: UInt64 = 21) throws -> (config: [UInt8], snapshot: [UInt8], id: String) {
        try makeTree(source, seed: seed, randomFiles: 1, randomSize: 50_000)
        let snap = try backupSource()
        return (try readFile(sourceRepo + "/config"), try readFile(sourceRepo + "/snapshots/" + snap.id), snap.id)
    }

    /// The snapshot JSON with its `time` replaced (the id changes with it).
    func redated(_ json: [UInt8], to time: String, manifest: [String]? = nil) throws -> [UInt8] {
        var o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
        o["time"] = time
        if let m = manifest { o["manifest"] = m }
        return Array(try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])) + [0x0a]
    }

    /// A settings file in its own root-owned 0755 directory, mode 0644; returns its path.
    func writeSettings(_ text: String, name: String = "accord.yaml") throws -> String {
        let dir = scratch.sub("etc-accord-" + hexString(Sys.randomBytes(3)))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        let path = dir + "/" + name
        try writeFile(path, Array(text.utf8), mode: 0o644)
        return path
    }

    /// Every file of a repository except locks and tmp, with its bytes.
    func repositoryFiles(_ repo: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for f in regularFiles(under: repo) {
            let rel = String(f.dropFirst(repo.count + 1))
            if rel.hasPrefix("locks/") || rel.hasPrefix("tmp/") { continue }
            out[rel] = try readFile(f)
        }
        return out
    }
}
