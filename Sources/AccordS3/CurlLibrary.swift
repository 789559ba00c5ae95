import CCurl

/// libcurl, loaded at run time on the first `s3:` repository: only object
/// storage needs it, and linking it made every package depend on libcurl4 and
/// the TLS, LDAP, SSH and HTTP/2 libraries behind it (`packaging/check-binary.sh`
/// allows the C and C++ runtimes alone). `S3Client` calls it through the
/// function pointers in `api`, looked up once per process; a machine without
/// libcurl gets an error saying which package to install, never a loader
/// failure at start-up.
final class CurlLibrary: @unchecked Sendable {   // the table is written once, in `load`, then only read
    /// The looked-up functions; never freed (the library is never unloaded).
    let api: UnsafeMutablePointer<accord_curl_api>
    /// The file name that loaded and libcurl's version ("8.14.1").
    let name: String
    let version: String

    private init(api: UnsafeMutablePointer<accord_curl_api>, name: String) {
        self.api = api; self.name = name
        version = accord_curl_version(api).map { String(cString: $0) } ?? "unknown"
    }

    /// Debian's libcurl4 (OpenSSL), then libcurl3-gnutls.
    static let candidates = ["libcurl.so.4", "libcurl-gnutls.so.4"]

    /// Loaded and globally initialised on first use, once per process (a Swift
    /// global runs its initialiser under swift_once: `curl_global_init`, which is
    /// not thread-safe itself, runs once, before any handle).
    static let shared: Result<CurlLibrary, S3Error> = load(candidates)

    /// The first of `names` that loads, has every function and initialises.
    static func load(_ names: [String]) -> Result<CurlLibrary, S3Error> {
        var failures: [String] = []
        for name in names {
            let api = UnsafeMutablePointer<accord_curl_api>.allocate(capacity: 1)
            api.initialize(to: accord_curl_api())
            if let error = accord_curl_load(name, api) {
                failures.append(String(cString: error))
                api.deallocate()
                continue
            }
            let rc = accord_curl_global_init(api)
            guard rc == CURLE_OK else {
                failures.append("\(name): curl_global_init failed (\(rc.rawValue))")
                continue   // the library stays loaded; its table is small and this runs once
            }
            return .success(CurlLibrary(api: api, name: name))
        }
        return .failure(.transport("libcurl", "s3: repositories need libcurl (libcurl.so.4), which did not load: \(failures.joined(separator: "; ")). Install the system's libcurl (Debian: apt install libcurl4; the conda package uses the system's too)"))
    }
}

/// What `accord version` says about object storage: the libcurl that loaded, or why none did.
public enum S3Support {
    /// One line's text: "libcurl 7.88.1 (libcurl.so.4)" or the load error.
    public static var description: String {
        switch CurlLibrary.shared {
        case .success(let l): return "libcurl \(l.version) (\(l.name))"
        case .failure(let e): return "unavailable: \(e)"
        }
    }

    /// libcurl's version, or nil when it did not load.
    public static var libcurlVersion: String? { try? CurlLibrary.shared.get().version }
}
