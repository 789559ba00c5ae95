import AccordCore
import AccordRuntime

/// An access key, its secret and an optional session token, from the usual
/// places in the usual order: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
/// `AWS_SESSION_TOKEN`, else the profile `AWS_PROFILE` (or `default`) of
/// `AWS_SHARED_CREDENTIALS_FILE` (or `~/.aws/credentials`). Never argv: a
/// command line is visible to every user of the machine. Instance metadata
/// is consulted only when asked for (`S3CredentialSource`): it would reach a
/// link-local address unasked.
public struct S3Credentials: Sendable, Equatable, CustomStringConvertible {
    public let accessKeyID: String
    public let secretAccessKey: String
    public let sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID; self.secretAccessKey = secretAccessKey; self.sessionToken = sessionToken
    }

    /// Only the key id: the secret and token are never printed or logged.
    public var description: String { "access key \(accessKeyID)" }

    /// Largest credentials file read; a bigger one is refused, not loaded.
    static let maxFileSize = 1 << 20

    public static func fromEnvironment(_ env: [String: String], home: String?) throws -> S3Credentials {
        if let id = env["AWS_ACCESS_KEY_ID"], !id.isEmpty {
            guard let secret = env["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else {
                throw S3Error.noCredentials("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
            }
            return try checked(S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: env["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }), "the environment")
        }
        let profile = env["AWS_PROFILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        guard let file = env["AWS_SHARED_CREDENTIALS_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) ?? home.map({ $0 + "/.aws/credentials" }) else {
            throw S3Error.noCredentials("the environment; no HOME for ~/.aws/credentials")
        }
        let bytes: [UInt8]
        do {
            let st = try Sys.stat(Array(file.utf8))
            guard st.size <= maxFileSize else { throw S3Error.badCredentialsFile(file, "larger than \(maxFileSize) bytes") }
            bytes = try AtomicFile.read(file)
        } catch let e as SystemError where e.isNotFound {
            throw S3Error.noCredentials("the environment and \(file), which does not exist")
        } catch let e as SystemError { throw S3Error.badCredentialsFile(file, "\(e)") }
        guard bytes.count <= maxFileSize else { throw S3Error.badCredentialsFile(file, "larger than \(maxFileSize) bytes") }
        let values = parseProfile(String(decoding: bytes, as: UTF8.self), profile)
        guard let id = values["aws_access_key_id"], let secret = values["aws_secret_access_key"] else {
            throw S3Error.noCredentials("the environment and profile [\(S3Error.printable(profile))] of \(file), which has no aws_access_key_id and aws_secret_access_key")
        }
        return try checked(S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: values["aws_session_token"]), file)
    }

    /// The `key = value` lines of `[profile]` in an INI file (`#`/`;` comments; keys lowercased).
    static func parseProfile(_ text: String, _ profile: String) -> [String: String] {
        var inside = false, out: [String: String] = [:]
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            let line = raw.trimmingSpaces
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                inside = line.dropFirst().dropLast().trimmingSpaces == Substring(profile)
                continue
            }
            guard inside, let eq = line.firstIndex(of: "=") else { continue }
            out[String(line[..<eq].trimmingSpaces).lowercased()] = String(line[line.index(after: eq)...].trimmingSpaces)
        }
        return out
    }

    /// Refuses values that would corrupt a header (control bytes, a key id with ":" breaks curl's user:password split).
    static func checked(_ c: S3Credentials, _ from: String) throws -> S3Credentials {
        func ok(_ s: String) -> Bool { !s.isEmpty && s.utf8.count <= 4096 && s.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f } }
        guard ok(c.accessKeyID), !c.accessKeyID.contains(":"), ok(c.secretAccessKey), c.sessionToken.map(ok) ?? true else {
            throw S3Error.badCredentialsFile(from, "a key id, secret or token is empty, too long, or has spaces, control bytes or (key id) a colon")
        }
        return c
    }

    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`, else us-east-1 (what most S3-compatible servers accept).
    public static func region(_ env: [String: String]) -> String {
        env["AWS_REGION"].flatMap { $0.isEmpty ? nil : $0 } ?? env["AWS_DEFAULT_REGION"].flatMap { $0.isEmpty ? nil : $0 } ?? "us-east-1"
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }
}
