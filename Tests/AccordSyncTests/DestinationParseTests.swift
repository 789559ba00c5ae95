import XCTest
import AccordSync

/// `--to` values: what is a remote node, a local directory, or refused.
final class DestinationParseTests: XCTestCase {
    func testRemoteAndLocalForms() throws {
        XCTAssertEqual(try Destination.parse("backup@dr-node.example:/srv/b", defaultDirectory: "/opt/anaconda_backup"),
                       Destination(user: "backup", host: "dr-node.example", directory: "/srv/b"))
        XCTAssertEqual(try Destination.parse("node2", defaultDirectory: "/opt/anaconda_backup"),
                       Destination(user: nil, host: "node2", directory: "/opt/anaconda_backup"))
        XCTAssertEqual(try Destination.parse("node2:", defaultDirectory: "/d"), Destination(user: nil, host: "node2", directory: "/d"))
        XCTAssertEqual(try Destination.parse("/mnt/dr", defaultDirectory: "/d"), Destination(user: nil, host: nil, directory: "/mnt/dr"))
        XCTAssertEqual(try Destination.parse("./dr", defaultDirectory: "/d"), Destination(user: nil, host: nil, directory: "./dr"))
    }

    /// A user or host that ssh would read as an option (`-oProxyCommand=…`)
    /// is refused before ssh runs, as are empty parts and odd characters.
    func testValuesSSHWouldTakeForOptionsAreRefused() {
        for bad in ["", "-oProxyCommand=touch /tmp/x@node:/d", "-oProxyCommand=x@node", "user@-node", "-node",
                    "@node", "us er@node", "user@no de", "[::1]:/d", "user@node;rm", "ü@node"] {
            XCTAssertThrowsError(try Destination.parse(bad, defaultDirectory: "/d"), "accepted \(bad)") { error in
                XCTAssertTrue("\(error)".contains("bad destination"), "\(error)")
            }
        }
    }
}
