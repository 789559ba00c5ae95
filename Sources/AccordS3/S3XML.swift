/// The few elements of an S3 XML document we read, as (path of element
/// names, text) pairs ("ListBucketResult/Contents/Key"), one per element in
/// the order they close. A small reader of the subset S3 servers send
/// (declarations, comments, elements with attributes, text with the five
/// named entities and numeric ones), written here so `accord` links neither
/// FoundationXML nor libxml2 and ICU behind it. A DOCTYPE, CDATA, an unknown
/// entity, a mismatched tag or invalid UTF-8 make the whole document
/// unreadable (nil): nothing is ever expanded or fetched. Documents are
/// bounded before they get here (`S3Backend.maxListPage`, `Exchange.maxErrorBody`);
/// here depth (16), text per element (4096 bytes) and elements (200,000) are.
enum S3XMLReader {
    static let maxDepth = 16, maxText = 4096, maxLeaves = 200_000

    static func read(_ bytes: [UInt8]) -> [(String, String)]? {
        var stack: [String] = [], leaves: [(String, String)] = [], text: [UInt8] = []
        var sawRoot = false
        var i = 0
        let n = bytes.count
        while i < n {
            guard bytes[i] == UInt8(ascii: "<") else {
                guard text.count < maxText else { return nil }
                text.append(bytes[i]); i += 1
                continue
            }
            guard i + 1 < n else { return nil }
            switch bytes[i + 1] {
            case UInt8(ascii: "?"):   // <?xml …?>
                guard let end = find(bytes, "?>", from: i + 2) else { return nil }
                i = end + 2
                continue
            case UInt8(ascii: "!"):   // only comments; a DOCTYPE or CDATA is refused
                guard hasPrefix(bytes, "<!--", at: i), let end = find(bytes, "-->", from: i + 4) else { return nil }
                i = end + 3
                continue
            default: break
            }
            guard let gt = tagEnd(bytes, from: i + 1) else { return nil }
            let closing = bytes[i + 1] == UInt8(ascii: "/")
            let selfClosing = !closing && bytes[gt - 1] == UInt8(ascii: "/")
            let nameStart = closing ? i + 2 : i + 1
            var nameEnd = nameStart
            while nameEnd < gt, !isSpace(bytes[nameEnd]), bytes[nameEnd] != UInt8(ascii: "/") { nameEnd += 1 }
            guard nameEnd > nameStart, let name = String(validating: bytes[nameStart..<nameEnd], as: UTF8.self) else { return nil }
            if closing {
                guard stack.last == name, leaves.count < maxLeaves, let t = decode(text) else { return nil }
                leaves.append((stack.joined(separator: "/"), t))
                stack.removeLast()
            } else {
                guard stack.count < maxDepth, !(stack.isEmpty && sawRoot) else { return nil }
                sawRoot = true
                stack.append(name)
                if selfClosing {
                    guard leaves.count < maxLeaves else { return nil }
                    leaves.append((stack.joined(separator: "/"), ""))
                    stack.removeLast()
                }
            }
            text = []
            i = gt + 1
        }
        return sawRoot && stack.isEmpty ? leaves : nil
    }

    /// The `>` ending a tag that starts before `from`, skipping quoted attribute values.
    static func tagEnd(_ b: [UInt8], from: Int) -> Int? {
        var quote: UInt8? = nil
        var j = from
        while j < b.count {
            let c = b[j]
            if let q = quote { if c == q { quote = nil } } else if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") { quote = c } else if c == UInt8(ascii: ">") { return j } else if c == UInt8(ascii: "<") { return nil }
            j += 1
        }
        return nil
    }

    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d }

    static func hasPrefix(_ b: [UInt8], _ s: String, at i: Int) -> Bool {
        let u = Array(s.utf8)
        return i + u.count <= b.count && b[i..<i + u.count].elementsEqual(u)
    }

    static func find(_ b: [UInt8], _ s: String, from: Int) -> Int? {
        var j = from
        while j < b.count { if hasPrefix(b, s, at: j) { return j }; j += 1 }
        return nil
    }

    /// Text with its entities replaced; nil for an unknown entity or invalid UTF-8.
    static func decode(_ t: [UInt8]) -> String? {
        guard t.contains(UInt8(ascii: "&")) else { return String(validating: t, as: UTF8.self) }
        var out: [UInt8] = []
        var i = 0
        while i < t.count {
            guard t[i] == UInt8(ascii: "&") else { out.append(t[i]); i += 1; continue }
            guard let semi = t[i...].prefix(12).firstIndex(of: UInt8(ascii: ";")),
                  let entity = String(validating: t[(i + 1)..<semi], as: UTF8.self) else { return nil }
            switch entity {
            case "amp": out.append(UInt8(ascii: "&"))
            case "lt": out.append(UInt8(ascii: "<"))
            case "gt": out.append(UInt8(ascii: ">"))
            case "quot": out.append(UInt8(ascii: "\""))
            case "apos": out.append(UInt8(ascii: "'"))
            default:
                let hex = entity.hasPrefix("#x") || entity.hasPrefix("#X")
                guard entity.hasPrefix("#"), let v = UInt32(entity.dropFirst(hex ? 2 : 1), radix: hex ? 16 : 10),
                      v != 0, let scalar = Unicode.Scalar(v) else { return nil }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            }
            i = semi + 1
        }
        return String(validating: out, as: UTF8.self)
    }
}

/// An S3 error document (`<Error><Code>…</Code><Message>…</Message></Error>`);
/// empty fields when the body is empty (HEAD) or not one.
struct S3ErrorDocument {
    var code = "", message = ""
    init(_ bytes: [UInt8]) {
        guard !bytes.isEmpty, let leaves = S3XMLReader.read(bytes) else { return }
        for (path, text) in leaves {
            if path == "Error/Code" { code = S3Error.printable(text) }
            if path == "Error/Message" { message = S3Error.printable(text) }
        }
    }
}

/// One page of a ListObjectsV2 answer.
struct S3ListPage {
    var keys: [String] = []
    var truncated = false
    var next: String?

    init(_ bytes: [UInt8], what: String) throws {
        guard let leaves = S3XMLReader.read(bytes) else { throw S3Error.badResponse(what, "the listing is not well-formed XML") }
        var sawRoot = false
        for (path, text) in leaves {
            switch path {
            case "ListBucketResult": sawRoot = true
            case "ListBucketResult/Contents/Key": keys.append(text)
            case "ListBucketResult/IsTruncated":   // xsd:boolean: true, false, 1, 0 (whitespace around allowed)
                var t = Substring(text)
                while let c = t.first, c.isWhitespace { t.removeFirst() }
                while let c = t.last, c.isWhitespace { t.removeLast() }
                switch t {
                case "true", "1": truncated = true
                case "false", "0": truncated = false
                default: throw S3Error.badResponse(what, "IsTruncated is \"\(S3Error.printable(text))\", not true or false")
                }
            case "ListBucketResult/NextContinuationToken": next = text
            default: break
            }
        }
        guard sawRoot else { throw S3Error.badResponse(what, "not a ListBucketResult") }
        if truncated {
            guard let n = next, !n.isEmpty, n.utf8.count <= 4096 else { throw S3Error.badResponse(what, "a truncated listing without a usable NextContinuationToken") }
        }
    }
}
