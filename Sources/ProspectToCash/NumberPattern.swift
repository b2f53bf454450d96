/// A regular expression a whole text must match: the number-sequence and person-account patterns
/// of the mapping configuration, checked for every order and quote event. The shapes deployments
/// write for them (a literal prefix, then digits: `C\d+`, `^SO-\d{6}$`, `F[0-9]*`) are matched by
/// hand, byte by byte; anything else, and any text that is not ASCII, by Swift's `Regex`, whose
/// answer the hand-made match always agrees with (the tests compare them). A class: one retain
/// where a struct holding a `Regex` would copy field by field.
final class NumberPattern: Sendable {
    /// The pattern as configured.
    let source: String
    // Regex is not Sendable; it is built once and only read.
    nonisolated(unsafe) private let regex: Regex<AnyRegexOutput>
    /// The literal prefix and the digit count bounds, when the pattern has that shape.
    private let prefix: [UInt8]?
    private let minimumDigits: Int
    private let maximumDigits: Int

    init(_ source: String) throws {
        self.source = source
        regex = try Regex(source)
        (prefix, minimumDigits, maximumDigits) = Self.shape(of: Array(source.utf8)) ?? (nil, 0, 0)
    }

    /// Whether all of `text` matches.
    func matches(_ text: String) -> Bool {
        if let prefix {
            var text = text
            if let answer = text.withUTF8({ match($0, prefix: prefix) }) { return answer }
        }
        return (try? regex.wholeMatch(in: text)) != nil
    }

    /// The hand-made match; nil when the text is not ASCII (`\d` also matches other scripts' digits).
    private func match(_ text: UnsafeBufferPointer<UInt8>, prefix: [UInt8]) -> Bool? {
        if text.contains(where: { $0 >= 0x80 }) { return nil }
        guard text.count >= prefix.count, text.starts(with: prefix) else { return false }
        let digits = text.count - prefix.count
        guard digits >= minimumDigits && digits <= maximumDigits else { return false }
        return text[prefix.count...].allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// (prefix, fewest digits, most digits) when `pattern` is `^`? literal `\d` or `[0-9]`, a
    /// quantifier (`+`, `*`, `{n}`, `{n,}`, `{n,m}` or none), `$`?; else nil.
    private static func shape(of pattern: [UInt8]) -> ([UInt8], Int, Int)? {
        var index = 0
        if pattern.first == UInt8(ascii: "^") { index = 1 }
        var prefix: [UInt8] = []
        // The literal: letters, digits and a few punctuation marks, which may be escaped.
        while index < pattern.count {
            let byte = pattern[index]
            if byte == UInt8(ascii: "\\"), index + 1 < pattern.count {
                let next = pattern[index + 1]
                if next == UInt8(ascii: "d") { break }
                guard Self.escapable.contains(next) else { return nil }
                prefix.append(next)
                index += 2
            } else if byte == UInt8(ascii: "[") {
                break
            } else if Self.isLiteral(byte) {
                prefix.append(byte)
                index += 1
            } else {
                return nil
            }
        }
        // The digit class.
        let rest = pattern[index...]
        if rest.starts(with: "\\d".utf8) {
            index += 2
        } else if rest.starts(with: "[0-9]".utf8) {
            index += 5
        } else {
            return nil
        }
        // The quantifier.
        var bounds = (1, 1)
        if index < pattern.count {
            switch pattern[index] {
            case UInt8(ascii: "+"):
                bounds = (1, Int.max)
                index += 1
            case UInt8(ascii: "*"):
                bounds = (0, Int.max)
                index += 1
            case UInt8(ascii: "{"):
                guard let close = pattern[index...].firstIndex(of: UInt8(ascii: "}")) else { return nil }
                let inside = String(decoding: pattern[(index + 1)..<close], as: UTF8.self)
                let parts = inside.split(separator: ",", omittingEmptySubsequences: false)
                guard let low = Int(parts[0]), parts.count <= 2 else { return nil }
                if parts.count == 1 {
                    bounds = (low, low)
                } else if parts[1].isEmpty {
                    bounds = (low, Int.max)
                } else {
                    guard let high = Int(parts[1]), high >= low else { return nil }
                    bounds = (low, high)
                }
                index = close + 1
            default: break
            }
        }
        if index < pattern.count, pattern[index] == UInt8(ascii: "$") { index += 1 }
        guard index == pattern.count else { return nil }
        return (prefix, bounds.0, bounds.1)
    }

    private static func isLiteral(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
            || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
            || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: ":")
            || byte == UInt8(ascii: "#") || byte == UInt8(ascii: "@")
    }

    /// Punctuation that stands for itself after a backslash.
    private static let escapable: Set<UInt8> = Set("-_/.:#@+*?()[]{}|^$\\".utf8)
}
