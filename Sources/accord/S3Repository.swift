import AccordCore
import AccordRuntime
import AccordS3
import Foundation

/// Repositories in a bucket: `-d s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`.
/// The command layer is where `S3Backend` is made (AccordCore never imports
/// AccordS3); credentials come from the environment or `AWS_PROFILE`'s file
/// only (`S3Credentials`), never from argv.
extension RepositoryOptions {
    /// The environment variable naming a CA file for s3: repositories (`--s3-ca-file` wins).
    static let s3CAFileVariable = "ACCORD_S3_CA_FILE"

    /// Is the repository an `s3:` location?
    var isS3: Bool { path.hasPrefix("s3:") }

    /// The backend of an `s3:` location, checked before any request. Making it
    /// sends nothing; the first request tells a wrong secret or a missing bucket.
    func s3Backend() throws -> S3Backend {
        let location = try S3Location(parsing: path)
        var caFile = s3CAFile
        if caFile == nil, let e = Sys.environment(Self.s3CAFileVariable), !e.isEmpty { caFile = e }
        if let caFile, !pathExists(caFile) {
            throw CommandFailure("the CA file \(caFile) (\(s3CAFile != nil ? "--s3-ca-file" : "$" + Self.s3CAFileVariable)) does not exist")
        }
        return try S3Backend(location, caFile: caFile)
    }

    /// Fails with a clear message on an `s3:` repository when `what` needs a local one.
    func requireLocal(_ what: String) throws {
        guard isS3 else { return }
        throw RepositoryError.notLocal(path, what: what)
    }
}

/// What a command cost on an `s3:` repository ("s3: N requests (R retried)",
/// each attempt counted), nil on a local one: a no-change backup should make
/// a handful, not one per file.
func s3RequestSummary(_ repository: Repository) -> String? {
    guard let s3 = repository.backend as? S3Backend else { return nil }
    let s = s3.statistics
    return "s3: \(s.requests) requests (\(s.retries) retried)"
}
