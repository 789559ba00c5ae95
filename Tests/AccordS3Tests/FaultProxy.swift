// A small fault-injecting HTTP proxy on loopback, in front of the real S3
// test server: requests are forwarded unchanged (one per connection), except
// those the test scripted, which get a canned answer or a reset connection.
// It only ever connects to 127.0.0.1.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `@unchecked Sendable`: `queued`, `always`, `counts`, `holds`, `refusals` and the logs are guarded by `lock`;
/// the sockets are set once in `init` (closed by `stop`).
final class FaultProxy: @unchecked Sendable {
    enum Fault {
        /// An HTTP answer: status, extra header lines, body.
        case answer(Int, headers: [String], body: String)
        /// The connection closed with a reset after the request was read.
        case reset
        /// These bytes as the whole answer (status line, headers as given, body), then the connection closed:
        /// for answers `.answer` cannot spell (a HEAD's Content-Length, a body shorter than it says).
        case raw(String)
    }

    let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let lock = NSLock()
    private var queued: [Fault] = []
    private var always: Fault?
    private var byMethod: [String: Fault] = [:]
    private var counts = (requests: 0, faults: 0)
    /// Requests held back (`hold`), and every request seen and answered, as "METHOD path".
    private var holds: [Hold] = []
    private var arrivedLog: [String] = []
    private var answeredLog: [String] = []
    /// Requests that `matches`, from its `from`-th (from 1), get `fault`.
    private var refusals: [(matches: @Sendable (String) -> Bool, from: Int, fault: Fault, seen: Int)] = []

    /// The `occurrence`-th request (from 1) whose "METHOD path" `matches` is
    /// forwarded only once `until` holds (polled every 5 ms, for at most 60 s).
    struct Hold {
        let matches: @Sendable (String) -> Bool
        let occurrence: Int
        let until: @Sendable () -> Bool
        var seen = 0
    }

    init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw S3StartError(description: "fault proxy: socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = Self.loopback(port: 0)
        guard withUnsafePointer(to: &addr, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }) == 0,
              listen(fd, 64) == 0 else { close(fd); throw S3StartError(description: "fault proxy: bind/listen: errno \(errno)") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        listener = fd
        port = Int(UInt16(bigEndian: addr.sin_port))
        let t = Thread { [self] in acceptLoop() }
        t.start()
    }

    /// The next `n` requests get `fault`; later ones are forwarded.
    func inject(_ fault: Fault, times n: Int) { lock.withLock { queued += Array(repeating: fault, count: n) } }
    /// Every request gets `fault` (nil: forward again).
    func injectAlways(_ fault: Fault?) { lock.withLock { always = fault } }
    /// Every request of `method` (e.g. "DELETE") gets `fault` (nil: forward again): a key without that right.
    func inject(_ fault: Fault?, method: String) { lock.withLock { byMethod[method] = fault } }
    var statistics: (requests: Int, faults: Int) { lock.withLock { counts } }
    /// Holds back a forwarded request (see `Hold`).
    func hold(occurrence: Int, of matches: @escaping @Sendable (String) -> Bool, until: @escaping @Sendable () -> Bool) {
        lock.withLock { holds.append(Hold(matches: matches, occurrence: occurrence, until: until)) }
    }
    /// From the `from`-th request whose "METHOD path" `matches` on, each gets `fault`.
    func refuse(from: Int, of matches: @escaping @Sendable (String) -> Bool, with fault: Fault) {
        lock.withLock { refusals.append((matches, from, fault, 0)) }
    }
    /// How many requests ("METHOD path") that `matches` have arrived, or have been answered.
    func arrived(_ matches: (String) -> Bool) -> Int { lock.withLock { arrivedLog.filter(matches).count } }
    func answered(_ matches: (String) -> Bool) -> Int { lock.withLock { answeredLog.filter(matches).count } }

    func stop() { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        return a
    }

    private func acceptLoop() {
        while true {
            let c = accept(listener, nil, nil)
            if c < 0 { if errno == EINTR { continue }; return }
            let t = Thread { [self] in serve(c); close(c) }
            t.start()
        }
    }

    private func serve(_ c: Int32) {
        guard let request = readRequest(c) else { return }
        let line = String(decoding: request.prefix { $0 != 13 }, as: UTF8.self).split(separator: " ")
        let what = line.count >= 2 ? "\(line[0]) \(line[1].split(separator: "?", omittingEmptySubsequences: false)[0])" : ""
        let fault: Fault? = lock.withLock {
            counts.requests += 1
            var refused: Fault?
            for i in refusals.indices where refusals[i].matches(what) {
                refusals[i].seen += 1
                if refusals[i].seen >= refusals[i].from { refused = refusals[i].fault }
            }
            let f = (line.first.flatMap { byMethod[String($0)] }) ?? refused ?? (queued.isEmpty ? always : queued.removeFirst())
            if f != nil { counts.faults += 1 }
            return f
        }
        switch fault {
        case .answer(let status, let headers, let body)?:
            let text = "HTTP/1.1 \(status) Fault\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n"
                + headers.map { $0 + "\r\n" }.joined() + "\r\n" + body
            writeAll(c, Array(text.utf8))
        case .raw(let text)?:
            writeAll(c, Array(text.utf8))
        case .reset?:
            var l = linger(l_onoff: 1, l_linger: 0)
            setsockopt(c, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        case nil:
            let waits: [@Sendable () -> Bool] = lock.withLock {
                arrivedLog.append(what)
                var out: [@Sendable () -> Bool] = []
                for i in holds.indices where holds[i].matches(what) {
                    holds[i].seen += 1
                    if holds[i].seen == holds[i].occurrence { out.append(holds[i].until) }
                }
                return out
            }
            let deadline = Date().addingTimeInterval(60)
            for until in waits { while !until() && Date() < deadline { usleep(5_000) } }
            forward(request, to: c)
            lock.withLock { answeredLog.append(what) }
        }
    }

    /// The request's bytes (head with `Connection: close` added, and body), or nil on EOF.
    private func readRequest(_ c: Int32) -> [UInt8]? {
        var buf: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 65536)
        let sep: [UInt8] = [13, 10, 13, 10]
        var headEnd: Int?
        while headEnd == nil {
            let n = read(c, &chunk, chunk.count)
            if n <= 0 { return nil }
            buf += chunk[..<n]
            if buf.count > 1 << 20 { return nil }
            headEnd = buf.indices.dropLast(3).first { buf[$0..<$0 + 4].elementsEqual(sep) }
        }
        let head = String(decoding: buf[..<headEnd!], as: UTF8.self)
        let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
        var body = Array(buf[(headEnd! + 4)...])
        if head.lowercased().contains("expect: 100-continue") { writeAll(c, Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) }
        while body.count < length {
            let n = read(c, &chunk, chunk.count)
            if n <= 0 { return nil }
            body += chunk[..<n]
        }
        let kept = head.split(separator: "\r\n").filter { !$0.lowercased().hasPrefix("connection:") && !$0.lowercased().hasPrefix("expect:") }
        return Array((kept.joined(separator: "\r\n") + "\r\nConnection: close\r\n\r\n").utf8) + body
    }

    private func forward(_ request: [UInt8], to c: Int32) {
        let u = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard u >= 0 else { return }
        defer { close(u) }
        var addr = Self.loopback(port: UInt16(upstreamPort))
        guard withUnsafePointer(to: &addr, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(u, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }) == 0 else { return }
        writeAll(u, request)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(u, &chunk, chunk.count)
            if n <= 0 { return }
            writeAll(c, Array(chunk[..<n]))
        }
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }
}
