// Plan files (YAML merged over a built-in base) and the Kubernetes object
// helpers, tested in-process: no cluster, no database.
import Foundation
import XCTest
import Yams
import AccordCore
import AccordPlans

final class PlanFileTests: XCTestCase {
    /// Parses a plan file, failing the test with the message if it is rejected.
    func parse(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> Plan {
        do { return try Plan.parse(text, source: "/etc/accord/test-plan.yaml") } catch {
            XCTFail("plan rejected: \(error)", file: file, line: line)
            throw error
        }
    }

    /// Asserts that the plan file is rejected with a message containing every `fragments`.
    func assertRejected(_ text: String, mentioning fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            let p = try Plan.parse(text, source: "/etc/accord/bad-plan.yaml")
            XCTFail("plan file accepted, expected an error mentioning \(fragments):\n\(text)\nparsed: \(p)", file: file, line: line)
        } catch {
            let message = "\(error)"
            for f in fragments {
                XCTAssertTrue(message.contains(f), "error \"\(message)\" does not mention \"\(f)\"", file: file, line: line)
            }
        }
    }

    // MARK: Merging

    func testPlanFileOverridesOnlyTheKeysItNamesAndKeepsTheRestOfAe5() throws {
        let p = try parse("""
        namespace: anaconda
        storage:
          root: /srv/storage
          excludes: [/srv/storage/pgdata]
        timeouts:
          scaleSeconds: 7
        """)
        XCTAssertEqual(p.namespace, "anaconda")
        XCTAssertEqual(p.storage?.root, "/srv/storage")
        XCTAssertEqual(p.storage?.excludes, ["/srv/storage/pgdata"])
        XCTAssertEqual(p.storage?.replace, Plan.ae5.storage?.replace, "storage.replace was not given: it must keep ae5's value")
        XCTAssertEqual(p.timeouts.scaleSeconds, 7)
        XCTAssertEqual(p.timeouts.runningSeconds, Plan.ae5.timeouts.runningSeconds, "a nested key left out must keep the base value")
        XCTAssertEqual(p.timeouts.pollSeconds, Plan.ae5.timeouts.pollSeconds)
        XCTAssertEqual(p.dumps, Plan.ae5.dumps)
        XCTAssertEqual(p.objects, Plan.ae5.objects)
        XCTAssertEqual(p.restoreSteps, Plan.ae5.restoreSteps)
        XCTAssertEqual(p.cleanupSQL, Plan.ae5.cleanupSQL)
        XCTAssertEqual(p.postgres, Plan.ae5.postgres)
        XCTAssertEqual(p.name, "test-plan", "an unnamed plan file is named after its file name, not its path, so it matches on another node")
        XCTAssertEqual(p.expand("{kubectl} -n {namespace} deploy/{postgres} {pguser}"),
                       "kubectl -n anaconda deploy/anaconda-enterprise-postgres postgres")
    }

    func testPlanFileWithBaseAe5ReposMergesOverThatPlan() throws {
        let p = try parse("""
        base: ae5-repos
        name: repos-test
        storage:
          root: /srv/repo-objects
        """)
        XCTAssertEqual(p.name, "repos-test")
        XCTAssertEqual(p.storage?.root, "/srv/repo-objects")
        XCTAssertEqual(p.storage?.replace, ["."], "ae5-repos replaces its whole root")
        XCTAssertEqual(p.storage?.excludes, [])
        XCTAssertEqual(p.dumps, Plan.ae5Repos.dumps)
        XCTAssertEqual(p.objects, [])
        XCTAssertEqual(p.restoreSteps, Plan.ae5Repos.restoreSteps)
    }

    func testEmptyPlanFileIsItsBase() throws {
        var p = try parse("base: ae5\n")
        p.name = "ae5"
        XCTAssertEqual(p, Plan.ae5)
    }

    func testNullStorageLeavesOnlyTheDumps() throws {
        let p = try parse("""
        storage: null
        objects: []
        dumps:
          - path: /db/one.sql
            command: "{kubectl} exec deploy/{postgres} -- pg_dump -U {pguser} one"
            profile: dump
        """)
        XCTAssertNil(p.storage)
        XCTAssertEqual(p.objects, [])
        XCTAssertEqual(p.dumps.map(\.path), ["/db/one.sql"], "a list in a plan file replaces the base's list")
        XCTAssertNil(p.dumps[0].restore)
    }

    // MARK: Rejections

