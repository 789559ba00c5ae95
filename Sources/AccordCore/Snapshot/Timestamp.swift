import Foundation
import AccordRuntime

/// A wall-clock instant with nanoseconds, written as RFC 3339 UTC.
public struct Timestamp: Comparable, Sendable, Codable {
    public var seconds: Int64
    public var nanoseconds: Int64

    public init(seconds: Int64, nanoseconds: Int64) { self.seconds = seconds; self.nanoseconds = nanoseconds }

    public static func now() -> Timestamp { let n = Sys.now(); return Timestamp(seconds: n.sec, nanoseconds: n.nsec) }

    public var rfc3339: String {
        var t = time_t(seconds)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func pad(_ v: Int32, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
        let frac = String(nanoseconds)
        let fracPadded = String(repeating: "0", count: 9 - frac.count) + frac
        return "\(pad(tmv.tm_year + 1900, 4))-\(pad(tmv.tm_mon + 1, 2))-\(pad(tmv.tm_mday, 2))T\(pad(tmv.tm_hour, 2)):\(pad(tmv.tm_min, 2)):\(pad(tmv.tm_sec, 2)).\(fracPadded)Z"
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
    public init?(rfc3339 s: String) {
        let u = Array(s.utf8)
        guard u.count >= 20, u.last == UInt8(ascii: "Z") else { return nil }
        func num(_ a: Int, _ b: Int) -> Int32? { Int32(String(decoding: u[a..<b], as: UTF8.self)) }
        guard let y = num(0, 4), let mo = num(5, 7), let d = num(8, 10), let h = num(11, 13), let mi = num(14, 16), let se = num(17, 19) else { return nil }
        var tmv = tm()
        tmv.tm_year = y - 1900; tmv.tm_mon = mo - 1; tmv.tm_mday = d; tmv.tm_hour = h; tmv.tm_min = mi; tmv.tm_sec = se
        seconds = Int64(timegm(&tmv))
        var ns: Int64 = 0
        if u.count > 21 && u[19] == UInt8(ascii: ".") {
            let digits = u[20..<(u.count - 1)]
            var scale: Int64 = 100_000_000
            for c in digits.prefix(9) { guard c >= 48 && c <= 57 else { return nil }; ns += Int64(c - 48) * scale; scale /= 10 }
        }
        nanoseconds = ns
    }

    public func encode(to encoder: Encoder) throws { var c = encoder.singleValueContainer(); try c.encode(rfc3339) }
    public init(from decoder: Decoder) throws {
        let s = try decoder.singleValueContainer().decode(String.self)
        guard let t = Timestamp(rfc3339: s) else { throw DecodeError.invalid("bad time \(s)", offset: 0) }
        self = t
    }

    public static func < (a: Timestamp, b: Timestamp) -> Bool { (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds) }

    /// "2026-11-27 09:30:00" in UTC, for tables.
    public var short: String {
        let s = rfc3339
        return String(s.prefix(19)).replacingOccurrences(of: "T", with: " ")
    }
}
