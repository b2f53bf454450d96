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

    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    /// A key value as text: a string, or a number's literal.
    public var keyText: String? {
        switch self {
        case .string(let text), .number(let text): text
        default: nil
        }
    }

    public var objectValue: JSONObject? {
        if case .object(let object) = self { return object }
        return nil
    }

    /// The value as an exact decimal: a JSON number, or a string holding a decimal number.
    public var decimalNumber: DecimalNumber? {
        switch self {
        case .number(let text), .string(let text): DecimalNumber(text)
        default: nil
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
}

/// A JSON object that keeps its keys in order; small objects are searched linearly, which beats
/// hashing at the sizes records have.
public struct JSONObject: Sendable, Equatable {
    public var fields: [Field]

    /// One member. A member read from a Kafka value keeps its value as the validated bytes of the
    /// input until something asks for it, so copying it to the output never decodes or re-encodes it.
    public struct Field: Sendable, Equatable {
        public var key: String
        var storage: Storage

        enum Storage: Sendable {
            case parsed(JSONValue)
            case raw(RawJSON)
        }

        public init(_ key: String, _ value: JSONValue) {
            self.key = key
            self.storage = .parsed(value)
        }

        init(key: String, storage: Storage) {
            self.key = key
            self.storage = storage
        }

        public var value: JSONValue {
            get {
                switch storage {
                case .parsed(let value): value
                case .raw(let raw): raw.value
                }
            }
            set { storage = .parsed(newValue) }
        }

        /// Whether the value is null, without decoding it.
        var isNull: Bool {
            switch storage {
            case .parsed(let value): value == .null
            case .raw(let raw): raw.bytes[Int(raw.start)] == UInt8(ascii: "n")
            }
        }

        /// Whether the value is a string, without decoding it.
        var isString: Bool {
            switch storage {
            case .parsed(.string): true
            case .parsed: false
            case .raw(let raw): raw.bytes[Int(raw.start)] == UInt8(ascii: "\"")
            }
        }

        /// Whether the value is an object or an array, without decoding it.
        var isContainer: Bool {
            switch storage {
            case .parsed(.object), .parsed(.array): true
            case .parsed: false
            case .raw(let raw): raw.isContainer
            }
        }

        public static func == (lhs: Field, rhs: Field) -> Bool {
            lhs.key == rhs.key && lhs.value == rhs.value
        }
    }

    public init(_ fields: [Field] = []) { self.fields = fields }

    public init(_ pairs: KeyValuePairs<String, JSONValue>) {
        self.fields = pairs.map { Field($0.key, $0.value) }
    }

    public subscript(key: String) -> JSONValue? {
        get { index(of: key).map { fields[$0].value } }
        set {
            if let index = index(of: key) {
                if let newValue { fields[index].value = newValue } else { fields.remove(at: index) }
            } else if let newValue {
                fields.append(Field(key, newValue))
            }
        }
    }

    /// Where `key` is; lengths are compared first, which settles most mismatches without a string compare.
    @inline(__always)
    func index(of key: String) -> Int? {
        let length = key.utf8.count
        return fields.firstIndex { $0.key.utf8.count == length && $0.key == key }
    }

    /// Whether `key` is present and not null (a value kept as input bytes is not decoded to tell).
    func hasValue(_ key: String) -> Bool { index(of: key).map { !fields[$0].isNull } ?? false }

    /// Whether `key` holds a string (likewise without decoding).
    func hasString(_ key: String) -> Bool { index(of: key).map { fields[$0].isString } ?? false }

    public var isEmpty: Bool { fields.isEmpty }
    public var keys: [String] { fields.map(\.key) }

    /// Sets `value` at a dotted path, creating nested objects: `a.b` = x gives `{"a": {"b": x}}`.
    public mutating func set(path: [String], to value: JSONValue) { set(path: path[...], to: value) }

    mutating func set(path: ArraySlice<String>, to value: JSONValue) {
        guard let first = path.first else { return }
        if path.count == 1 {
            self[first] = value
            return
        }
        var child = self[first]?.objectValue ?? JSONObject()
        child.set(path: path.dropFirst(), to: value)
        self[first] = .object(child)
    }

    /// The value at a dotted path, nil when any step is missing or not an object.
    public func value(at path: [String]) -> JSONValue? { value(at: path[...]) }

    func value(at path: ArraySlice<String>) -> JSONValue? {
        guard let first = path.first, let index = index(of: first) else { return nil }
        if path.count == 1 { return fields[index].value }
        // A lookup kept as input bytes: the field inside is found there, the lookup not decoded.
        if path.count == 2, case .raw(let raw) = fields[index].storage, raw.isObject {
            return raw.member(named: path[path.startIndex + 1])
        }
        return fields[index].value.objectValue?.value(at: path.dropFirst())
    }
}

// MARK: - Writing

/// Writes compact JSON straight into a growable byte buffer of its own (no String building on
/// the way, no `Array` append path per piece); `finish()` hands the bytes over as an array.
struct JSONWriter: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private var count = 0
    private var capacity: Int

    init(capacity: Int = 1024) {
        self.capacity = max(capacity, 16)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// The bytes written.
    consuming func finish() -> [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }

    @inline(__always)
    private mutating func reserve(_ extra: Int) {
        guard count + extra > capacity else { return }
        capacity = max(capacity * 2, count + extra)
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        grown.update(from: base, count: count)
        base.deallocate()
        base = grown
    }

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    @inline(__always)
    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
        reserve(bytes.count)
        (base + count).update(from: source, count: bytes.count)
        count += bytes.count
    }

    /// A comma unless the object or array being written has just been opened.
    @inline(__always)
    private mutating func separate() {
        if count > 0 && base[count - 1] != UInt8(ascii: "{") && base[count - 1] != UInt8(ascii: "[") {
            append(UInt8(ascii: ","))
        }
    }

    mutating func write(_ value: JSONValue) {
        switch value {
        case .null: write(raw: "null")
        case .bool(let flag): flag ? write(raw: "true") : write(raw: "false")
        case .number(let text): write(raw: text)
        case .string(let text): write(string: text)
        case .array(let values):
            append(UInt8(ascii: "["))
            for value in values {
                separate()
                write(value)
            }
            append(UInt8(ascii: "]"))
        case .object(let object): write(object)
        }
    }

    mutating func write(_ object: JSONObject) {
        append(UInt8(ascii: "{"))
        for field in object.fields { member(field) }
        append(UInt8(ascii: "}"))
    }

    /// A member of the object being written: a comma unless it is the first, then `prefix`
    /// (`"key":`) and the value's bytes as they are.
    @inline(__always)
    mutating func member(_ prefix: UnsafeBufferPointer<UInt8>, raw value: UnsafeBufferPointer<UInt8>) {
        separate()
        reserve(prefix.count + value.count)
        append(prefix)
        append(value)
    }

    /// A member of the object being written, with a value to encode.
    mutating func member(_ prefix: UnsafeBufferPointer<UInt8>, _ value: JSONValue) {
        separate()
        append(prefix)
        write(value)
    }

    /// A member of the object being written, from another object.
    mutating func member(_ field: JSONObject.Field) {
        separate()
        write(string: field.key)
        append(UInt8(ascii: ":"))
        switch field.storage {
        case .parsed(let value): write(value)
        case .raw(let raw): write(raw)
        }
    }

    mutating func write(_ raw: RawJSON) {
        raw.bytes.withUnsafeBufferPointer { append(UnsafeBufferPointer(rebasing: $0[Int(raw.start)..<Int(raw.end)])) }
    }

    private mutating func write(raw text: String) {
        var text = text
        text.withUTF8 { append($0) }
    }

    mutating func write(string text: String) {
        var text = text
        text.withUTF8 { write(string: $0) }
    }

    /// A string literal of the UTF-8 `utf8`: plain runs are copied whole, found eight bytes at a time.
    mutating func write(string utf8: UnsafeBufferPointer<UInt8>) {
        reserve(utf8.count + 2)
        append(UInt8(ascii: "\""))
        guard let base = utf8.baseAddress else {
            append(UInt8(ascii: "\""))
            return
        }
        var plainStart = 0
        var index = 0
        while true {
            index = JSONParser.plainEnd(base, utf8.count, from: index)
            guard index < utf8.count else { break }
            let byte = utf8[index]
            // Non-ASCII bytes are written as they are; only quotes, backslashes and controls are escaped.
            if byte >= 0x80 {
                index += 1
                continue
            }
            append(UnsafeBufferPointer(rebasing: utf8[plainStart..<index]))
            switch byte {
            case UInt8(ascii: "\""): write(raw: "\\\"")
            case UInt8(ascii: "\\"): write(raw: "\\\\")
            case 0x0A: write(raw: "\\n")
            case 0x0D: write(raw: "\\r")
            case 0x09: write(raw: "\\t")
            default:
                let hex = Array("0123456789abcdef".utf8)
                write(raw: "\\u00")
                append(hex[Int(byte >> 4)])
                append(hex[Int(byte & 0xF)])
            }
            index += 1
            plainStart = index
        }
        append(UnsafeBufferPointer(rebasing: utf8[plainStart...]))
        append(UInt8(ascii: "\""))
    }
}

