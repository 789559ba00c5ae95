import AccordCore
import AccordRuntime
#if canImport(Glibc)
import Glibc
#endif

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
    /// serve's guard against a peer that stops reading: with a value, `flush`
    /// waits at most this many seconds for the peer to take more bytes, then
    /// throws `onWriteTimeout`'s error (nil: waits as long as it takes).
    public var writeTimeout: Double?
    public var onWriteTimeout: (() -> Error)?
    /// Set once a write timed out: the peer is not reading, so later writes
    /// (the error frame, say) fail at once instead of waiting again.
    private var writeStalled: Error?
    /// When the first byte of the frame being received arrived, or this `receive` began (nil between frames).
    private var partialSince: Double?

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
        if let e = writeStalled { throw e }
        do {
            if let t = writeTimeout {
                try writeBounded(seconds: t)
            } else {
                try outBuffer.withUnsafeBytes { try Sys.writeAll(output, $0, path: peer) }
            }
        } catch let e as WriteStalled {
            let error = onWriteTimeout?() ?? ProtocolError.connectionClosed("because \(peer) read nothing for \(e.seconds) s")
            writeStalled = error
            throw error
        } catch {
            throw ProtocolError.connectionClosed("while sending to \(peer) (\(error))")
        }
        bytesSent += UInt64(outBuffer.count)
        outBuffer.removeAll(keepingCapacity: true)
    }

    private struct WriteStalled: Error { var seconds: Int }

    /// Writes the buffer waiting at most `seconds` each time the peer's side is
    /// full. The descriptor stays blocking (serve's stdout may share its open
    /// file with stdin): after poll says writable, at most 4096 bytes (PIPE_BUF) are
    /// written at once, which a pipe with room, or a socket reported writable,
    /// takes without blocking.
    private func writeBounded(seconds: Double) throws {
        var done = 0
        while done < outBuffer.count {
            guard Sys.waitWritable(output, seconds: seconds) else { throw WriteStalled(seconds: Int(seconds)) }
            let n = outBuffer.withUnsafeBytes { Glibc.write(output, $0.baseAddress! + done, min(4096, $0.count - done)) }
            if n < 0 {
                if Glibc.errno == EINTR || Glibc.errno == EAGAIN { continue }
                throw SystemError(errno: Glibc.errno, operation: "write", path: peer)
            }
            done += n
        }
    }

    /// The next frame; nil on a clean end of input between frames. With a
    /// timeout, waiting longer than that for bytes throws (`onTimeout`'s error, if given).
    /// With `onSlowFrame` as well, a frame must also arrive whole within `timeout`
    /// of its first byte, so a peer trickling a byte at a time cannot hold the
    /// session open: past that, `onSlowFrame(bytes buffered)`'s error is thrown.
    public func receive(timeout: Double? = nil, onTimeout: (() -> Error)? = nil, onSlowFrame: ((Int) -> Error)? = nil) throws -> Frame? {
        try flush()
        // A frame begun earlier (bytes read with the previous frame) is timed from
        // here: the time this side spent acting on that frame is not the peer's.
        partialSince = decoder.buffered > 0 ? Sys.monotonicSeconds() : nil
        while true {
            if let f = try decoder.next() { return f }
            if let t = timeout {
                var wait = t
                if onSlowFrame != nil, let since = partialSince { wait = max(0, min(t, since + t - Sys.monotonicSeconds())) }
                if !Sys.waitReadable(input, seconds: wait) {
                    if let slow = onSlowFrame, partialSince != nil { throw slow(decoder.buffered) }
                    if let e = onTimeout { throw e() }
                    throw ProtocolError.connectionClosed("with no answer from \(peer) within \(Int(t)) s (is the remote command right? see --remote-command)")
                }
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
            if decoder.buffered == 0 { partialSince = Sys.monotonicSeconds() }
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
