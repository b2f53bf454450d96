import Foundation

/// A JSON value whose numbers keep their exact literal text, so money is never routed through a Double.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's literal text as it appeared (or as a `Decimal` printed it).
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// A number from a `Decimal`, written with its exact decimal digits.
    public static func decimal(_ value: Decimal) -> JSONValue { .number(value.description) }

    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let object) = self { return object }
        return nil
    }

    /// The value as a `Decimal`: a JSON number, or a string holding a decimal number.
    public var decimalValue: Decimal? {
        switch self {
        case .number(let text): return Decimal(string: text, locale: Locale(identifier: "en_US_POSIX"))
        case .string(let text): return JSONValue.parseDecimalString(text)
        default: return nil
        }
    }

    /// A short name of the value's type, for error messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    static func parseDecimalString(_ text: String) -> Decimal? {
        var parser = JSONParser(Array(text.utf8))
        guard case .number(let literal)? = try? parser.parseNumberOnly() else { return nil }
        return Decimal(string: literal, locale: Locale(identifier: "en_US_POSIX"))
    }
}

/// A JSON object that keeps its keys in order; small objects are searched linearly, which beats
/// hashing at the sizes records have.
public struct JSONObject: Sendable, Equatable {
    public var fields: [Field]

    public struct Field: Sendable, Equatable {
        public var key: String
        public var value: JSONValue
        public init(_ key: String, _ value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    public init(_ fields: [Field] = []) { self.fields = fields }

    public init(_ pairs: KeyValuePairs<String, JSONValue>) {
        self.fields = pairs.map { Field($0.key, $0.value) }
    }

    public subscript(key: String) -> JSONValue? {
        get { fields.first { $0.key == key }?.value }
        set {
            if let index = fields.firstIndex(where: { $0.key == key }) {
                if let newValue { fields[index].value = newValue } else { fields.remove(at: index) }
            } else if let newValue {
                fields.append(Field(key, newValue))
            }
        }
    }

    public var isEmpty: Bool { fields.isEmpty }
    public var keys: [String] { fields.map(\.key) }

    /// Sets `value` at a dotted path, creating nested objects: `a.b` = x gives `{"a": {"b": x}}`.
    public mutating func set(path: [String], to value: JSONValue) {
        guard let first = path.first else { return }
        if path.count == 1 {
            self[first] = value
            return
        }
        var child = self[first]?.objectValue ?? JSONObject()
        child.set(path: Array(path.dropFirst()), to: value)
        self[first] = .object(child)
    }

    /// The value at a dotted path, nil when any step is missing or not an object.
    public func value(at path: [String]) -> JSONValue? {
        guard let first = path.first, let value = self[first] else { return nil }
        if path.count == 1 { return value }
        return value.objectValue?.value(at: Array(path.dropFirst()))
    }
}

// MARK: - Writing

extension JSONValue {
    /// Compact JSON text.
    public var jsonText: String {
        var out = ""
        write(to: &out)
        return out
    }

    /// Compact JSON bytes.
    public var jsonBytes: [UInt8] { Array(jsonText.utf8) }

    func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let flag): out += flag ? "true" : "false"
        case .number(let text): out += text
        case .string(let text): JSONValue.writeString(text, to: &out)
        case .array(let values):
            out += "["
            for (index, value) in values.enumerated() {
                if index > 0 { out += "," }
                value.write(to: &out)
            }
            out += "]"
        case .object(let object): object.write(to: &out)
        }
    }

    static func writeString(_ text: String, to out: inout String) {
        out += "\""
        var plainStart = text.utf8.startIndex
        var index = plainStart
        let utf8 = text.utf8
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 {
                out += text[plainStart..<index]
                switch byte {
                case UInt8(ascii: "\""): out += "\\\""
                case UInt8(ascii: "\\"): out += "\\\\"
                case 0x0A: out += "\\n"
                case 0x0D: out += "\\r"
                case 0x09: out += "\\t"
                default:
                    let hex = String(byte, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                }
                plainStart = utf8.index(after: index)
            }
            index = utf8.index(after: index)
        }
        out += text[plainStart..<utf8.endIndex]
        out += "\""
    }
}

extension JSONObject {
    public var jsonText: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        out += "{"
        for (index, field) in fields.enumerated() {
            if index > 0 { out += "," }
            JSONValue.writeString(field.key, to: &out)
            out += ":"
            field.value.write(to: &out)
        }
        out += "}"
    }
}
