import AccordCore

/// Frames over a pair of file descriptors (pipes to ssh, or stdin/stdout of
/// `accord serve`), with write buffering and byte counters for the wire.
public final class FrameConnection {
    let input: Int32
    let output: Int32
    private var decoder = FrameDecoder()
    private var outBuffer: [UInt8] = []
    private var readBuffer = [UInt8](repeating: 0, count: 1 << 18)
    public private(set) var bytesSent: UInt64 = 0
    public private(set) var bytesReceived: UInt64 = 0
    /// Describes the peer in errors ("ssh to node2", "client").
    public let peer: String

    public init(input: Int32, output: Int32, peer: String) {
        self.input = input
        self.output = output
        self.peer = peer
    }

    /// Queues a frame; it is written when the buffer fills or on `flush()`/`receive()`.
    public func send(_ frame: Frame) throws {
        outBuffer.append(contentsOf: frame.encode())
        if outBuffer.count >= 1 << 18 { try flush() }
    }

    public func flush() throws {
        guard !outBuffer.isEmpty else { return }
        do {
            try outBuffer.withUnsafeBytes { try Sys.writeAll(output, $0, path: peer) }
        } catch {
            throw ProtocolError.connectionClosed("while sending to \(peer) (\(error))")
        }
        bytesSent += UInt64(outBuffer.count)
        outBuffer.removeAll(keepingCapacity: true)
    }

    /// The next frame; nil on a clean end of input between frames. With a
    /// timeout, waiting longer than that for bytes throws (`onTimeout`'s error, if given).
    public func receive(timeout: Double? = nil, onTimeout: (() -> Error)? = nil) throws -> Frame? {
        try flush()
        while true {
            if let f = try decoder.next() { return f }
            if let t = timeout, !Sys.waitReadable(input, seconds: t) {
                if let e = onTimeout { throw e() }
                throw ProtocolError.connectionClosed("with no answer from \(peer) within \(Int(t)) s (is the remote command right? see --remote-command)")
            }
            let n: Int
            do { n = try readBuffer.withUnsafeMutableBytes { try Sys.read(input, $0.baseAddress!, $0.count, path: peer) } } catch {
                throw ProtocolError.connectionClosed("while reading from \(peer) (\(error))")
            }
            if n == 0 {
                if decoder.buffered == 0 { return nil }
                throw ProtocolError.connectionClosed("by \(peer) in the middle of a frame")
            }
            bytesReceived += UInt64(n)
            decoder.feed(readBuffer[0..<n])
        }
    }

    /// The next frame, which must exist; an `error` frame becomes a thrown error.
    public func expect(_ what: String, timeout: Double? = nil) throws -> Frame {
        guard let f = try receive(timeout: timeout) else { throw ProtocolError.connectionClosed("by \(peer) while waiting for \(what)") }
        if case .error(let code, let message) = f { throw ProtocolError.remote(code: code, message: message) }
        return f
    }
}