    func testUnknownTopLevelKeyIsRejectedNamingIt() {
        assertRejected("namespcae: anaconda\n", mentioning: ["namespcae", "unknown key", "bad-plan.yaml"])
    }

    func testUnknownNestedKeyIsRejectedNamingIt() {
        // A typo inside a mapping must not be silently ignored: the restore would then wait 300 s.
        assertRejected("timeouts:\n  scaleSecond: 5\n", mentioning: ["scaleSecond"])
        assertRejected("storage:\n  root: /srv/s\n  exclude: [/srv/s/pgdata]\n", mentioning: ["exclude"])
    }

    func testTyposInListEntriesAreRejected() {
        // `nameContain` ignored would select EVERY secret of the namespace (service-account tokens included).
        assertRejected("objects:\n  - kind: secret\n    namespace: default\n    nameContain: anaconda-credentials-user\n",
                       mentioning: ["nameContain"])
        assertRejected("dumps:\n  - path: /db/x.sql\n    command: pg_dump x\n    profile: dump\n    restor: psql x\n", mentioning: ["restor"])
        // Values with a fixed vocabulary: a typo must not surface only mid-restore (`kubectl aply`)
        // or silently change meaning (an unknown restoreWhen is treated as `always`).
        assertRejected("objects:\n  - kind: secret\n    namespace: default\n    names: [x]\n    method: aply\n", mentioning: ["aply"])
        assertRejected("objects:\n  - kind: ingress\n    namespace: default\n    restoreWhen: ingres\n", mentioning: ["ingres"])
    }

    func testUnknownBaseIsRejected() {
        assertRejected("base: ae6\n", mentioning: ["ae6", "ae5-repos"])
    }

    func testUnknownRestoreStepIsRejectedNamingTheKnownSteps() {
        assertRejected("restoreSteps: [check-marker, frobnicate, remove-marker]\n",
                       mentioning: ["frobnicate", "unknown restore step", "check-marker", "load-dumps"])
    }

    func testUnknownObjectKindAndProfileAreRejected() {
        assertRejected("objects:\n  - kind: pod\n    namespace: default\n", mentioning: ["pod", "secret, configmap, ingress"])
        assertRejected("dumps:\n  - path: /db/x.sql\n    command: pg_dump x\n    profile: huge\n", mentioning: ["huge", "profile"])
    }

    func testWrongTypesAreRejected() {
        assertRejected("timeouts:\n  scaleSeconds: ten\n", mentioning: ["wrong type"])
        assertRejected("restoreSteps: check-marker\n", mentioning: ["wrong type"])
        assertRejected("dumps: /postgres/x.sql\n", mentioning: ["wrong type"])
        assertRejected("namespace: [a, b]\n", mentioning: ["wrong type"])
        assertRejected("- just\n- a list\n", mentioning: ["mapping"])
        assertRejected("storage: {root: [\n", mentioning: ["YAML"])
        assertRejected("timeouts:\n  scaleSeconds: 0\n", mentioning: ["positive"])
    }

    func testRelativePathsAreRejected() {
        assertRejected("storage:\n  root: opt/anaconda/storage\n", mentioning: ["opt/anaconda/storage", "absolute"])
        assertRejected("dumps:\n  - path: postgres/all.sql\n    command: pg_dumpall\n    profile: dump\n",
                       mentioning: ["postgres/all.sql", "absolute"])
    }

    func testReplacedDirectoriesMustStayInsideTheStorageRoot() {
        // A restore deletes each replaced directory: "../.." would delete outside the root.
        assertRejected("storage:\n  root: /srv/storage\n  replace: [git, ../../etc]\n", mentioning: ["../../etc"])
        // "git/" or "a//b" would delete a directory the restore's include then never matches;
        // "" would delete the whole root. Each is refused, naming the entry.
        for bad in ["git/", "a//b", "./git", "\"\""] {
            assertRejected("storage:\n  root: /srv/storage\n  replace: [\(bad)]\n", mentioning: ["replace entry"])
        }
        assertRejected("storage:\n  root: /srv/storage/\n  replace: [git]\n", mentioning: ["/srv/storage/"])
    }

    /// YAML values a plan cannot hold are named as such, not as a type error.
    func testYAMLDatesAndNonTextBasesAreRefusedClearly() {
        assertRejected("description: 2024-01-01\n", mentioning: ["quote dates"])
        assertRejected("base: 5\n", mentioning: ["base must be"])
        assertRejected("storage:\n  root: /srv/storage\n  replace: [/etc]\n", mentioning: ["/etc"])
    }

