/// Little-endian integers and LEB128 varints written to a growing byte array.
public struct ByteWriter {
    public var bytes: [UInt8] = []
    public init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    @inline(__always) public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    /// Any kind of id: the codecs write the 32 bytes whatever they name.
    @inlinable public mutating func id<I: ContentID>(_ v: I) {
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

extension Array where Element == UInt8 {
    /// Makes the array `n` bytes long for a buffer that is about to be
    /// overwritten whole (a read, inflate or deflate into it): only bytes
    /// beyond the current length are zero-filled, so a reused buffer costs no
    /// memset per blob.
    @inlinable public mutating func resizeForOverwrite(_ n: Int) {
        if count < n { append(contentsOf: repeatElement(0, count: n - count)) } else if count > n { removeLast(count - n) }
    }
}
