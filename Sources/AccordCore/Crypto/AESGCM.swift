import CLibcrypto
import Foundation

/// An AES-256-GCM key (12-byte nonces, 16-byte tags) with its libcrypto
/// contexts pooled: the key schedule is computed once per context, and a
/// seal or open takes a context from the pool, so threads never share one.
///
/// Sealed layout (FORMAT.md, "Sealed bytes"): `Nonce(12) || ciphertext || Tag(16)`,
/// the nonce random for every seal.
///
/// `@unchecked Sendable`: the pools are guarded by `lock`; a context is used
/// by one thread between taking and returning it.
public final class AESGCMKey: @unchecked Sendable {
    public static let nonceSize = 12
    public static let tagSize = 16
    /// Bytes a seal adds: the nonce and the tag.
    public static let overhead = nonceSize + tagSize

    private let key: [UInt8]
    private let lock = NSLock()
    private var sealers: [OpaquePointer] = []
    private var openers: [OpaquePointer] = []

    public init(_ key: [UInt8]) {
        precondition(key.count == 32, "AES-256 needs a 32-byte key")
        self.key = key
    }

    deinit {
        for c in sealers + openers { EVP_CIPHER_CTX_free(c) }
    }

    private func take(encrypt: Bool) throws -> OpaquePointer {
        if let c = lock.withLock({ encrypt ? sealers.popLast() : openers.popLast() }) { return c }
        guard let c = EVP_CIPHER_CTX_new() else { throw CryptoError.libcrypto("EVP_CIPHER_CTX_new") }
        let ok = key.withUnsafeBufferPointer { EVP_CipherInit_ex(c, EVP_aes_256_gcm(), nil, $0.baseAddress, nil, encrypt ? 1 : 0) }
        guard ok == 1 else { EVP_CIPHER_CTX_free(c); throw CryptoError.libcrypto("EVP_CipherInit_ex") }
        return c
    }

    private func give(_ c: OpaquePointer, encrypt: Bool) {
        lock.withLock { if encrypt { sealers.append(c) } else { openers.append(c) } }
    }

    /// Appends `Nonce || AES-256-GCM(plaintext, aad) || Tag` to `out` (a fresh random nonce).
    public func seal(_ plaintext: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer, appendingTo out: inout [UInt8]) throws {
        let nonce = Crypto.randomBytes(Self.nonceSize)
        try seal(plaintext, aad: aad, nonce: nonce, appendingTo: &out)
    }

    /// `seal` with a given nonce: for test vectors only (a nonce must never repeat under a key).
    public func seal(_ plaintext: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer, nonce: [UInt8], appendingTo out: inout [UInt8]) throws {
        precondition(nonce.count == Self.nonceSize)
        let c = try take(encrypt: true)
        defer { give(c, encrypt: true) }
        let start = out.count
        out.append(contentsOf: nonce)
        out.append(contentsOf: repeatElement(0, count: plaintext.count + Self.tagSize))
        var len: Int32 = 0
        let ok: Bool = out.withUnsafeMutableBytes { o in
            let base = o.baseAddress!.assumingMemoryBound(to: UInt8.self) + start
            guard EVP_CipherInit_ex(c, nil, nil, nil, base, 1) == 1 else { return false }
            if aad.count > 0, EVP_CipherUpdate(c, nil, &len, aad.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(aad.count)) != 1 { return false }
            let ct = base + Self.nonceSize
            if plaintext.count > 0, EVP_CipherUpdate(c, ct, &len, plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(plaintext.count)) != 1 { return false }
            guard EVP_CipherFinal_ex(c, ct + plaintext.count, &len) == 1 else { return false }
            return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, Int32(Self.tagSize), ct + plaintext.count) == 1
        }
        guard ok else { throw CryptoError.libcrypto("AES-256-GCM seal") }
    }

    /// Opens `Nonce || ciphertext || Tag` into `out` (replacing its contents); throws
    /// `authenticationFailed` unless the tag verifies under this key and `aad`.
    /// With `keeping` k, the first k bytes of `out` stay and the plaintext follows them.
    public func open(_ sealed: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer, into out: inout [UInt8], keeping k: Int = 0) throws {
        guard sealed.count >= Self.overhead else { throw CryptoError.tooShort(sealed.count) }
        let n = sealed.count - Self.overhead
        out.resizeForOverwrite(k + n)
        let c = try take(encrypt: false)
        defer { give(c, encrypt: false) }
        let input = sealed.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var len: Int32 = 0
        let ok: Bool = out.withUnsafeMutableBufferPointer { o in
            guard EVP_CipherInit_ex(c, nil, nil, nil, input, 0) == 1 else { return false }
            if aad.count > 0, EVP_CipherUpdate(c, nil, &len, aad.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(aad.count)) != 1 { return false }
            if n > 0, EVP_CipherUpdate(c, o.baseAddress! + k, &len, input + Self.nonceSize, Int32(n)) != 1 { return false }
            let tag = UnsafeMutableRawPointer(mutating: input + Self.nonceSize + n)
            guard EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, Int32(Self.tagSize), tag) == 1 else { return false }
            var end: Int32 = 0
            return EVP_CipherFinal_ex(c, o.baseAddress.map { $0 + k + n } ?? nil, &end) == 1
        }
        guard ok else {
            out.removeAll(keepingCapacity: true)
            throw CryptoError.authenticationFailed
        }
    }

    /// Opens `Nonce || ciphertext || Tag` where it lies: the plaintext
    /// replaces the ciphertext (`sealed[nonceSize ..< nonceSize + n]`, n
    /// returned), so a reader holding a mutable copy of the stored bytes (a
    /// restore's pack window) makes no second one. Throws
    /// `authenticationFailed` unless the tag verifies; the ciphertext is then
    /// already overwritten, so the bytes must not be opened again.
    public func openInPlace(_ sealed: UnsafeMutableRawBufferPointer, aad: UnsafeRawBufferPointer) throws -> Int {
        guard sealed.count >= Self.overhead else { throw CryptoError.tooShort(sealed.count) }
        let n = sealed.count - Self.overhead
        let c = try take(encrypt: false)
        defer { give(c, encrypt: false) }
        let base = sealed.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let ct = base + Self.nonceSize
        var len: Int32 = 0
        // libcrypto allows a cipher's output to be its input exactly (not a partial overlap).
        let ok: Bool = {
            guard EVP_CipherInit_ex(c, nil, nil, nil, base, 0) == 1 else { return false }
            if aad.count > 0, EVP_CipherUpdate(c, nil, &len, aad.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(aad.count)) != 1 { return false }
            if n > 0, EVP_CipherUpdate(c, ct, &len, ct, Int32(n)) != 1 { return false }
            guard EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, Int32(Self.tagSize), ct + n) == 1 else { return false }
            var end: Int32 = 0
            return EVP_CipherFinal_ex(c, ct + n, &end) == 1
        }()
        guard ok else { throw CryptoError.authenticationFailed }
        return n
    }

    public func seal(_ plaintext: [UInt8], aad: [UInt8]) throws -> [UInt8] {
        var out: [UInt8] = []
        try plaintext.withUnsafeBytes { p in try aad.withUnsafeBytes { try seal(p, aad: $0, appendingTo: &out) } }
        return out
    }

    public func open(_ sealed: [UInt8], aad: [UInt8]) throws -> [UInt8] {
        var out: [UInt8] = []
        try sealed.withUnsafeBytes { s in try aad.withUnsafeBytes { try open(s, aad: $0, into: &out) } }
        return out
    }
}
