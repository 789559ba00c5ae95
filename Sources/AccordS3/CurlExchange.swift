import CCurl

/// Where a response body goes.
enum ResponseBody {
    /// Into `Exchange.bytes`, at most `limit` bytes (a larger response is refused before it is stored).
    case collect(limit: Int)
    /// A ranged GET for `offset ..< offset + buffer.count`, written straight into `buffer`.
    /// Servers answer 206 with the range, or (rclone) 200 with the range and a
    /// `Content-Range`, or 200 with the whole object: each is placed right.
    case range(UnsafeMutableRawBufferPointer, offset: Int64)
    /// Nothing expected (HEAD, PUT, DELETE).
    case none
}

/// One request's state while libcurl runs it: the body to send, what came
/// back. libcurl's callbacks reach it through their user-data pointer; it
/// lives on the calling thread for the duration of `curl_easy_perform`.
final class Exchange {
    let body: ResponseBody
    let upload: UnsafeRawBufferPointer?
    var uploaded = 0
    /// A test seam: the upload is cut off after this many bytes.
    var abortAfter: Int?
    /// Status of the final response (interim 1xx responses are dropped with their headers).
    var status = 0
    /// Response headers, names lowercased; the last of a repeated name wins.
    var headers: [String: String] = [:]
    var headerBytes = 0
    /// `.collect`: the body. Any non-2xx status: the first `maxErrorBody` bytes of the error document.
    var bytes: [UInt8] = []
    /// `.range`: bytes placed in the buffer; bytes of the body still to skip before them (-1: not decided).
    var filled = 0
    var skip: Int64 = -1
    /// Set by a callback that stopped the transfer on purpose: the error to report,
    /// or nil with `finishedEarly` when a range was complete or an error document cut off.
    var failure: S3Error?
    var finishedEarly = false
    let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    static let maxHeaderBytes = 64 << 10
    static let maxErrorBody = 64 << 10

    init(body: ResponseBody, upload: UnsafeRawBufferPointer?) {
        self.body = body; self.upload = upload
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    }
    deinit { errorBuffer.deallocate() }

    var isSuccess: Bool { (200..<300).contains(status) }

    /// A header line: a status line starts a new response (after `100 Continue`), others are `Name: value`.
    func header(_ p: UnsafeRawBufferPointer) -> Bool {
        headerBytes += p.count
        guard headerBytes <= Self.maxHeaderBytes else { failure = .responseTooLarge("response headers", Self.maxHeaderBytes); return false }
        var line = Substring(String(decoding: p, as: UTF8.self))
        while let l = line.last, l == "\r" || l == "\n" || l == "\r\n" { line = line.dropLast() }
        if line.hasPrefix("HTTP/") {
            headers = [:]
            let parts = line.split(separator: " ", maxSplits: 2)
            status = parts.count >= 2 ? Int(parts[1]) ?? 0 : 0
        } else if let colon = line.firstIndex(of: ":") {
            headers[line[..<colon].lowercased()] = String(line[line.index(after: colon)...].trimmingSpaces)
        }
        return true
    }

