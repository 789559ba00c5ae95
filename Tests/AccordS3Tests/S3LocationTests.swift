import AccordCore
@_spi(Testing) @testable import AccordS3
import Foundation
import XCTest

/// Addresses and credentials: checked before any request, secrets never printed. No server.
final class S3LocationTests: XCTestCase {
    func testAddressesParse() throws {
        let a = try S3Location(parsing: "s3:https://s3.example.com/backups/site-a/host1/")
        XCTAssertEqual([a.scheme, a.host, a.bucket, a.prefix], ["https", "s3.example.com", "backups", "site-a/host1"])
        XCTAssertNil(a.port)
        XCTAssertEqual(a.key("index/x"), "site-a/host1/index/x")
        XCTAssertEqual(a.description, "s3:https://s3.example.com/backups/site-a/host1")
        let b = try S3Location(parsing: "s3:http://127.0.0.1:9000/bkt")
        XCTAssertEqual(b.port, 9000)
        XCTAssertEqual(b.prefix, "")
        XCTAssertEqual(b.key("config"), "config")
        XCTAssertEqual(b.url(key: "", query: [("prefix", "a/b"), ("list-type", "2"), ("continuation-token", "x+y=")]),
                       "http://127.0.0.1:9000/bkt/?continuation-token=x%2By%3D&list-type=2&prefix=a%2Fb", "sorted and encoded: the canonical query")
        let v = try S3Location(parsing: "s3:https://s3.example.com:8443/bkt/p", bucketLookup: .dns)
        XCTAssertEqual(v.url(key: "p/config"), "https://bkt.s3.example.com:8443/p/config")
        XCTAssertEqual(try S3Location(parsing: "s3:http://[::1]:9000/bkt").host, "[::1]")
    }

    /// Plain http is warned about unless the host is this machine.
    func testLoopbackHostsAreToldFromOthers() throws {
        for (address, loopback) in [("s3:http://127.0.0.1:9000/bkt", true), ("s3:http://127.3.4.5/bkt", true), ("s3:http://localhost:9000/bkt", true),
                                    ("s3:http://[::1]:9000/bkt", true), ("s3:http://10.0.0.1:9000/bkt", false), ("s3:http://minio.example.com/bkt", false),
                                    ("s3:http://127.0.0.1.example.com/bkt", false), ("s3:http://1270.0.0.1/bkt", false),
                                    ("s3:http://127.0.0.08:9000/bkt", false), ("s3:http://[::ffff:127.0.0.1]:9000/bkt", true),
                                    ("s3:http://[::2]:9000/bkt", false), ("s3:http://localhost.:9000/bkt", true)] {
            XCTAssertEqual(try S3Location(parsing: address).isLoopback, loopback, address)
        }
    }

    func testHostileAddressesAreRefused() {
        for bad in ["", "s3:", "s3:ftp://h/b", "https://h/b", "s3:https://h", "s3:https://h/", "s3:https://user:pw@h/bkt",
                    "s3:https://h:0/bkt", "s3:https://h:99999/bkt", "s3:https://h:9x/bkt", "s3:https://h/BKT", "s3:https://h/b",
                    "s3:https://h/bkt/../x", "s3:https://h/bkt/a//b", "s3:https://h/bkt/a b", "s3:https://h/bkt?x=1",
                    "s3:https://h/bkt/p#f", "s3:https://h/bkt/p%2e", "s3:https://[::1/bkt", "s3:https://h\u{0}/bkt", "s3:https://-h/bkt",
                    "s3:https://h/bkt/" + String(repeating: "a/", count: 300)] {
            XCTAssertThrowsError(try S3Location(parsing: bad), bad.debugDescription) { e in
                guard case S3Error.invalidLocation = e else { return XCTFail("\(e)") }
                XCTAssertFalse("\(e)".unicodeScalars.contains { $0.value < 0x20 }, "control bytes are not printed: \(e)")
            }
        }
        XCTAssertThrowsError(try S3Location(parsing: "s3:https://h/my.bucket", bucketLookup: .dns), "dots break the certificate of a virtual host")
    }

