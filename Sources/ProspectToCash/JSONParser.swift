/// A strict RFC 8259 parser over bytes: numbers keep their text, strings must be valid UTF-8,
/// nesting is bounded, and any defect is an error with its byte offset, never a crash.
public struct JSONParser {
    /// The input, valid only while `parse` runs (it is taken inside `withUnsafeBufferPointer`).
    private let bytes: UnsafeBufferPointer<UInt8>
    private var position = 0
    /// FNV-1a hash of the raw bytes of the last string parsed, for cheap duplicate-key checks.
    private var lastStringHash: UInt32 = 0
    /// Deepest nesting accepted; records are flat, so this only stops hostile input.
    public static let maximumDepth = 64

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// Parses one JSON document; trailing content other than whitespace is an error.
    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError> = bytes.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(buffer)
            return Result { () throws(JSONParseError) -> JSONValue in
                let value = try parser.parseValue(depth: 0)
                parser.skipWhitespace()
                guard parser.position == buffer.count else {
                    throw parser.error("unexpected content after the JSON value")
                }
                return value
            }
        }
        return try result.get()
    }

    /// Parses one JSON document from a buffer (used to decode validated raw values).
    static func parse(_ buffer: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(buffer)
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.position == buffer.count else { throw parser.error("unexpected content after the JSON value") }
        return value
    }

    /// Parses a document whose top level is usually an object: every byte is validated, but the
    /// object's members keep their values as ranges of `bytes` (decoded only when asked for) and
    /// known keys reuse interned strings. Anything else is parsed as `parse` does.
    public static func parseLazily(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError> = bytes.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(buffer)
            return Result { () throws(JSONParseError) -> JSONValue in
                parser.skipWhitespace()
                guard parser.position < buffer.count, buffer[parser.position] == UInt8(ascii: "{") else {
                    return try JSONParser.parse(buffer)
                }
                let object = try parser.scanObject(source: bytes)
                parser.skipWhitespace()
                guard parser.position == buffer.count else {
                    throw parser.error("unexpected content after the JSON value")
                }
                return .object(object)
            }
        }
        return try result.get()
    }

    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    private func error(_ message: String) -> JSONParseError {
        JSONParseError(message: message, offset: position)
    }

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        guard position < bytes.count else { throw error("unexpected end of input") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return .object(try parseObject(depth: depth + 1))
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character '\(Character(Unicode.Scalar(bytes[position])))'")
        }
    }

    private mutating func literal(_ word: StaticString, _ value: JSONValue) throws(JSONParseError) -> JSONValue {
        let count = word.utf8CodeUnitCount
        guard position + count <= bytes.count else { throw error("unexpected end of input") }
        let matches = word.withUTF8Buffer { expected in
            (0..<count).allSatisfy { bytes[position + $0] == expected[$0] }
        }
        guard matches else { throw error("invalid literal") }
        position += count
        return value
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONObject {
        guard depth <= Self.maximumDepth else { throw error("nesting deeper than \(Self.maximumDepth)") }
        position += 1
        var fields: [JSONObject.Field] = []
        // Duplicate keys are refused; hashes computed while scanning keep that check cheap.
        var hashes: [UInt32] = []
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
            position += 1
            return JSONObject(fields)
        }
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                throw error("expected a string key")
            }
            let key = try parseString()
            let keyHash = lastStringHash
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
            position += 1
            let value = try parseValue(depth: depth)
            let hash = keyHash
            for (index, known) in hashes.enumerated() where known == hash && fields[index].key == key {
                throw error("duplicate key \"\(key)\"")
            }
            hashes.append(hash)
            fields.append(JSONObject.Field(key, value))
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end of input") }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
                continue
            }
            guard bytes[position] == UInt8(ascii: "}") else { throw error("expected ',' or '}'") }
            position += 1
            return JSONObject(fields)
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= Self.maximumDepth else { throw error("nesting deeper than \(Self.maximumDepth)") }
        position += 1
        var values: [JSONValue] = []
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "]") {
            position += 1
            return .array(values)
        }
        while true {
            values.append(try parseValue(depth: depth))
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end of input") }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
                continue
            }
            guard bytes[position] == UInt8(ascii: "]") else { throw error("expected ',' or ']'") }
            position += 1
            return .array(values)
        }
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        position += 1
        let start = position
        // Fast path: no escapes. ASCII needs no validation; anything else is validated once.
        var ascii = true
        var hash: UInt32 = 2_166_136_261
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                lastStringHash = hash
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<position])
                let text = ascii ? String(decoding: slice, as: UTF8.self) : String(validating: slice, as: UTF8.self)
                guard let text else { throw error("invalid UTF-8 in string") }
                position += 1
                return text
            }
            if byte >= 0x80 { ascii = false }
            hash = (hash ^ UInt32(byte)) &* 16_777_619
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw error("control character in string") }
            position += 1
        }
        guard position < bytes.count else { throw error("unterminated string") }
        var scratch = Array(UnsafeBufferPointer(rebasing: bytes[start..<position]))
        while position < bytes.count {
            let byte = bytes[position]
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                lastStringHash = scratch.reduce(2_166_136_261) { ($0 ^ UInt32($1)) &* 16_777_619 }
                guard let text = String(validating: scratch, as: UTF8.self) else {
                    throw error("invalid UTF-8 in string")
                }
                return text
            case UInt8(ascii: "\\"):
                position += 1
                guard position < bytes.count else { throw error("unterminated escape") }
                let escape = bytes[position]
                position += 1
                switch escape {
                case UInt8(ascii: "\""): scratch.append(0x22)
                case UInt8(ascii: "\\"): scratch.append(0x5C)
                case UInt8(ascii: "/"): scratch.append(0x2F)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try parseHex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                            bytes[position + 1] == UInt8(ascii: "u")
                        else { throw error("unpaired surrogate") }
                        position += 2
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw error("unpaired surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw error("unpaired surrogate")
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
                    scratch.append(contentsOf: Array(String(Character(unicode)).utf8))
                default: throw error("invalid escape")
                }
            default:
                if byte < 0x20 { throw error("control character in string") }
                scratch.append(byte)
                position += 1
            }
        }
        throw error("unterminated string")
    }

    // MARK: Validating without building

    /// The top-level object, its values kept as raw ranges of `source`.
    private mutating func scanObject(source: [UInt8]) throws(JSONParseError) -> JSONObject {
        position += 1
        var fields: [JSONObject.Field] = []
        fields.reserveCapacity(64)
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
            position += 1
            return JSONObject(fields)
        }
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                throw error("expected a string key")
            }
            let keyStart = position
            let plainKey = try skipString()
            let hash = lastStringHash
            let key: String
            if plainKey,
                let known = KeyInterner.shared.lookup(
                    hash: hash, bytes: UnsafeBufferPointer(rebasing: bytes[keyStart + 1..<position - 1]))
            {
                key = known
            } else {
                let end = position
                position = keyStart
                key = try parseString()
                position = end
            }
            for field in fields where field.keyHash == hash && field.key == key {
                throw error("duplicate key \"\(key)\"")
            }
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
            position += 1
            skipWhitespace()
            let valueStart = position
            let plainString = try skipValue(depth: 1)
            let raw = RawJSON(bytes: source, start: Int32(valueStart), end: Int32(position), isPlainString: plainString)
            fields.append(JSONObject.Field(key: key, keyHash: hash, storage: .raw(raw)))
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end of input") }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
                continue
            }
            guard bytes[position] == UInt8(ascii: "}") else { throw error("expected ',' or '}'") }
            position += 1
            return JSONObject(fields)
        }
    }

    /// Validates one value and moves past it; true when it is a string literal without escapes.
    private mutating func skipValue(depth: Int) throws(JSONParseError) -> Bool {
        skipWhitespace()
        guard position < bytes.count else { throw error("unexpected end of input") }
        switch bytes[position] {
        case UInt8(ascii: "\""): return try skipString(hashing: false)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try scanNumber()
            return false
        case UInt8(ascii: "{"):
            try skipContainer(close: UInt8(ascii: "}"), depth: depth + 1)
            return false
        case UInt8(ascii: "["):
            try skipContainer(close: UInt8(ascii: "]"), depth: depth + 1)
            return false
        case UInt8(ascii: "t"):
            _ = try literal("true", .null)
            return false
        case UInt8(ascii: "f"):
            _ = try literal("false", .null)
            return false
        case UInt8(ascii: "n"):
            _ = try literal("null", .null)
            return false
        default:
            throw error("unexpected character '\(Character(Unicode.Scalar(bytes[position])))'")
        }
    }

    /// Validates an object (`}`) or array (`]`) without building it, duplicate keys included.
    private mutating func skipContainer(close: UInt8, depth: Int) throws(JSONParseError) {
        guard depth <= Self.maximumDepth else { throw error("nesting deeper than \(Self.maximumDepth)") }
        let isObject = close == UInt8(ascii: "}")
        position += 1
        var keys: [(hash: UInt32, start: Int, end: Int)] = []
        skipWhitespace()
        if position < bytes.count, bytes[position] == close {
            position += 1
            return
        }
        while true {
            skipWhitespace()
            if isObject {
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                    throw error("expected a string key")
                }
                let start = position
                _ = try skipString()
                let hash = lastStringHash
                for key in keys where key.hash == hash {
                    // Same hash: compare the decoded keys (escapes make raw bytes differ).
                    if try decodedString(key.start..<key.end) == decodedString(start..<position) {
                        throw error("duplicate key")
                    }
                }
                keys.append((hash, start, position))
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
                position += 1
            }
            _ = try skipValue(depth: depth)
            skipWhitespace()
            guard position < bytes.count else { throw error("unexpected end of input") }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
                continue
            }
            guard bytes[position] == close else {
                throw error(isObject ? "expected ',' or '}'" : "expected ',' or ']'")
            }
            position += 1
            return
        }
    }

    /// The text of the already validated string literal at `range`.
    private func decodedString(_ range: Range<Int>) throws(JSONParseError) -> String {
        var parser = JSONParser(UnsafeBufferPointer(rebasing: bytes[range]))
        return try parser.parseString()
    }

    /// Validates a string literal and moves past it, hashing its bytes into `lastStringHash`
    /// when `hashing`; true when it has no escapes (its text is then the bytes between the quotes).
    private mutating func skipString(hashing: Bool = true) throws(JSONParseError) -> Bool {
        let quote = position
        position += 1
        let start = position
        var ascii = true
        var hash: UInt32 = 2_166_136_261
        while position < bytes.count {
            let byte = bytes[position]
            // One table test per byte: only quotes, backslashes, control and non-ASCII bytes stop here.
            if JSONBytes.isSpecial[Int(byte)] == 0 {
                if hashing { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
                position += 1
                continue
            }
            if byte == UInt8(ascii: "\"") {
                if !ascii
                    && String(validating: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self) == nil
                {
                    throw error("invalid UTF-8 in string")
                }
                lastStringHash = hash
                position += 1
                return true
            }
            if byte == UInt8(ascii: "\\") {
                position = quote
                let text = try parseString()
                lastStringHash = OperationTable.hash(text)
                return false
            }
            if byte < 0x20 { throw error("control character in string") }
            if byte >= 0x80 { ascii = false }
            hash = (hash ^ UInt32(byte)) &* 16_777_619
            position += 1
        }
        throw error("unterminated string")
    }

    private mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard position + 4 <= bytes.count else { throw error("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw error("invalid \\u escape")
            }
            value = value << 4 | digit
            position += 1
        }
        return value
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = position
        try scanNumber()
        return .number(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self))
    }

    /// Validates a number literal and moves past it.
    private mutating func scanNumber() throws(JSONParseError) {
        let start = position
        if position < bytes.count, bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard position < bytes.count, isDigit(bytes[position]) else { throw error("invalid number") }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
        } else {
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard position < bytes.count, isDigit(bytes[position]) else { throw error("invalid number") }
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                position += 1
            }
            guard position < bytes.count, isDigit(bytes[position]) else { throw error("invalid number") }
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        guard position - start <= 64 else { throw error("number longer than 64 characters") }
    }

    @inline(__always) private func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }
}

/// Why a JSON text was refused, and where.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    /// Byte offset of the defect.
    public var offset: Int
    public var description: String { "\(message) at byte \(offset)" }
}

/// Byte classes shared by the parser and the writer.
enum JSONBytes {
    /// Non-zero for bytes a string scan must look at: `"`, `\`, control characters and non-ASCII.
    static let isSpecial: [UInt8] = (0...255).map { byte in
        byte < 0x20 || byte >= 0x80 || byte == 0x22 || byte == 0x5C ? 1 : 0
    }
}
