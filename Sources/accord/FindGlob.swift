/// A shell-style glob over raw path bytes, for `accord find`: `*` any bytes
/// but "/", `**` any bytes, "/" included, `?` one byte but "/", `[a-z0-9]`,
/// `[!…]` or `[^…]` a set (a "]" first is a member), `\x` the byte x. Matching
/// walks the pattern once over the set of reachable text positions: time
/// pattern × path, whatever the pattern, so a hostile path cannot make it slow.
struct FindGlob {
    enum Token: Equatable {
        case byte(UInt8)
        case one
        case star
        case globstar
        /// Inclusive ranges; `negated` matches bytes outside them (never "/").
        case set([ClosedRange<UInt8>], negated: Bool)
    }

    let tokens: [Token]
    let ignoreCase: Bool
    /// The pattern names whole paths (it has a "/"), else last components.
    let wholePath: Bool

    struct Invalid: Error, CustomStringConvertible { var description: String }

    init(_ pattern: String, ignoreCase: Bool = false) throws {
        let p = Array(pattern.utf8)
        guard !p.isEmpty else { throw Invalid(description: "the pattern is empty: give a name or path glob, e.g. '*.sql' or '/opt/**/config.yaml'") }
        self.ignoreCase = ignoreCase
        wholePath = p.contains(0x2f)
        var out: [Token] = []
        // A relative pattern with a "/" matches the end of a path, at a component boundary.
        if wholePath && p.first != 0x2f { out = [.globstar, .byte(0x2f)] }
        var i = 0
        while i < p.count {
            let c = p[i]
            switch c {
            case UInt8(ascii: "*"):
                if i + 1 < p.count, p[i + 1] == c { out.append(.globstar); i += 2 } else { out.append(.star); i += 1 }
                while i < p.count, p[i] == c { i += 1 }   // *** is **
            case UInt8(ascii: "?"): out.append(.one); i += 1
            case UInt8(ascii: "\\"):
                guard i + 1 < p.count else { throw Invalid(description: "the pattern \(pattern) ends in a lone backslash: write \\\\ for a backslash") }
                out.append(.byte(p[i + 1])); i += 2
            case UInt8(ascii: "["):
                var j = i + 1, negated = false, ranges: [ClosedRange<UInt8>] = []
                if j < p.count, p[j] == UInt8(ascii: "!") || p[j] == UInt8(ascii: "^") { negated = true; j += 1 }
                var first = true
                while j < p.count, first || p[j] != UInt8(ascii: "]") {
                    first = false
                    var lo = p[j]
                    if lo == UInt8(ascii: "\\"), j + 1 < p.count { j += 1; lo = p[j] }
                    j += 1
                    if j + 1 < p.count, p[j] == UInt8(ascii: "-"), p[j + 1] != UInt8(ascii: "]") {
                        let hi = p[j + 1]
                        guard lo <= hi else { throw Invalid(description: "the pattern \(pattern) has a backwards range [\(Character(Unicode.Scalar(lo)))-\(Character(Unicode.Scalar(hi)))]") }
                        ranges.append(lo...hi); j += 2
                    } else {
                        ranges.append(lo...lo)
                    }
                }
                guard j < p.count else { throw Invalid(description: "the pattern \(pattern) has a [ without its ]: write \\[ for a bracket") }
                out.append(.set(ranges, negated: negated)); i = j + 1
            default: out.append(.byte(c)); i += 1
            }
        }
        tokens = out
    }

    /// Does `text` (a whole path or one name, as `wholePath` says) match?
    func matches<C: RandomAccessCollection>(_ text: C) -> Bool where C.Element == UInt8, C.Index == Int {
        let n = text.count, base = text.startIndex
        var reach = [Bool](repeating: false, count: n + 1), next = reach
        reach[0] = true
        for t in tokens {
            for k in 0...n { next[k] = false }
            var any = false
            switch t {
            case .star, .globstar:
                var on = false
                for k in 0...n {
                    if reach[k] { on = true }
                    next[k] = on
                    any = any || on
                    if k < n, t == .star, text[base + k] == 0x2f { on = false }
                }
            default:
                for k in 0..<n where reach[k] && accepts(t, text[base + k]) { next[k + 1] = true; any = true }
            }
            swap(&reach, &next)
            if !any { return false }
        }
        return reach[n]
    }

    private func accepts(_ t: Token, _ b: UInt8) -> Bool {
        switch t {
        case .byte(let c): return c == b || (ignoreCase && Self.fold(c) == Self.fold(b))
        case .one: return b != 0x2f
        case .set(let ranges, let negated):
            guard b != 0x2f else { return false }
            let hit = ranges.contains { $0.contains(b) || (ignoreCase && ($0.contains(Self.fold(b)) || $0.contains(Self.upper(b)))) }
            return hit != negated
        case .star, .globstar: return false
        }
    }

    private static func fold(_ b: UInt8) -> UInt8 { (0x41...0x5a).contains(b) ? b + 0x20 : b }
    private static func upper(_ b: UInt8) -> UInt8 { (0x61...0x7a).contains(b) ? b - 0x20 : b }
}
