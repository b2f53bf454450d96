import Foundation

/// A strict RFC 8259 parser over bytes: numbers keep their text, strings must be valid UTF-8,
/// nesting is bounded, and any defect is an error with its byte offset, never a crash.
public struct JSONParser {
    /// The input, valid only while `parse` runs (it is taken inside `withUnsafeBufferPointer`).
    private let bytes: UnsafeBufferPointer<UInt8>
    private var position = 0
    /// `NameTable.hash` of the text of the last string parsed, for cheap duplicate-key checks.
    private var lastStringHash: UInt32 = 0
    /// Deepest nesting accepted; records are flat, so this only stops hostile input.
    public static let maximumDepth = 64

    /// Keys p2c knows reuse their interned `String` (the mapping path; not while the maps
    /// themselves are loaded, which the interner is built from).
    private var internsKeys = false

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
            Result { () throws(JSONParseError) -> JSONValue in
                guard let members = try scanMembers(buffer) else { return try JSONParser.parse(buffer) }
                var object = JSONObject()
                object.fields.reserveCapacity(members.count)
                for member in members {
                    let raw = RawJSON(
                        bytes: bytes, start: member.valueStart, end: member.valueEnd, isPlainString: member.plainString)
                    object.fields.append(
                        JSONObject.Field(key: member.key(in: buffer), storage: .raw(raw)))
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
        // Duplicate keys are refused; a filter of the keys' hashes rules most out at once.
        var seen = HashFilter()
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
            let key = try parseString(interning: internsKeys)
            if seen.insert(lastStringHash), fields.contains(where: { $0.key == key }) {
                throw error("duplicate key \"\(key)\"")
            }
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
            position += 1
            let value = try parseValue(depth: depth)
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

    /// The text of the string literal at the position; a key without escapes that p2c knows
    /// reuses its interned `String` when `interning`.
    private mutating func parseString(interning: Bool = false) throws(JSONParseError) -> String {
        position += 1
        let start = position
        // Fast path: no escapes. ASCII needs no validation; anything else is validated once.
        var ascii = true
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<position])
                lastStringHash = NameTable.hash(slice)
                if interning, let known = KeyInterner.shared.lookup(hash: lastStringHash, bytes: slice) {
                    position += 1
                    return known
                }
                let text = ascii ? String(decoding: slice, as: UTF8.self) : String(validating: slice, as: UTF8.self)
                guard let text else { throw error("invalid UTF-8 in string") }
                position += 1
                return text
            }
            if byte >= 0x80 { ascii = false }
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
                lastStringHash = scratch.withUnsafeBufferPointer { NameTable.hash($0) }
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

