import Foundation

/// Structured log lines: one JSON object per line on standard error. Never pass payloads or credentials.
public struct Log: Sendable {
    /// Fields every line of this logger carries, e.g. the component.
    public var fields: [(String, LogValue)]
    /// Lines below this level are dropped. Default: `P2C_LOG_LEVEL`, else `.info`.
    public var minimumLevel: Level

    /// The level `P2C_LOG_LEVEL` names (`debug`, `info`, `warning` or `error`), `.info` when it is
    /// not set, nil when it names something else (the program refuses to start).
    public static let configuredLevel: Level? = {
        guard let text = ProcessInfo.processInfo.environment["P2C_LOG_LEVEL"] else { return .info }
        return Level(rawValue: text.lowercased())
    }()

    public init(_ fields: [(String, LogValue)] = [], minimumLevel: Level = Log.configuredLevel ?? .info) {
        self.fields = fields
        self.minimumLevel = minimumLevel
    }

    public enum Level: String, Sendable, Comparable, CaseIterable {
        case debug, info, warning, error

        private var rank: Int { Self.allCases.firstIndex(of: self)! }
        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rank < rhs.rank }
    }

    public func debug(_ message: String, _ extra: [(String, LogValue)] = []) { write(.debug, message, extra) }
    public func info(_ message: String, _ extra: [(String, LogValue)] = []) { write(.info, message, extra) }
    public func warning(_ message: String, _ extra: [(String, LogValue)] = []) { write(.warning, message, extra) }
    public func error(_ message: String, _ extra: [(String, LogValue)] = []) { write(.error, message, extra) }

    /// A logger with more fields.
    public func with(_ extra: [(String, LogValue)]) -> Log {
        Log(fields + extra, minimumLevel: minimumLevel)
    }

    /// The JSON line for a message, without its newline.
    public func line(_ level: Level, _ message: String, _ extra: [(String, LogValue)], time: Date = Date()) -> String {
        var out = "{\"time\":\"\(Self.timestamp(time))\",\"level\":\"\(level.rawValue)\",\"msg\":"
        JSON.appendString(message, to: &out)
        for (key, value) in fields + extra {
            out += ","
            JSON.appendString(key, to: &out)
            out += ":"
            value.append(to: &out)
        }
        return out + "}"
    }

    private func write(_ level: Level, _ message: String, _ extra: [(String, LogValue)]) {
        guard level >= minimumLevel else { return }
        FileHandle.standardError.write(Data((line(level, message, extra) + "\n").utf8))
    }

    private static func timestamp(_ date: Date) -> String {
        date.formatted(
            .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

/// A log field value, written as the matching JSON type.
public enum LogValue: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }

    func append(to out: inout String) {
        switch self {
        case .string(let text): JSON.appendString(text, to: &out)
        case .int(let number): out += String(number)
        case .double(let number): out += number.isFinite ? String(number) : "null"
        case .bool(let flag): out += flag ? "true" : "false"
        }
    }
}

/// Small JSON text helpers shared by logs and command output.
public enum JSON {
    /// Appends `text` as a quoted, escaped JSON string.
    public static func appendString(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
