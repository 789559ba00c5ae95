@testable import AccordS3
import XCTest

/// The reader of S3's XML (`S3XMLReader`): what S3 servers send is read,
/// anything beyond the subset is refused whole, never expanded.
final class S3XMLTests: XCTestCase {
    func testAListingPageIsRead() throws {
        let doc = """
        <?xml version="1.0" encoding="UTF-8"?>
        <!-- a comment -->
        <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
          <Contents><Key>p/a&amp;b&#x41;&#66;</Key><Size>3</Size><ETag>&quot;x&quot;</ETag></Contents>
          <Contents><Key>p/c</Key><Owner/></Contents>
          <IsTruncated>true</IsTruncated><NextContinuationToken>tok&lt;1&gt;</NextContinuationToken></ListBucketResult>
        """
        let page = try S3ListPage(Array(doc.utf8), what: "test")
        XCTAssertEqual(page.keys, ["p/a&bAB", "p/c"])
        XCTAssertTrue(page.truncated)
        XCTAssertEqual(page.next, "tok<1>")
        let err = S3ErrorDocument(Array("<Error><Code>NoSuchBucket</Code><Message>gone 'here'</Message></Error>".utf8))
        XCTAssertEqual(err.code, "NoSuchBucket")
        XCTAssertEqual(err.message, "gone 'here'")
    }

    func testHostileOrBrokenDocumentsAreRefusedWhole() {
        let bad = [
            "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><ListBucketResult><Key>&e;</Key></ListBucketResult>",
            "<ListBucketResult><Contents><Key>a</Contents></Key></ListBucketResult>",
            "<ListBucketResult><Key>&unknown;</Key></ListBucketResult>",
            "<ListBucketResult><Key><![CDATA[x]]></Key></ListBucketResult>",
            "<ListBucketResult><Key>&#0;</Key></ListBucketResult>",
            "<ListBucketResult>", "<A></A><B></B>", "", "<", "<ListBucketResult attr=\"unterminated></ListBucketResult>",
            String(repeating: "<a>", count: 17) + String(repeating: "</a>", count: 17),
            "<a>" + String(repeating: "x", count: 5000) + "</a>",
        ]
        for d in bad { XCTAssertNil(S3XMLReader.read(Array(d.utf8)), d) }
        XCTAssertNil(S3XMLReader.read([0x3c, 0x61, 0x3e, 0xff, 0xfe, 0x3c, 0x2f, 0x61, 0x3e]), "invalid UTF-8")
        XCTAssertThrowsError(try S3ListPage(Array("<Other></Other>".utf8), what: "t"))
        XCTAssertEqual(S3ErrorDocument(Array("<Error><Code>".utf8)).code, "", "a broken error document gives no code")
    }
}
