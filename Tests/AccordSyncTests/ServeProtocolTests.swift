import Foundation
import XCTest
import AccordCore
import AccordSync

/// `accord serve` spoken to frame by frame, as a client that misbehaves
/// would: the server must answer with an `error` frame, store nothing it
/// cannot vouch for, and not trust lengths it is sent.
final class ServeProtocolTests: SyncTestCase {
    var serve: Process!
    var toServe: Pipe!
    var fromServe: Pipe!
    var connection: FrameConnection!
    var serveLog: String { scratch.sub("serve.log") }
    var dest: String { scratch.sub("dest") }

    /// Starts `accord serve --repo dest`, optionally under an address-space limit (`prlimit --as`).
    func startServe(addressSpaceLimit: Int? = nil) throws {
        serve = Process()
        toServe = Pipe(); fromServe = Pipe()
        if let limit = addressSpaceLimit {
            serve.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            serve.arguments = ["--as=\(limit)", "--", AccordBinary.path, "serve", "--repo", dest]
        } else {
            serve.executableURL = URL(fileURLWithPath: AccordBinary.path)
            serve.arguments = ["serve", "--repo", dest]
        }
        _ = FileManager.default.createFile(atPath: serveLog, contents: nil)
        serve.standardInput = toServe
        serve.standardOutput = fromServe
        serve.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: serveLog))
        signal(SIGPIPE, SIG_IGN)  // a server that died must be an EPIPE error here, not the end of the test process
        try serve.run()
        // Keep only our ends, so that the server's exit reads as end of input.
        try? toServe.fileHandleForReading.close()
        try? fromServe.fileHandleForWriting.close()
        connection = FrameConnection(input: fromServe.fileHandleForReading.fileDescriptor,
                                     output: toServe.fileHandleForWriting.fileDescriptor, peer: "accord serve")
    }

    override func tearDown() {
        if let p = serve, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        super.tearDown()
    }

    /// The server's exit status, waiting at most `timeout` seconds.
    func serveExit(timeout: Double = 10) -> (status: Int32, signaled: Bool)? {
        try? toServe.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(timeout)
        while serve.isRunning && Date() < deadline { usleep(5000) }
        if serve.isRunning { return nil }
        return (serve.terminationStatus, serve.terminationReason == .uncaughtSignal)
    }

    var log: String { (try? String(contentsOfFile: serveLog, encoding: .utf8)) ?? "" }

    /// A source repository with one snapshot; returns its config bytes and the snapshot JSON.
    func sourceWithSnapshot() throws -> (config: [UInt8], snapshot: [UInt8]) {
        try makeTree(source, seed: 8, randomFiles: 1, randomSize: 100_000)
        let snap = try backupSource()
        return (try readFile(sourceRepo + "/config"), try readFile(sourceRepo + "/snapshots/" + snap.id))
    }

    func hello(_ config: [UInt8], version: UInt16 = Frame.protocolVersion) throws -> Frame? {
        try connection.send(.hello(version: version, flags: 0, config: config))
        return try connection.receive()
    }

    func errorMessage(_ f: Frame?) -> String? {
        if case .error(_, let m)? = f { return m }
        return nil
    }

    func testServeRefusesSnapshotWhoseBlobsHaveNotArrived() throws {
        let src = try sourceWithSnapshot()
        try startServe()
        guard case .helloOK? = try hello(src.config) else { return XCTFail("no helloOK; serve log:\n\(log)") }
        try connection.send(.snapshot(src.snapshot))
        let reply = try connection.receive()
        let m = try XCTUnwrap(errorMessage(reply), "a snapshot without its blobs was answered with \(String(describing: reply))")
        XCTAssert(m.contains("was not stored") && m.contains("has not arrived"), m)
        XCTAssertEqual(serveExit()?.status, 1, log)
        XCTAssertEqual(snapshotFiles(of: dest), [])
        try accordOK(["check", "-d", dest])
    }

    func testServeRefusesOtherProtocolVersionSayingSo() throws {
        let src = try sourceWithSnapshot()
        try startServe()
        let m = try XCTUnwrap(errorMessage(try hello(src.config, version: 99)))
        XCTAssert(m.contains("version 99") && m.contains("same accord"), m)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dest), "a repository was created for a client it cannot talk to")
    }

    /// A hello whose config no reader accepts (packSize 100) is refused and
    /// writes nothing: the destination must not become unopenable.
    func testServeRefusesAnInvalidConfigAndCreatesNothing() throws {
        let src = try sourceWithSnapshot()
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(src.config)) as? [String: Any])
        json["packSize"] = 100
        try startServe()
        let m = try XCTUnwrap(errorMessage(try hello(Array(try JSONSerialization.data(withJSONObject: json)))), "a bad config was accepted")
        XCTAssert(m.contains("packSize 100"), m)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dest + "/config"), "a config no reader accepts was written")
    }

    /// A second hello is an error: it must not open the repository again and
    /// leave the first session's lock behind.
    func testServeRefusesASecondHelloAndLeavesNoLock() throws {
        let src = try sourceWithSnapshot()
        try startServe()
        guard case .helloOK? = try hello(src.config) else { return XCTFail("no helloOK; serve log:\n\(log)") }
        let m = try XCTUnwrap(errorMessage(try hello(src.config)), "a second hello was accepted")
        XCTAssert(m.contains("hello was sent twice"), m)
        XCTAssertEqual(serveExit()?.status, 1, log)
        let locks = (try? FileManager.default.contentsOfDirectory(atPath: dest + "/locks")) ?? []
        XCTAssertEqual(locks, [], "serve left a lock behind")
    }

    func testServeAnswersRequestBeforeHelloWithError() throws {
        try startServe()
        try connection.send(.listSnapshots)
        let m = try XCTUnwrap(errorMessage(try connection.receive()))
        XCTAssert(m.contains("hello"), m)
        XCTAssertEqual(serveExit()?.status, 1, log)
    }

    func testServeRejectsBlobWhoseRawLengthIsAbsurdWithoutAllocatingIt() throws {
        // A zlib blob claiming 4 GiB - 16 raw bytes in a 7-byte frame payload.
        // Under a 2 GiB address-space limit, allocating the raw length crashes
        // the server; it must answer with an error instead.
        let src = try sourceWithSnapshot()
        try startServe(addressSpaceLimit: 2 << 30)
        guard case .helloOK? = try hello(src.config) else { return XCTFail("no helloOK under the limit; serve log:\n\(log)") }
        try connection.send(.have([BlobID(hashing: "x").w0]))
        guard case .missing? = try connection.receive() else { return XCTFail("no missing reply; serve log:\n\(log)") }
        try connection.send(.blobs([SyncBlob(index: 0, type: .data, compression: .zlib, rawLength: 0xffff_fff0,
                                             stored: [0x78, 0x9c, 0x4b, 0x04, 0x00, 0x00, 0x79])]))
        try connection.send(.flush)
        let started = Date()
        let reply = try? connection.receive()
        let exit = serveExit(timeout: 20)
        XCTAssertLessThan(Date().timeIntervalSince(started), 20)
        XCTAssertNotNil(errorMessage(reply), "the server answered \(String(describing: reply)), exit \(String(describing: exit)); log:\n\(log)")
        XCTAssertEqual(exit?.signaled, false, "the server crashed on a blob claiming a 4 GiB raw length; log:\n\(log)")
    }

    func testServeRefusesADeltaBlobWhoseBaseItDoesNotHold() throws {
        // A well-formed delta (copy the whole base) on a base the destination never got.
        let src = try sourceWithSnapshot()
        try startServe()
        guard case .helloOK? = try hello(src.config) else { return XCTFail("no helloOK; serve log:\n\(log)") }
        let base = Array("a base the destination never received\n".utf8)
        try connection.send(.have([BlobID(hashing: base).w0]))
        guard case .missing? = try connection.receive() else { return XCTFail("no missing reply; serve log:\n\(log)") }
        let program: [UInt8] = [UInt8(base.count << 1), 0x00]
        try connection.send(.blobs([SyncBlob(index: 0, type: .data, compression: .delta, rawLength: UInt32(base.count),
                                             stored: BlobID(hashing: base).bytes + program)]))
        try connection.send(.flush)
        let reply = try? connection.receive()
        let message = try XCTUnwrap(errorMessage(reply), "the server accepted a delta without its base: \(String(describing: reply)); log:\n\(log)")
        XCTAssertTrue(message.contains("is stored as a delta on blob"), message)
        XCTAssertEqual(serveExit()?.signaled, false)
        XCTAssertEqual(packFiles(of: dest), [], "the server stored a pack holding the unverifiable delta")
    }
}
