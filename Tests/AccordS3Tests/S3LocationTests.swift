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
        let v = try S3Location(parsing: "s3:https://s3.example.com:8443/bkt/p", virtualHosted: true)
        XCTAssertEqual(v.url(key: "p/config"), "https://bkt.s3.example.com:8443/p/config")
        XCTAssertEqual(try S3Location(parsing: "s3:http://[::1]:9000/bkt").host, "[::1]")
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
        XCTAssertThrowsError(try S3Location(parsing: "s3:https://h/my.bucket", virtualHosted: true), "dots break the certificate of a virtual host")
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