    func testLoadRefusesANameThatIsNeitherBuiltInNorAFile() {
        XCTAssertThrowsError(try Plan.load("ae6")) { e in
            XCTAssertTrue("\(e)".contains("no plan named ae6"), "\(e)")
        }
        XCTAssertThrowsError(try Plan.load("/nonexistent/plan.yaml")) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent/plan.yaml"), "\(e)")
        }
    }

    func testBuiltInPlansAreValidAndShowAsYAMLThatParsesBack() throws {
        for p in [Plan.ae5, Plan.ae5Repos] {
            XCTAssertNoThrow(try p.validate(), p.name)
            let yaml = try p.yaml()
            var back = try Plan.parse(yaml, source: "/tmp/shown.yaml")
            back.name = p.name
            XCTAssertEqual(back, p, "`plan show` output of \(p.name) does not parse back to the same plan")
        }
    }

    // MARK: Kubernetes objects

    /// A fixture object as kubectl `-o json` gives it to `KubeObjects.fetch` (JSONSerialization types).
    func fixtureObject(_ relative: String) throws -> [String: Any] {
        let text = try String(contentsOfFile: PlansTestPaths.fixtures + "/ae5-cluster/" + relative, encoding: .utf8)
        let yaml = try XCTUnwrap(try Yams.load(yaml: text) as? [String: Any])
        let json = try JSONSerialization.data(withJSONObject: yaml)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: json) as? [String: Any])
    }

    func testCleanRemovesVolatileMetadataAndStatus() throws {
        let ingress = try fixtureObject("ingress/default/anaconda-enterprise-ap-ui.yaml")
        let meta = try XCTUnwrap(ingress["metadata"] as? [String: Any])
        for f in ["creationTimestamp", "resourceVersion", "generation", "selfLink", "uid"] {
            XCTAssertNotNil(meta[f], "fixture should carry \(f) for this test to mean something")
        }
        let cleaned = KubeObjects.clean(ingress)
        let m = try XCTUnwrap(cleaned["metadata"] as? [String: Any])
        for f in ["creationTimestamp", "resourceVersion", "generation", "selfLink", "uid", "managedFields"] {
            XCTAssertNil(m[f], "\(f) was kept")
        }
        XCTAssertNil(cleaned["status"], "status was kept")
        XCTAssertEqual(m["name"] as? String, "anaconda-enterprise-ap-ui")
        XCTAssertEqual(m["namespace"] as? String, "default")
        XCTAssertEqual((m["annotations"] as? [String: Any])?["kubernetes.io/ingress.class"] as? String, "nginx")
        XCTAssertNotNil(cleaned["spec"])
        XCTAssertEqual(cleaned["kind"] as? String, "Ingress")
    }

    func testCleanToleratesMissingFields() throws {
        // bob's secret has no selfLink (the original tool crashed on it).
        let bob = try fixtureObject("secret/default/anaconda-credentials-user-bob.yaml")
        XCTAssertNil((bob["metadata"] as? [String: Any])?["selfLink"])
        let cleaned = KubeObjects.clean(bob)
        let m = try XCTUnwrap(cleaned["metadata"] as? [String: Any])
        XCTAssertEqual(Set(m.keys), ["labels", "name", "namespace"])
        XCTAssertEqual((cleaned["data"] as? [String: Any])?["ssh_key"] as? String, "RkFLRSBCT0IgS0VZCg==")
        // No metadata at all, or metadata that is not a mapping: left as is.
        XCTAssertEqual(KubeObjects.clean(["kind": "Secret"]).keys.sorted(), ["kind"])
        XCTAssertEqual(KubeObjects.clean(["metadata": "odd"])["metadata"] as? String, "odd")
        XCTAssertEqual((KubeObjects.clean(["metadata": [String: Any]()])["metadata"] as? [String: Any])?.count, 0)
    }

    /// JSON text of a value with sorted keys, so two decoded objects compare exactly (types included).
    func canonicalJSON(_ value: Any) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]), as: UTF8.self)
    }

    func assertYAMLRoundTrip(_ object: [String: Any], _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let yaml = KubeObjects.toYAML(object)
        let back: Any?
        do { back = try Yams.load(yaml: yaml) } catch {
            XCTFail("\(label): toYAML output is not valid YAML (\(error)):\n\(yaml)", file: file, line: line)
            return
        }
        guard let parsed = back else { XCTFail("\(label): toYAML output parses to nothing:\n\(yaml)", file: file, line: line); return }
        // Yams gives Int/Bool/Double/String: compare through JSON so 1 ≠ true ≠ "1".
        XCTAssertEqual(try canonicalJSON(parsed), try canonicalJSON(object), "\(label): toYAML output re-parses to a different object:\n\(yaml)",
                       file: file, line: line)
    }

    func testToYAMLOfEveryFixtureObjectReparsesToTheSameObject() throws {
        let root = PlansTestPaths.fixtures + "/ae5-cluster"
        var n = 0
        for kind in try FileManager.default.contentsOfDirectory(atPath: root).sorted() {
            for ns in try FileManager.default.contentsOfDirectory(atPath: root + "/" + kind).sorted() {
                for f in try FileManager.default.contentsOfDirectory(atPath: "\(root)/\(kind)/\(ns)").sorted() where f.hasSuffix(".yaml") {
                    let o = try fixtureObject("\(kind)/\(ns)/\(f)")
                    try assertYAMLRoundTrip(o, "\(kind)/\(ns)/\(f)")
                    try assertYAMLRoundTrip(KubeObjects.clean(o), "cleaned \(kind)/\(ns)/\(f)")
                    n += 1
                }
            }
        }
        XCTAssertGreaterThanOrEqual(n, 15, "fixture objects not found under \(root)")
    }

    func testToYAMLQuotesAwkwardValuesSoTheyReparseUnchanged() throws {
        let json = #"""
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "odd", "namespace": "default", "labels": {}, "annotations": {"a/b": "x: y # not a comment"}},
         "data": {"multi": "line one\nline two\n\ttabbed\n", "yes": "yes", "no": "no", "null": "null", "true": "true",
                  "number": "0123", "float": "1e3", "empty": "", "quote": "it's \"quoted\"", "unicode": "café ✓ \u0001",
                  "colon": ": leading", "dash": "- item", "hash": "#x", "star": "*alias", "amp": "&anchor", "brace": "{a: 1}",
                  "spaces": "  padded  ", "backslash": "C:\\path\\"},
         "nested": [[1, 2], [], {}, [{"k": [true, false, null]}], -5, 2.5, 1e21, 0],
         "flags": {"on": true, "off": false, "zero": 0, "one": 1, "nothing": null}}
        """#
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        try assertYAMLRoundTrip(object, "awkward values")
    }

    func testObjectPathsAreNamespacedAndPlural() {
        XCTAssertEqual(KubeObjects.path(kind: "secret", namespace: "kube-system", name: "cluster-tls"), "/kubernetes/secrets/kube-system/cluster-tls.yaml")
        XCTAssertEqual(KubeObjects.path(kind: "ingress", namespace: "default", name: "ui"), "/kubernetes/ingresses/default/ui.yaml")
        XCTAssertEqual(KubeObjects.path(kind: "configmap", namespace: "default", name: "p.yml"), "/kubernetes/configmaps/default/p.yml.yaml")
        XCTAssertNotEqual(KubeObjects.path(kind: "secret", namespace: "default", name: "x"),
                          KubeObjects.path(kind: "secret", namespace: "kube-system", name: "x"))
    }

    /// One selector for backup and restore: names, nameContains and excludePrefixes all apply.
    func testObjectSpecSelectsByNamesSubstringAndExcludedPrefixes() throws {
        func spec(_ json: String) throws -> Plan.Objects { try JSONDecoder().decode(Plan.Objects.self, from: Data(json.utf8)) }
        let all = try spec(#"{"kind": "secret", "namespace": "default", "nameContains": "credentials", "excludePrefixes": ["anaconda-credentials-user-"]}"#)
        XCTAssertTrue(all.selects("anaconda-credentials-admin"))
        XCTAssertFalse(all.selects("anaconda-credentials-user-alice"), "excludePrefixes must apply")
        XCTAssertFalse(all.selects("anaconda-enterprise-certs"), "nameContains must apply")
        let named = try spec(#"{"kind": "secret", "namespace": "default", "names": ["a", "b-x"], "excludePrefixes": ["b-"]}"#)
        XCTAssertTrue(named.selects("a"))
        XCTAssertFalse(named.selects("b-x"), "an excluded prefix wins over a listed name")
        XCTAssertFalse(named.selects("c"))
    }
}
