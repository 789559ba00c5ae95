import CLibcrypto

/// SHA-256 through OpenSSL's libcrypto (which uses SHA-NI where the CPU has it).
/// Reads like swift-crypto: `update(data:)`, then `finalize()`.
public final class SHA256Hasher {
    private var ctx: OpaquePointer

    public init() {
        ctx = EVP_MD_CTX_new()
        EVP_DigestInit_ex(ctx, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public func update(data: UnsafeRawBufferPointer) {
        if data.count > 0 { EVP_DigestUpdate(ctx, data.baseAddress, data.count) }
    }

    public func update(data: [UInt8]) {
        data.withUnsafeBytes { update(data: $0) }
    }

    public func finalize() -> ID {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        out.withUnsafeMutableBufferPointer { _ = EVP_DigestFinal_ex(ctx, $0.baseAddress, &len) }
        return out.withUnsafeBytes { ID(bytes: $0.baseAddress!) }
    }

    /// One-shot hash of a buffer.
    public static func hash(_ data: UnsafeRawBufferPointer) -> ID {
        var out: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &out) { o in
            _ = CLibcrypto.SHA256(data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count,
                                  o.baseAddress!.assumingMemoryBound(to: UInt8.self))
            return ID(bytes: o.baseAddress!)
        }
    }

    public static func hash(_ data: [UInt8]) -> ID {
        data.withUnsafeBytes { hash($0) }
    }

    public static func hash<S: StringProtocol>(_ s: S) -> ID {
        hash(Array(s.utf8))
    }
}