extension JSONValue {
    /// Compact JSON text.
    public var jsonText: String { String(decoding: jsonBytes, as: UTF8.self) }

    /// Compact JSON bytes.
    public var jsonBytes: [UInt8] {
        var writer = JSONWriter()
        writer.write(self)
        return writer.finish()
    }
}

extension JSONObject {
    /// Compact JSON text.
    public var jsonText: String { String(decoding: jsonBytes, as: UTF8.self) }

    /// Compact JSON bytes.
    public var jsonBytes: [UInt8] {
        var writer = JSONWriter(capacity: 64 + fields.count * 48)
        writer.write(self)
        return writer.finish()
    }
}

/// A validated JSON value kept as a range of the bytes it was read from (shared, not copied).
struct RawJSON: Sendable {
    let bytes: [UInt8]
    let start: Int32
    let end: Int32
    /// A string literal without escapes: its text is the bytes between the quotes.
    let isPlainString: Bool

    var isContainer: Bool { JSONParser.isContainer(bytes[Int(start)]) }

    var isObject: Bool { bytes[Int(start)] == UInt8(ascii: "{") }

    /// The value of the member `key` of this object, decoded alone; nil when there is none.
    func member(named key: String) -> JSONValue? {
        var key = key
        return bytes.withUnsafeBufferPointer { buffer in
            key.withUTF8 { key in
                let object = Int(start)..<Int(end)
                guard let found = JSONParser.member(named: key, in: UnsafeBufferPointer(rebasing: buffer[object]))
                else { return nil }
                let range = found.range.lowerBound + object.lowerBound..<found.range.upperBound + object.lowerBound
                return JSONParser.value(in: buffer, range, plainString: found.plainString)
            }
        }
    }

    /// The decoded value; the bytes were validated when they were read.
    var value: JSONValue {
        bytes.withUnsafeBufferPointer { buffer in
            if isPlainString {
                return .string(
                    String(
                        decoding: UnsafeBufferPointer(rebasing: buffer[Int(start) + 1..<Int(end) - 1]), as: UTF8.self))
            }
            // A number, the other usual scalar, is its text.
            switch buffer[Int(start)] {
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return .number(
                    String(decoding: UnsafeBufferPointer(rebasing: buffer[Int(start)..<Int(end)]), as: UTF8.self))
            default: break
            }
            do {
                return try JSONParser.parse(UnsafeBufferPointer(rebasing: buffer[Int(start)..<Int(end)]))
            } catch {
                preconditionFailure("validated JSON no longer parses: \(error)")
            }
        }
    }
}

// MARK: - Literals, for records written in code (tests, the demo's simulated systems)

extension JSONObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init(elements.map { Field($0.0, $0.1) })
    }
}

extension JSONValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}