    /// Path or virtual-hosted style (`--s3-bucket-lookup`): the URL of an object, of a
    /// listing and of the bucket, and the keys, which are the same either way.
    func testBucketLookupPicksPathOrVirtualHostedURLs() throws {
        func parse(_ text: String, _ lookup: S3BucketLookup) throws -> S3Location { try S3Location(parsing: text, bucketLookup: lookup) }
        let listing: [(String, String)] = [("list-type", "2"), ("prefix", "site/data/")]
        let address = "s3:https://s3.eu-west-1.amazonaws.com/backups/site"
        let (path, dns, auto) = try (parse(address, .path), parse(address, .dns), parse(address, .auto))
        XCTAssertFalse(path.virtualHosted)
        XCTAssertTrue(dns.virtualHosted)
        XCTAssertEqual(auto, dns, "auto: an Amazon S3 endpoint without a port is virtual-hosted")
        XCTAssertEqual(path.url(key: path.key("data/2c/2c8d")), "https://s3.eu-west-1.amazonaws.com/backups/site/data/2c/2c8d")
        XCTAssertEqual(dns.url(key: dns.key("data/2c/2c8d")), "https://backups.s3.eu-west-1.amazonaws.com/site/data/2c/2c8d")
        XCTAssertEqual(path.url(key: "", query: listing), "https://s3.eu-west-1.amazonaws.com/backups/?list-type=2&prefix=site%2Fdata%2F")
        XCTAssertEqual(dns.url(key: "", query: listing), "https://backups.s3.eu-west-1.amazonaws.com/?list-type=2&prefix=site%2Fdata%2F")
        for l in [path, dns] {
            XCTAssertEqual(l.key("config"), "site/config", "the key does not depend on the style")
            XCTAssertEqual(l.description, address, "nor does the address")
            XCTAssertEqual(l.bucket, "backups")
        }
        let noPrefix = try parse("s3:http://minio.internal:9000/bkt", .dns)
        XCTAssertEqual(noPrefix.url(key: noPrefix.key("config")), "http://bkt.minio.internal:9000/config", "the port stays on the host")

        // auto: path for everything but Amazon S3's own names without a port.
        for (text, virtual) in [("s3:https://s3.amazonaws.com/bkt", true), ("s3:https://s3-us-west-2.amazonaws.com/bkt", true),
                                ("s3:https://s3.cn-north-1.amazonaws.com.cn/bkt", true),
                                ("s3:https://s3.amazonaws.com:443/bkt", false), ("s3:https://s3.amazonaws.com/my.bkt", false),
                                ("s3:https://minio.example.com/bkt", false), ("s3:http://127.0.0.1:9000/bkt", false),
                                ("s3:https://s3.example.com/bkt", false), ("s3:https://bkt.amazonaws.com.evil.example/bkt", false),
                                ("s3:https://storage.amazonaws.com/bkt", false), ("s3:http://localhost:9000/bkt", false)] {
            XCTAssertEqual(try parse(text, .auto).virtualHosted, virtual, text)
            XCTAssertFalse(try parse(text, .path).virtualHosted, text)
        }
        XCTAssertEqual(try S3Location(parsing: "s3:https://s3.amazonaws.com/bkt"), try parse("s3:https://s3.amazonaws.com/bkt", .auto), "auto is the default")

        // dns where the bucket cannot be a subdomain: refused before any request, saying to use path.
        for text in ["s3:http://127.0.0.1:9000/bkt", "s3:http://[::1]:9000/bkt", "s3:https://10.1.2.3/bkt", "s3:https://h.example/my.bkt"] {
            XCTAssertThrowsError(try parse(text, .dns), text) { e in
                guard case S3Error.invalidLocation = e else { return XCTFail("\(e)") }
                XCTAssertTrue("\(e)".contains("path"), "\(e)")
            }
        }
        XCTAssertTrue(try parse("s3:http://h.example/my.bkt", .dns).virtualHosted, "dots are fine without TLS")
        XCTAssertEqual(S3BucketLookup.words, "auto|path|dns")
    }

