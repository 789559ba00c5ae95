/// FastCDC content-defined chunking with normalized chunking (Xia et al., 2016/2020).
///
/// The gear hash `h = (h << 1) + gear[byte]` depends only on the last 64 bytes,
/// and its high bits on the most bytes, so the masks select high bits. From
/// `min` to `avg` a cut needs `log2(avg) + 2` zero bits (`maskS`, harder), from
/// `avg` to `max` only `log2(avg) - 2` (`maskL`, easier): sizes cluster near `avg`.
/// Hashing restarts at `min` of every chunk with h = 0.
///
/// The chunker is a resumable state machine: `nextBoundary` may be called
/// with more bytes after it asked for them, and continues where it stopped,
/// so boundaries never depend on how the input was split into reads.
public struct FastCDC {
    public let profile: ChunkerProfile
    let gear: GearTable
    let maskS: UInt64
    let maskL: UInt64
    // Resumable state for the chunk being scanned.
    private var scanned = 0
    private var hash: UInt64 = 0

    public init(profile: ChunkerProfile, gear: GearTable) {
        self.profile = profile
        self.gear = gear
        let bits = profile.avg.trailingZeroBitCount
        maskS = FastCDC.topBits(bits + 2)
        maskL = FastCDC.topBits(Swift.max(1, bits - 2))
    }

    static func topBits(_ n: Int) -> UInt64 { n >= 64 ? ~0 : ~(~UInt64(0) >> UInt64(n)) }

    /// Given the bytes of the current chunk from its start (`count` bytes
    /// available), returns the chunk's length, or nil if more bytes are
    /// needed. With `eof`, a chunk is always returned for a non-empty input.
    public mutating func nextBoundary(_ p: UnsafePointer<UInt8>, count n: Int, eof: Bool) -> Int? {
        let minSize = profile.min, avgSize = profile.avg, maxSize = profile.max
        if n >= maxSize || eof {
            if n <= minSize { return finish(Swift.min(n, maxSize)) }
        } else if n <= minSize {
            return nil
        }
        var i = Swift.max(scanned, minSize)
        var h = hash
        let g = gear.words
        let normalEnd = Swift.min(n, avgSize)
        let end = Swift.min(n, maxSize)
        let ms = maskS, ml = maskL
        while i < normalEnd {
            h = (h &<< 1) &+ g[Int(p[i])]
            i &+= 1
            if h & ms == 0 { return finish(i) }
        }
        while i < end {
            h = (h &<< 1) &+ g[Int(p[i])]
            i &+= 1
            if h & ml == 0 { return finish(i) }
        }
        if end == maxSize || eof { return finish(end) }
        scanned = i
        hash = h
        return nil
    }

    /// Forgets a partly scanned chunk (call before a new input).
    public mutating func reset() { scanned = 0; hash = 0 }

    @inline(__always)
    private mutating func finish(_ length: Int) -> Int {
        scanned = 0
        hash = 0
        return length
    }

    /// Cuts a whole buffer at once (for tests and small inputs): the chunk lengths.
    public static func chunkLengths(_ data: [UInt8], profile: ChunkerProfile, gear: GearTable) -> [Int] {
        var c = FastCDC(profile: profile, gear: gear)
        var out: [Int] = []
        data.withUnsafeBufferPointer { buf in
            var pos = 0
            while pos < buf.count {
                let len = c.nextBoundary(buf.baseAddress! + pos, count: buf.count - pos, eof: true)!
                out.append(len)
                pos += len
            }
        }
        return out
    }
}
