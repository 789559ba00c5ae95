import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// The few elements of an S3 XML document we read, by their path of
/// element names ("ListBucketResult/Contents/Key"). Documents are bounded
/// before they get here (`S3Backend.maxListPage`, `Exchange.maxErrorBody`);
/// external entities are never resolved.
final class S3XMLReader: NSObject, XMLParserDelegate {
    private var stack: [String] = []
    private var text = ""
    /// Every (path, text) of a leaf element, in document order.
    private(set) var leaves: [(String, String)] = []
    private static let maxLeaves = 200_000

    static func read(_ bytes: [UInt8]) -> [(String, String)]? {
        let r = S3XMLReader()
        let p = XMLParser(data: Data(bytes))
        p.shouldResolveExternalEntities = false
        p.delegate = r
        return p.parse() ? r.leaves : nil
    }

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        guard stack.count < 16 else { parser.abortParsing(); return }
        stack.append(name); text = ""
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) {
        guard text.utf8.count + string.utf8.count <= 4096 else { parser.abortParsing(); return }
        text += string
    }
    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        guard leaves.count < Self.maxLeaves else { parser.abortParsing(); return }
        leaves.append((stack.joined(separator: "/"), text))
        text = ""
        stack.removeLast()
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
            case "ListBucketResult/IsTruncated": truncated = text == "true"
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
