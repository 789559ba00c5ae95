/// `KEY=VALUE` lines (what the scripts in scripts/testenv print) as a
/// dictionary; lines without "=" are ignored, the value keeps any later "=".
public func parseEnvLines(_ text: String) -> [String: String] {
    var env: [String: String] = [:]
    for line in text.split(whereSeparator: \.isNewline) {
        guard let eq = line.firstIndex(of: "=") else { continue }
        env[String(line[..<eq])] = String(line[line.index(after: eq)...])
    }
    return env
}
