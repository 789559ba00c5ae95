// MARK: Printing names from a snapshot

/// A name from a snapshot (or any untrusted bytes) made safe to print on a
/// terminal, one line: `\\` for a backslash, `\n` `\t` `\r` for those,
/// `\xHH` for other control bytes (0x00-0x1f, 0x7f, ESC is `\x1b`) and for
/// bytes that are not UTF-8, and `\u{XXXX}` for C1 controls (U+0080-U+009F),
/// line/paragraph separators and bidirectional controls. Printable UTF-8 is
/// kept as it is. `ls -0` prints names raw instead.
func escapedName<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    escape(bytes, backslash: true)
}

/// A message that may quote untrusted names (errors, notes): as `escapedName`,
/// but a backslash stays as it is.
func escapedText(_ s: String) -> String {
    escape(s.utf8, backslash: false)
}

private func escape<C: Collection>(_ bytes: C, backslash: Bool) -> String where C.Element == UInt8 {
    // Fast path: printable ASCII only.
    if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && ($0 != 0x5c || !backslash) }) { return String(decoding: bytes, as: UTF8.self) }
    let hex = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count + 16)
    func byteEscape(_ b: UInt8) { out += [0x5c, 0x78, hex[Int(b >> 4)], hex[Int(b & 15)]] }
    var parser = Unicode.UTF8.ForwardParser()
    var pending = Array(bytes)[...]
    while !pending.isEmpty {
        var sub = pending.makeIterator()
        switch parser.parseScalar(from: &sub) {
        case .valid(let unit):
            let scalar = Unicode.UTF8.decode(unit)
            let raw = Array(unit)
            pending = pending.dropFirst(raw.count)
            let v = scalar.value
            switch v {
            case 0x5c where backslash: out += [0x5c, 0x5c]
            case 0x0a: out += [0x5c, 0x6e]
            case 0x09: out += [0x5c, 0x74]
            case 0x0d: out += [0x5c, 0x72]
            case 0..<0x20, 0x7f: byteEscape(UInt8(v))
            case 0x80...0x9f, 0x061c, 0x200e, 0x200f, 0x2028, 0x2029, 0x202a...0x202e, 0x2066...0x2069:
                out += Array("\\u{\(String(v, radix: 16))}".utf8)
            default: out += raw
            }
        case .error(let length):
            for b in pending.prefix(length) { byteEscape(b) }
            pending = pending.dropFirst(max(1, length))
        case .emptyInput:
            pending = pending.dropFirst(pending.count)
        }
        parser = Unicode.UTF8.ForwardParser()
    }
    return String(decoding: out, as: UTF8.self)
}
