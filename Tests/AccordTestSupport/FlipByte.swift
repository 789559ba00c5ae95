import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct FileDamageError: Error, CustomStringConvertible {
    public var description: String
}

/// Damages a file on purpose: XORs the byte at `offset` with `xor` (in place).
/// Throws if the file cannot be opened or has no byte there. Shared by the
/// tests that corrupt a pack, a manifest or a chunk list.
public func flipByte(inFile path: String, at offset: Int64, xor: UInt8 = 0x5a) throws {
    let fd = open(path, O_RDWR)
    guard fd >= 0 else { throw FileDamageError(description: "cannot open \(path) to damage it: errno \(errno)") }
    defer { close(fd) }
    var byte: UInt8 = 0
    guard pread(fd, &byte, 1, off_t(offset)) == 1 else { throw FileDamageError(description: "\(path) has no byte at \(offset)") }
    byte ^= xor
    guard pwrite(fd, &byte, 1, off_t(offset)) == 1 else { throw FileDamageError(description: "cannot write \(path) at \(offset): errno \(errno)") }
}