    /// Scans a document whose top level is an object into its members' byte ranges, validating
    /// every byte (duplicate keys included) without building a value. Nil when the top level is
    /// not an object (`parse` then tells what it is, or what is wrong).
    static func scanMembers(_ buffer: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> [Member]? {
        var parser = JSONParser(buffer)
        parser.skipWhitespace()
        guard parser.position < buffer.count, buffer[parser.position] == UInt8(ascii: "{") else { return nil }
        let members = try parser.scanMembers()
        parser.skipWhitespace()
        guard parser.position == buffer.count else { throw parser.error("unexpected content after the JSON value") }
        return members
    }

    /// Whether a value starting with `first` is an object or an array.
    @inline(__always)
    static func isContainer(_ first: UInt8) -> Bool { first == UInt8(ascii: "{") || first == UInt8(ascii: "[") }

    /// One member of a scanned object: where its key and value are in the input.
    struct Member: Sendable {
        /// The key's bytes between its quotes.
        var keyStart: Int32
        var keyEnd: Int32
        /// The value's bytes, as they appear.
        var valueStart: Int32
        var valueEnd: Int32
        /// `NameTable.hash` of the key's text.
        var keyHash: UInt32
        /// The key has no escapes: its text is its bytes.
        var plainKey: Bool
        /// The value is a string literal without escapes: its text is the bytes between the quotes.
        var plainString: Bool

        var keyRange: Range<Int> { Int(keyStart)..<Int(keyEnd) }
        var valueRange: Range<Int> { Int(valueStart)..<Int(valueEnd) }

        /// The key's text (decoding its escapes when it has any).
        func key(in buffer: UnsafeBufferPointer<UInt8>) -> String {
            let bytes = UnsafeBufferPointer(rebasing: buffer[keyRange])
            if plainKey {
                return KeyInterner.shared.lookup(hash: keyHash, bytes: bytes) ?? String(decoding: bytes, as: UTF8.self)
            }
            return JSONParser.validatedString(
                UnsafeBufferPointer(rebasing: buffer[Int(keyStart) - 1..<Int(keyEnd) + 1]))
        }

        /// Whether the value is an object or an array.
        func isContainer(in buffer: UnsafeBufferPointer<UInt8>) -> Bool {
            JSONParser.isContainer(buffer[Int(valueStart)])
        }

        /// The decoded value; the bytes were validated when they were scanned.
        func value(in buffer: UnsafeBufferPointer<UInt8>) -> JSONValue {
            JSONParser.value(in: buffer, valueRange, plainString: plainString)
        }
    }

    /// The value at `range` of validated bytes.
    static func value(in buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, plainString: Bool) -> JSONValue {
        if plainString {
            return .string(
                String(
                    decoding: UnsafeBufferPointer(rebasing: buffer[range.lowerBound + 1..<range.upperBound - 1]),
                    as: UTF8.self))
        }
        var parser = JSONParser(UnsafeBufferPointer(rebasing: buffer[range]))
        parser.internsKeys = true
        do {
            return try parser.parseValue(depth: 0)
        } catch {
            preconditionFailure("validated JSON no longer parses: \(error)")
        }
    }

    /// Where the member `key` (UTF-8) of the validated object `object` has its value, without
    /// building anything; nil when there is none.
    static func member(
        named key: UnsafeBufferPointer<UInt8>, in object: UnsafeBufferPointer<UInt8>
    ) -> (range: Range<Int>, plainString: Bool)? {
        // A lookup of one plain member, the usual shape, is read off its bytes.
        if let base = object.baseAddress, let pair = plainPair(base, object.count, from: 0), pair.end == object.count {
            guard pair.keyEnd - 2 == key.count, key.isEmpty || memcmp(base + 2, key.baseAddress!, key.count) == 0 else {
                return nil
            }
            return (pair.keyEnd + 2..<pair.end - 1, true)
        }
        var parser = JSONParser(object)
        parser.position = 1
        do {
            while true {
                parser.skipWhitespace()
                guard parser.position < object.count, object[parser.position] == UInt8(ascii: "\"") else { return nil }
                let keyStart = parser.position
                let plainKey = try parser.skipString(hashing: false)
                let keyBytes = UnsafeBufferPointer(rebasing: object[keyStart + 1..<parser.position - 1])
                let matches =
                    plainKey
                    ? keyBytes.count == key.count
                        && (key.isEmpty || memcmp(key.baseAddress!, keyBytes.baseAddress!, key.count) == 0)
                    : validatedString(UnsafeBufferPointer(rebasing: object[keyStart..<parser.position])).utf8
                        .elementsEqual(key)
                parser.skipWhitespace()
                parser.position += 1  // ':'
                parser.skipWhitespace()
                let valueStart = parser.position
                let plainString = try parser.skipValue(depth: 1)
                if matches { return (valueStart..<parser.position, plainString) }
                parser.skipWhitespace()
                guard parser.position < object.count, object[parser.position] == UInt8(ascii: ",") else { return nil }
                parser.position += 1
            }
        } catch {
            return nil
        }
    }

    /// The text of a validated string literal (quotes included in `literal`).
    private static func validatedString(_ literal: UnsafeBufferPointer<UInt8>) -> String {
        var parser = JSONParser(literal)
        do {
            return try parser.parseString()
        } catch {
            preconditionFailure("validated JSON no longer parses: \(error)")
        }
    }

    private mutating func scanMembers() throws(JSONParseError) -> [Member] {
        position += 1
        var members: [Member] = []
        members.reserveCapacity(64)
        var seen = HashFilter()
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
            position += 1
            return members
        }
        let base = bytes.baseAddress!
        let count = bytes.count
        while true {
            skipWhitespace()
            guard position < count, base[position] == UInt8(ascii: "\"") else {
                throw error("expected a string key")
            }
            // Plain ASCII keys and string values (nearly all) are found here; anything else
            // (escapes, other UTF-8, every defect) takes the general path from the same byte.
            let keyStart = position + 1
            var keyEnd = Self.plainEnd(base, count, from: keyStart)
            let plainKey: Bool
            let hash: UInt32
            if keyEnd < count && base[keyEnd] == UInt8(ascii: "\"") {
                plainKey = true
                hash = NameTable.hash(UnsafeBufferPointer(start: base + keyStart, count: keyEnd - keyStart))
                position = keyEnd + 1
            } else {
                plainKey = try skipString()
                hash = lastStringHash
                keyEnd = position - 1
            }
            let member = Member(
                keyStart: Int32(keyStart), keyEnd: Int32(keyEnd), valueStart: 0, valueEnd: 0, keyHash: hash,
                plainKey: plainKey, plainString: false)
            // Duplicate keys: a filter of the hashes seen rules most keys out at once.
            if seen.insert(hash) {
                for known in members where known.keyHash == hash && sameKey(known, member) {
                    throw error("duplicate key \"\(member.key(in: bytes))\"")
                }
            }
            skipWhitespace()
            guard position < count, base[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
            position += 1
            skipWhitespace()
            let valueStart = position
            let plainString: Bool
            if position < count, base[position] == UInt8(ascii: "\""),
                case let valueEnd = Self.plainEnd(base, count, from: position + 1),
                valueEnd < count, base[valueEnd] == UInt8(ascii: "\"")
            {
                position = valueEnd + 1
                plainString = true
            } else if let pair = Self.plainPair(base, count, from: position) {
                // A lookup of one plain member (`{"accountnumber":"C-1"}`): valid as it stands.
                position = pair.end
                plainString = false
            } else {
                plainString = try skipValue(depth: 1)
            }
            members.append(
                Member(
                    keyStart: member.keyStart, keyEnd: member.keyEnd, valueStart: Int32(valueStart),
                    valueEnd: Int32(position), keyHash: hash, plainKey: plainKey, plainString: plainString))
            skipWhitespace()
            guard position < count else { throw error("unexpected end of input") }
            if base[position] == UInt8(ascii: ",") {
                position += 1
                continue
            }
            guard base[position] == UInt8(ascii: "}") else { throw error("expected ',' or '}'") }
            position += 1
            return members
        }
    }

    /// The index of the first byte from `start` a string scan must look at (a quote, backslash,
    /// control character or non-ASCII byte), or `count`: sixteen bytes at a time as one vector (a
    /// byte below 0x20 as a signed number is a control character or not ASCII; the comparisons are
    /// vector against vector, which compile to single SSE2 instructions), then eight at a time with
    /// the classic has-zero-byte and has-less-than tests (the lowest flag is exact).
    @inline(__always)
    static func plainEnd(_ base: UnsafePointer<UInt8>, _ count: Int, from start: Int) -> Int {
        var position = start
        let space = SIMD16<Int8>(repeating: 0x20)
        let quote = SIMD16<Int8>(repeating: 0x22)
        let backslash = SIMD16<Int8>(repeating: 0x5C)
        while position + 16 <= count {
            let vector = UnsafeRawPointer(base + position).loadUnaligned(as: SIMD16<Int8>.self)
            let special = (vector .< space) .| (vector .== quote) .| (vector .== backslash)
            let lanes = unsafeBitCast(special, to: SIMD2<UInt64>.self)
            if lanes[0] | lanes[1] != 0 {
                return lanes[0] != 0
                    ? position + lanes[0].trailingZeroBitCount >> 3
                    : position + 8 + lanes[1].trailingZeroBitCount >> 3
            }
            position += 16
        }
        let ones: UInt64 = 0x0101_0101_0101_0101
        while position + 8 <= count {
            let word = UnsafeRawPointer(base + position).loadUnaligned(as: UInt64.self)
            let quotes = word ^ (ones &* 0x22)
            let backslashes = word ^ (ones &* 0x5C)
            let special =
                (word | ((word &- ones &* 0x20) & ~word) | ((quotes &- ones) & ~quotes)
                    | ((backslashes &- ones) & ~backslashes)) & (ones &* 0x80)
            if special != 0 { return position + special.trailingZeroBitCount >> 3 }
            position += 8
        }
        while position < count {
            let byte = base[position]
            if byte == 0x22 || byte == 0x5C || byte < 0x20 || byte >= 0x80 { return position }
            position += 1
        }
        return count
    }

    /// Where the key ends (its closing quote) and where the object at `start` ends, when it is exactly
    /// `{"<plain>":"<plain>"}` (no spaces,
    /// escapes, control characters or other UTF-8: valid JSON as it stands, and one key has no
    /// duplicate); nil for anything else, which the general path then reads.
    @inline(__always)
    static func plainPair(_ base: UnsafePointer<UInt8>, _ count: Int, from start: Int) -> (keyEnd: Int, end: Int)? {
        guard start + 7 <= count, base[start] == UInt8(ascii: "{"), base[start + 1] == UInt8(ascii: "\"") else {
            return nil
        }
        let keyEnd = plainEnd(base, count, from: start + 2)
        guard keyEnd + 3 < count, base[keyEnd] == UInt8(ascii: "\""), base[keyEnd + 1] == UInt8(ascii: ":"),
            base[keyEnd + 2] == UInt8(ascii: "\"")
        else { return nil }
        let valueEnd = plainEnd(base, count, from: keyEnd + 3)
        guard valueEnd + 1 < count, base[valueEnd] == UInt8(ascii: "\""), base[valueEnd + 1] == UInt8(ascii: "}") else {
            return nil
        }
        return (keyEnd, valueEnd + 2)
    }

    /// Whether two keys of the same hash are the same text (escapes make equal texts' bytes differ).
    private func sameKey(_ lhs: Member, _ rhs: Member) -> Bool {
        if lhs.plainKey && rhs.plainKey {
            return lhs.keyEnd - lhs.keyStart == rhs.keyEnd - rhs.keyStart
                && memcmp(
                    bytes.baseAddress! + Int(lhs.keyStart), bytes.baseAddress! + Int(rhs.keyStart), lhs.keyRange.count)
                    == 0
        }
        return lhs.key(in: bytes) == rhs.key(in: bytes)
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
        let open = position
        position += 1
        var seen = HashFilter()
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
                // A key whose hash may have been seen: compare it with the earlier keys' text.
                if seen.insert(lastStringHash), try hasKey(decodedString(start..<position), before: start, from: open) {
                    throw error("duplicate key")
                }
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

    /// Whether the validated object opening at `open` has a key `key` before `end` (rarely called:
    /// only when the hash filter cannot rule a duplicate out).
    private func hasKey(_ key: String, before end: Int, from open: Int) throws(JSONParseError) -> Bool {
        var scanner = JSONParser(UnsafeBufferPointer(rebasing: bytes[..<end]))
        scanner.position = open + 1
        while true {
            scanner.skipWhitespace()
            guard scanner.position < end else { return false }
            let start = scanner.position
            _ = try scanner.skipString(hashing: false)
            if try decodedString(start..<scanner.position) == key { return true }
            scanner.skipWhitespace()
            scanner.position += 1  // ':'
            _ = try scanner.skipValue(depth: 1)
            scanner.skipWhitespace()
            scanner.position += 1  // ','
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
        let base = bytes.baseAddress!
        while true {
            position = Self.plainEnd(base, bytes.count, from: position)
            guard position < bytes.count else { throw error("unterminated string") }
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                if !ascii
                    && String(validating: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self) == nil
                {
                    throw error("invalid UTF-8 in string")
                }
                if hashing {
                    lastStringHash = NameTable.hash(UnsafeBufferPointer(rebasing: bytes[start..<position]))
                }
                position += 1
                return true
            }
            if byte == UInt8(ascii: "\\") {
                position = quote
                let text = try parseString()
                lastStringHash = NameTable.hash(text)
                return false
            }
            if byte < 0x20 { throw error("control character in string") }
            // What is left of the bytes a scan stops at: a byte of other UTF-8, validated at the end.
            ascii = false
            position += 1
        }
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

/// A 1,024-bit filter of key hashes: `insert` tells whether the hash may have been seen before
/// (with a record's few dozen keys, a false "maybe" is rare, so the exact check seldom runs).
private struct HashFilter {
    private var words = InlineArray<16, UInt64>(repeating: 0)

    mutating func insert(_ hash: UInt32) -> Bool {
        let bit = UInt64(1) << UInt64(hash & 63)
        let index = Int((hash >> 6) & 15)
        let seen = words[index] & bit != 0
        words[index] |= bit
        return seen
    }
}