    /// A secret typed into the address is refused and never repeated: not in the error, not in a log line.
    func testCredentialsInTheAddressAreRefusedAndNotRepeated() {
        for text in ["s3:https://AKIDEXAMPLE:wJalrXUtnFEMI@s3.example.com/bucket", "s3:http://AKID:wJalrXUtnFEMI@127.0.0.1:9000/bkt/p",
                     "s3:https://AKID:wJalrXUtnFEMI@host"] {
            XCTAssertThrowsError(try S3Location(parsing: text)) { e in
                let m = "\(e)"
                XCTAssertTrue(m.contains("credentials never go in the address") && m.contains("AWS_ACCESS_KEY_ID"), m)
                XCTAssertFalse(m.contains("wJalrXUtnFEMI") || m.contains("AKID"), "the secret is repeated: \(m)")
            }
            XCTAssertFalse(S3Location.redacted(text).contains("wJalrXUtnFEMI"), S3Location.redacted(text))
        }
        XCTAssertEqual(S3Location.redacted("s3:https://h:9000/b/p"), "s3:https://h:9000/b/p")
    }

    /// Server text reaches a terminal only with C0, DEL and C1 controls (U+009B is CSI on some terminals) replaced.
    func testServerTextIsPrintedWithoutControlCharacters() {
        XCTAssertEqual(S3Error.printable("a\u{1b}[2Jb\u{9b}31mc\u{7f}d\ne"), "a?[2Jb?31mc?d?e")
        XCTAssertEqual(S3Error.printable("région"), "région")
        XCTAssertEqual(S3Error.printable(String(repeating: "x", count: 300)).count, 200)
    }

    func testCredentialsComeFromTheEnvironmentThenTheProfile() throws {
        let env = ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s3cret", "AWS_SESSION_TOKEN": "tok", "AWS_PROFILE": "other"]
        let c = try S3Credentials.fromEnvironment(env, home: "/nonexistent")
        XCTAssertEqual(c, S3Credentials(accessKeyID: "AKID", secretAccessKey: "s3cret", sessionToken: "tok"))
        XCTAssertFalse("\(c)".contains("s3cret") || "\(c)".contains("tok"), "never printed: \(c)")

        let dir = NSTemporaryDirectory() + "/accord-s3cred-" + String(UInt64.random(in: 0 ... .max), radix: 16)
        try FileManager.default.createDirectory(atPath: dir + "/.aws", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = "# comment\n[default]\naws_access_key_id = DEF\naws_secret_access_key=defsecret\n\n[other]\r\n  aws_access_key_id = OTH \r\n; x\naws_secret_access_key = othsecret\n"
        try file.write(toFile: dir + "/.aws/credentials", atomically: true, encoding: .utf8)
        XCTAssertEqual(try S3Credentials.fromEnvironment([:], home: dir).accessKeyID, "DEF")
        let other = try S3Credentials.fromEnvironment(["AWS_PROFILE": "other"], home: dir)
        XCTAssertEqual([other.accessKeyID, other.secretAccessKey], ["OTH", "othsecret"])
        XCTAssertThrowsError(try S3Credentials.fromEnvironment(["AWS_PROFILE": "absent"], home: dir)) { e in
            guard case S3Error.noCredentials = e else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("[absent]"), "\(e)")
        }
        XCTAssertThrowsError(try S3Credentials.fromEnvironment([:], home: dir + "/none")) { e in
            guard case S3Error.noCredentials = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try S3Credentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "A"], home: dir), "a key id without its secret")
        XCTAssertThrowsError(try S3Credentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "A:B", "AWS_SECRET_ACCESS_KEY": "x"], home: dir))
        XCTAssertThrowsError(try S3Credentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "x\ny"], home: dir))
        XCTAssertEqual(S3Credentials.region(["AWS_DEFAULT_REGION": "eu-west-1"]), "eu-west-1")
        XCTAssertEqual(S3Credentials.region(["AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-west-1"]), "eu-central-1")
        XCTAssertEqual(S3Credentials.region([:]), "us-east-1")
    }
}