    /// A piece of the body; false stops the transfer (`failure` or `finishedEarly` says why).
    func receive(_ p: UnsafeRawBufferPointer) -> Bool {
        guard isSuccess else {   // an error document: its start is enough; an endless one is cut off
            let room = Self.maxErrorBody - bytes.count
            bytes.append(contentsOf: p.prefix(max(0, room)))
            if p.count > room { finishedEarly = true; return false }
            return true
        }
        switch body {
        case .none: return true
        case .collect(let limit):
            if bytes.isEmpty, let cl = headers["content-length"].flatMap({ Int($0) }) {
                guard cl <= limit, cl >= 0 else { failure = .responseTooLarge("GET", limit); return false }
                bytes.reserveCapacity(cl)
            }
            guard bytes.count + p.count <= limit else { failure = .responseTooLarge("GET", limit); return false }
            bytes.append(contentsOf: p.bindMemory(to: UInt8.self))   // typed: a memcpy, not a byte loop
            return true
        case .range(let buffer, let offset):
            if skip < 0 {
                guard let s = rangeSkip(offset) else { return false }
                skip = s
            }
            var piece = p
            if skip > 0 {
                let n = Int(min(skip, Int64(piece.count)))
                skip -= Int64(n); piece = UnsafeRawBufferPointer(rebasing: piece[n...])
            }
            let n = min(piece.count, buffer.count - filled)
            if n > 0 {
                UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<filled + n]).copyMemory(from: UnsafeRawBufferPointer(rebasing: piece[..<n]))
                filled += n
            }
            if filled == buffer.count && n < piece.count { finishedEarly = true; return false }   // a whole object sent for a range
            return true
        }
    }

    /// For a ranged GET that ended well: why its body is shorter than the
    /// part of the object it should cover, or nil. The cover is what the
    /// buffer asks for, cut at the object's end as `Content-Range`'s
    /// TOTAL (or its END when TOTAL is `*`), or a whole object's
    /// `Content-Length`, says; with neither there is nothing to compare with.
    /// A short body is the connection's or a proxy's fault, not the object's
    /// end: the caller retries it.
    var shortRange: String? {
        guard case .range(let buffer, let offset) = body, isSuccess, filled < buffer.count else { return nil }
        let end: Int64   // the object's end, or the range's last byte + 1
        if let cr = headers["content-range"] {
            guard let slash = cr.lastIndex(of: "/"), let dash = cr.firstIndex(of: "-") else { return nil }
            if let total = Int64(cr[cr.index(after: slash)...].trimmingSpaces) { end = total }
            else if let last = Int64(cr[cr.index(after: dash)..<slash].trimmingSpaces) { end = last &+ 1 }
            else { return nil }
        } else if let cl = headers["content-length"].flatMap({ Int64(Substring($0).trimmingSpaces) }) {
            end = cl
        } else { return nil }
        let expected = max(0, min(Int64(buffer.count), end - offset))
        guard Int64(filled) < expected else { return nil }
        return "the server sent \(filled) bytes of a range of \(expected) at \(offset)"
    }

    /// How many body bytes come before `offset`: 0 for a 206 (or a 200 whose
    /// `Content-Range` starts at it), `offset` for a whole object.
    private func rangeSkip(_ offset: Int64) -> Int64? {
        guard let cr = headers["content-range"] else {
            if status == 206 { failure = .badResponse("ranged GET", "206 without Content-Range"); return nil }
            return offset
        }
        // "bytes START-END/TOTAL"
        guard cr.hasPrefix("bytes "), let dash = cr.firstIndex(of: "-"), let start = Int64(cr[cr.index(cr.startIndex, offsetBy: 6)..<dash]),
              start >= 0, start <= offset else {
            failure = .badResponse("ranged GET at \(offset)", "Content-Range \"\(S3Error.printable(cr))\""); return nil
        }
        return offset - start
    }

    /// The next piece of the upload into `into`; 0 at the end.
    func send(_ into: UnsafeMutableRawBufferPointer) -> Int {
        guard let upload else { return 0 }
        if let a = abortAfter, uploaded >= a { failure = .transport("upload", "interrupted by a test after \(a) bytes"); return Int(CURL_READFUNC_ABORT) }
        let n = min(into.count, upload.count - uploaded, (abortAfter ?? Int.max) - uploaded)
        if n > 0 { into.copyMemory(from: UnsafeRawBufferPointer(rebasing: upload[uploaded..<uploaded + n])) }
        uploaded += n
        return n
    }

    var curlMessage: String { String(cString: errorBuffer) }
}

// The C callbacks: `userdata` is an unretained `Exchange` that outlives the transfer.
let curlHeaderCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { p, size, n, ctx in
    let x = Unmanaged<Exchange>.fromOpaque(ctx!).takeUnretainedValue()
    return x.header(UnsafeRawBufferPointer(start: p, count: size * n)) ? size * n : 0
}
let curlWriteCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { p, size, n, ctx in
    let x = Unmanaged<Exchange>.fromOpaque(ctx!).takeUnretainedValue()
    return x.receive(UnsafeRawBufferPointer(start: p, count: size * n)) ? size * n : 0
}
let curlReadCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { p, size, n, ctx in
    let x = Unmanaged<Exchange>.fromOpaque(ctx!).takeUnretainedValue()
    return x.send(UnsafeMutableRawBufferPointer(start: p, count: size * n))
}
