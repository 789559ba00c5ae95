import AccordCore
import AccordRuntime
import AccordS3
import ArgumentParser
import Foundation

extension S3BucketLookup: ExpressibleByArgument {}

/// Repositories in a bucket: `-d s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`.
/// The command layer is where `S3Backend` is made (AccordCore never imports
/// AccordS3); credentials come from the environment or `AWS_PROFILE`'s file
/// only (`S3Credentials`), never from argv.
extension RepositoryOptions {
    /// The environment variable naming a CA file for s3: repositories (`--s3-ca-file` wins).
    static let s3CAFileVariable = "ACCORD_S3_CA_FILE"

    /// The plain-http warning is said once a process.
    nonisolated(unsafe) static var warnedPlainHTTP = false

    /// Is the repository an `s3:` location?
    var isS3: Bool { path.hasPrefix("s3:") }

    /// The environment variable choosing the bucket lookup (`--s3-bucket-lookup` wins).
    static let s3BucketLookupVariable = "ACCORD_S3_BUCKET_LOOKUP"

    /// Path or virtual-hosted style: `--s3-bucket-lookup`, else `$ACCORD_S3_BUCKET_LOOKUP`, else auto.
    func bucketLookup() throws -> S3BucketLookup {
        if let l = s3BucketLookup { return l }
        guard let e = Sys.environment(Self.s3BucketLookupVariable), !e.isEmpty else { return .auto }
        guard let l = S3BucketLookup(rawValue: e) else {
            throw CommandFailure("$\(Self.s3BucketLookupVariable)=\(escapedText(e)) is not one of \(S3BucketLookup.words)")
        }
        return l
    }

    /// The backend of an `s3:` location, checked before any request. Making it
    /// sends nothing; the first request tells a wrong secret or a missing bucket.
    func s3Backend() throws -> S3Backend {
        let location = try S3Location(parsing: path, bucketLookup: try bucketLookup())
        if location.scheme == "http" && !location.isLoopback && !Self.warnedPlainHTTP {
            Self.warnedPlainHTTP = true
            // SigV4 keeps the secret, not the data: a plain repository's bytes, and every repository's
            // unauthenticated requests and answers, cross the network as they are.
            warn("\(location.endpoint) is plain http to another machine: everything sent and received can be read and changed on the way; use s3:https://")
        }
        var caFile = s3CAFile
        if caFile == nil, let e = Sys.environment(Self.s3CAFileVariable), !e.isEmpty { caFile = e }
        if let caFile, !pathExists(caFile) {
            throw CommandFailure("the CA file \(caFile) (\(s3CAFile != nil ? "--s3-ca-file" : "$" + Self.s3CAFileVariable)) does not exist")
        }
        return try S3Backend(location, caFile: caFile)
    }

    /// The environment variable naming the cache's base directory.
    static let cacheVariable = "ACCORD_CACHE_DIR"

    /// Where s3: repositories' caches go: `$ACCORD_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/accord`, else `$HOME/.cache/accord` (root's too); nil
    /// with `--no-cache` or when none of them is an absolute path.
    var cacheBase: String? {
        if noCache { return nil }
        if let d = Sys.environment(Self.cacheVariable), d.hasPrefix("/") { return d }
        if let x = Sys.environment("XDG_CACHE_HOME"), x.hasPrefix("/") { return x + "/accord" }
        if let h = Sys.environment("HOME"), h.hasPrefix("/") { return (h == "/" ? "" : h) + "/.cache/accord" }
        return nil
    }

