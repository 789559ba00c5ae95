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
    public mutating func rawID() throws -> ID { try need(32); defer { offset += 32 }; return ID(bytes: bytes.baseAddress! + offset) }
    /// 32 bytes read as the kind of id the format says stands here.
    @inlinable public mutating func id<I: ContentID>(_: I.Type = I.self) throws -> I { I(digest: try rawID()) }
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
