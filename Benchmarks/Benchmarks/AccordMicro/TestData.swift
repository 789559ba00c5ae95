import AccordCore

/// The inputs every benchmark reads: 64 MiB of each kind, the same bytes on
/// every run and machine (fixed seed), built once per process on first use.
enum DataKind: String, CaseIterable {
    /// Incompressible: what already-compressed files and media look like.
    case random
    /// `pg_dump --inserts` style SQL: compressible, the `dump` profile's food.
    case sql

    var bytes: [UInt8] {
        switch self {
        case .random: return TestData.random
        case .sql: return TestData.sql
        }
    }
}

enum TestData {
    static let size = 64 << 20
    static let seed: UInt64 = 23

    static let random: [UInt8] = makeRandom(count: size, seed: seed)
    static let sql: [UInt8] = makeSQL(count: size, seed: seed)

    /// The gear table every chunker benchmark uses (a repository's comes from its config).
    static let gear = GearTable(seed: seed)

    static func makeRandom(count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { p in
            let words = p.bindMemory(to: UInt64.self)
            for i in 0..<words.count { words[i] = rng.next() }
        }
        return out
    }

    /// Lines such as
    ///
    ///     INSERT INTO public.orders (id, customer_id, status, total_cents, currency, created_at, city, note) VALUES (1000001, 48213, 'shipped', 129900, 'EUR', '2024-07-14 09:12:33.512+00', 'Rotterdam', 'leave at the back door');
    ///
    /// with increasing ids, random customers, amounts and timestamps, words
    /// from small vocabularies and a NULL note one time in three, cut at `count` bytes.
    static func makeSQL(count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed ^ 0x5EED_0F_5C1)
        let statuses = ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"]
        let currencies = ["EUR", "USD", "GBP", "SEK", "CHF"]
        let cities = ["Rotterdam", "Lyon", "Porto", "Gdansk", "Malmo", "Leipzig", "Bilbao", "Turku", "Graz",
                      "Ghent", "Brno", "Cork", "Aarhus", "Bergen", "Split", "Kaunas"]
        let words = ["leave", "at", "the", "back", "door", "ring", "twice", "gift", "wrap", "please", "fragile",
                     "call", "before", "delivery", "no", "invoice", "in", "box", "second", "floor", "office",
                     "hours", "only", "customer", "requested", "express", "shipping", "replacement", "for",
                     "order", "damaged", "item", "returned", "partial", "refund", "address", "changed", "by",
                     "support", "ticket", "priority", "weekend", "neighbour", "accepts", "parcel", "code"]
        var out: [UInt8] = []
        out.reserveCapacity(count + 512)
        var id = 1_000_000
        var time = 1_704_067_200   // 2024-01-01 00:00:00 UTC
        while out.count < count {
            id += 1
            time += Int(rng.next() % 97)
            let customer = 10_000 + Int(rng.next() % 90_000)
            let cents = 99 + Int(rng.next() % 250_000)
            var line = "INSERT INTO public.orders (id, customer_id, status, total_cents, currency, created_at, city, note) VALUES ("
            line += "\(id), \(customer), '\(statuses[Int(rng.next() % 6)])', \(cents), '\(currencies[Int(rng.next() % 5)])', "
            line += "'\(timestamp(time)).\(pad(Int(rng.next() % 1000), 3))+00', '\(cities[Int(rng.next() % 16)])', "
            if rng.next() % 3 == 0 {
                line += "NULL"
            } else {
                let n = 2 + Int(rng.next() % 7)
                line += "'" + (0..<n).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined(separator: " ") + "'"
            }
            line += ");\n"
            out.append(contentsOf: line.utf8)
        }
        out.removeLast(out.count - count)
        return out
    }

    /// `YYYY-MM-DD hh:mm:ss` of a Unix time (UTC), civil-from-days (H. Hinnant).
    static func timestamp(_ t: Int) -> String {
        let days = t / 86_400, secs = t % 86_400
        let z = days + 719_468
        let era = z / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        return "\(y)-\(pad(m, 2))-\(pad(d, 2)) \(pad(secs / 3600, 2)):\(pad(secs / 60 % 60, 2)):\(pad(secs % 60, 2))"
    }

    static func pad(_ v: Int, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and the same sequence everywhere.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func nextID() -> ID { ID(w0: next(), w1: next(), w2: next(), w3: next()) }
}
