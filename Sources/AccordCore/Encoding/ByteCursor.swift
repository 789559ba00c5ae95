/// Little-endian integers and LEB128 varints written to a growing byte array.
public struct ByteWriter {
    public var bytes: [UInt8] = []
    public init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    @inline(__always) public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func id(_ v: ID) {
        let n = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: 32))
        bytes.withUnsafeMutableBytes { v.write(to: $0.baseAddress! + n) }
    }
    public mutating func raw<C: Collection>(_ v: C) where C.Element == UInt8 { bytes.append(contentsOf: v) }

    /// Unsigned LEB128: 7 bits a byte, low groups first, high bit = more follows.
    @inline(__always) public mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(truncatingIfNeeded: v) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    /// Signed values are zigzag-mapped first: 0, -1, 1, -2 … → 0, 1, 2, 3 ….
    public mutating func zigzag(_ v: Int64) { varint(UInt64(bitPattern: (v << 1) ^ (v >> 63))) }
    /// A byte string: varint length, then the bytes.
    public mutating func string<C: Collection>(_ v: C) where C.Element == UInt8 { varint(UInt64(v.count)); bytes.append(contentsOf: v) }
}

/// Reads what `ByteWriter` wrote. Every read checks the remaining length and
/// throws `DecodeError.truncated` rather than reading past the end, so
/// decoders are safe on any input.
public struct ByteReader {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset: Int

    public init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) { self.bytes = bytes; self.offset = offset }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset >= bytes.count }

    @inline(__always) mutating func need(_ n: Int) throws {
        if n < 0 || n > bytes.count - offset { throw DecodeError.truncated(offset: offset) }
    }
    public mutating func u8() throws -> UInt8 { try need(1); defer { offset += 1 }; return bytes[offset] }
    public mutating func u16() throws -> UInt16 { try need(2); defer { offset += 2 }; return UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
    public mutating func u32() throws -> UInt32 { try need(4); defer { offset += 4 }; return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    public mutating func u64() throws -> UInt64 { try need(8); defer { offset += 8 }; return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
    public mutating func id() throws -> ID { try need(32); defer { offset += 32 }; return ID(bytes: bytes.baseAddress! + offset) }
    public mutating func raw(_ n: Int) throws -> [UInt8] { try need(n); defer { offset += n }; return Array(bytes[offset..<offset + n]) }
    public mutating func skip(_ n: Int) throws { try need(n); offset += n }

    public mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try u8()
            if shift == 63 && b > 1 { throw DecodeError.invalid("varint overflows 64 bits", offset: offset) }
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw DecodeError.invalid("varint too long", offset: offset) }
        }
    }
    public mutating func zigzag() throws -> Int64 {
        let v = try varint()
        return Int64(bitPattern: (v >> 1) ^ (0 &- (v & 1)))
    }
    /// A varint that must fit `limit`, e.g. a length that must not exceed the input.
    public mutating func count(max limit: Int) throws -> Int {
        let v = try varint()
        if v > UInt64(limit) { throw DecodeError.invalid("length \(v) exceeds \(limit)", offset: offset) }
        return Int(v)
    }
    public mutating func string(max limit: Int = 1 << 20) throws -> [UInt8] {
        let n = try count(max: Swift.min(limit, remaining))
        return try raw(n)
    }
}

public enum DecodeError: Error, CustomStringConvertible, Equatable {
    case truncated(offset: Int)
    case invalid(String, offset: Int)
    public var description: String {
        switch self {
        case .truncated(let o): return "data ends early (at byte \(o))"
        case .invalid(let what, let o): return "\(what) (at byte \(o))"
        }
    }
}

extension Array where Element == UInt8 {
    /// Makes the array `n` bytes long for a buffer that is about to be
    /// overwritten whole (a read, inflate or deflate into it): only bytes
    /// beyond the current length are zero-filled, so a reused buffer costs no
    /// memset per blob.
    @inlinable public mutating func resizeForOverwrite(_ n: Int) {
        if count < n { append(contentsOf: repeatElement(0, count: n - count)) } else if count > n { removeLast(count - n) }
    }
}