    /// The `s3:` backend behind a `CachedBackend` in `cacheBase/<repository
    /// id>-<location>` (16 hex digits of the SHA-256 of the repository's
    /// `s3:` location) when the config names a valid id (it is read here
    /// once, and handed on so opening the repository asks for it no more).
    /// The location keeps apart copies of one repository (a DR copy made by
    /// `sync` has the primary's id): each one's listings would otherwise
    /// delete the other's cached files. Without a config or a usable cache
    /// directory: the bare backend (a cache is only a saving).
    func cachedS3Backend() throws -> any Backend {
        let s3 = try s3Backend()
        guard let base = cacheBase else { return s3 }
        guard let bytes = try? s3.read(.config, "config", upTo: Int(ObjectKind.config.largestObject)), bytes.count <= ObjectKind.config.largestObject,
              let config = try? RepositoryConfig.decode(bytes, repository: s3.location, configPath: s3.describe(.config, "config"))
        else { return s3 }
        let directory = base + "/" + config.id + "-" + String(SHA256Hasher.hash(s3.location).hex.prefix(16))
        // An older accord named it by the id alone: adopt that one (its
        // files are checked by name and pruned by listings like any others).
        if !pathExists(directory), pathExists(base + "/" + config.id) { try? Sys.rename(base + "/" + config.id, directory) }
        do { return try CachedBackend(inner: s3, directory: directory, config: bytes) } catch {
            warn("not using the cache in \(directory): \(error)")
            return s3
        }
    }
}

/// What a command cost on an `s3:` repository ("s3: N requests (R retried)",
/// each attempt counted), nil on a local one: a no-change backup should make
/// a handful, not one per file.
func s3RequestSummary(_ repository: Repository) -> String? {
    guard (repository.backend as? S3Backend) ?? ((repository.backend as? CachedBackend)?.inner as? S3Backend) != nil else { return nil }
    let s = S3Backend.processStatistics   // the probes before the repository opened count too
    return "s3: \(s.requests) requests (\(s.retries) retried)"
}

extension SyncCommand {
    /// `accord sync --to s3:…`: the destination is a `Repository` on an
    /// `S3Backend` (no serve), created with the source's config if the prefix
    /// holds none, then given every object it lacks (`Repository.mirror`),
    /// under a shared lock on each side. Like serve, it never deletes there.
    func sendToBucket(_ rec: CommandRecorder) throws {
        guard snapshots.isEmpty else {
            throw CommandFailure("sync to a bucket copies every snapshot: drop the snapshot arguments")
        }
        let source = try repo.open()
        var destOptions = repo
        destOptions.directory = to
        let backend = try destOptions.s3Backend()
        let dest: Repository
        do {
            dest = try backend.list(.config).isEmpty ? try Repository.initialize(backend: backend, config: source.config) : try Repository.open(backend: backend, withoutKey: true)
        } catch RepositoryError.alreadyInitialized {
            dest = try Repository.open(backend: backend, withoutKey: true)
        }
        let started = Sys.monotonicSeconds()
        let progress = output.makeProgress("sync")
        progress?.startReporting()
        defer { progress?.stop() }
        let stats = try withLock(source, readOnly: repo.isS3, command: "sync") {
            let lock = try dest.acquireLock(exclusive: false, command: "sync (destination)", retryFor: LockWait.seconds, waiting: LockWait.say, warn: warn)
            defer { release(lock) }
            let stats = try source.mirror(to: dest) { _ in progress?.addFile() }
            // After everything it names is there, as serve places it.
            if marker { try dest.placeRestoreMarker() }
            return stats
        }
        progress?.stop()
        if output.quiet { return }
        let summary = "synced to \(backend.location): \(stats.snapshots) snapshot(s), \(stats.packs) pack(s), \(stats.indexFiles) index file(s), "
            + "\(stats.keyFiles) key file(s), \(formatBytes(UInt64(stats.bytes))) in \(String(format: "%.2f", Sys.monotonicSeconds() - started)) s"
        if json {
            print("{\"bytes\":\(stats.bytes),\"indexFiles\":\(stats.indexFiles),\"keyFiles\":\(stats.keyFiles),\"packs\":\(stats.packs),\"snapshots\":\(stats.snapshots)}")
        } else {
            print(summary)
            if let line = s3RequestSummary(dest) { print(line) }
        }
    }
}
