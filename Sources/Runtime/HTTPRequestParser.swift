/// Bytes read off a connection and not yet consumed.
public struct InputBuffer: Sendable {
    private(set) var bytes: [UInt8] = []
    private(set) var start = 0

    public init(_ bytes: [UInt8] = []) { self.bytes = bytes }

    /// What is read and not consumed.
    public var available: ArraySlice<UInt8> { bytes[start...] }

    public var isEmpty: Bool { start == bytes.count }

    public mutating func consume(_ count: Int) {
        precondition(count >= 0 && count <= bytes.count - start)
        start += count
        if start == bytes.count {
            bytes.removeAll(keepingCapacity: bytes.capacity <= 64 * 1024)
            start = 0
        }
    }

    public mutating func append(_ more: UnsafeRawBufferPointer) {
        if start > 0 && start >= bytes.count / 2 {
            bytes.removeFirst(start)
            start = 0
        }
        bytes.append(contentsOf: more)
    }
}

/// The HTTP/1.1 request syntax of RFC 9112, as far as the server takes it: a request line, header
/// fields, and a body framed by `Content-Length` or `Transfer-Encoding: chunked`. Pure functions of
/// the bytes, so that it can be fuzzed; every size read from the wire is checked against a limit
/// before it is used.
public enum HTTPRequestParser {
    /// A request the server refuses: answered with `status` and the connection closed.
    public struct Failure: Error, Equatable {
        public let status: Int
        public let message: String

        public init(status: Int, message: String) {
            self.status = status
            self.message = message
        }
    }

    /// How a request's body is framed (RFC 9112, section 6.3).
    public enum Framing: Equatable, Sendable {
        case none
        case length(Int)
        case chunked
    }

    /// The length of the head (through its blank line) at the start of `bytes`, nil while it is
    /// incomplete. Throws 431 once `limit` bytes hold no complete head.
    public static func headLength(in bytes: ArraySlice<UInt8>, limit: Int) throws -> Int? {
        guard let end = bytes.prefix(limit).firstRange(of: [13, 10, 13, 10])?.upperBound else {
            if bytes.count >= limit { throw Failure(status: 431, message: "request head over \(limit) bytes") }
            return nil
        }
        return end - bytes.startIndex
    }

    /// The request a head declares, without its body. `head`: the request line and header fields,
    /// through the blank line.
    public static func request(head: ArraySlice<UInt8>) throws -> HTTPRequest {
        let text = String(decoding: head.dropLast(4), as: UTF8.self)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let requestLine = lines.removeFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard requestLine.count == 3, requestLine[2] == "HTTP/1.1" || requestLine[2] == "HTTP/1.0",
            !requestLine[0].isEmpty, requestLine[0].utf8.allSatisfy({ $0 >= 65 && $0 <= 90 }),
            requestLine[1].first == "/", !requestLine[1].contains(where: { $0.isWhitespace })
        else { throw Failure(status: 400, message: "malformed request line") }
        var headers = HTTPHeaders()
        for line in lines {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                line[..<colon].utf8.allSatisfy(isTokenCharacter)
            else { throw Failure(status: 400, message: "malformed header line") }
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            guard !value.utf8.contains(where: { $0 == 0 || $0 == 13 || $0 == 10 }) else {
                throw Failure(status: 400, message: "malformed header line")
            }
            headers.add(String(line[..<colon]), value)
        }
        return HTTPRequest(
            method: String(requestLine[0]), target: String(requestLine[1]), headers: headers,
            version: String(requestLine[2]))
    }

    /// The framing of `request`'s body, refused (413) when it declares more than `limit` bytes.
    public static func framing(of request: HTTPRequest, limit: Int) throws -> Framing {
        let lengths = request.headers.values("content-length")
        let codings = request.headers.values("transfer-encoding")
        if !codings.isEmpty {
            guard lengths.isEmpty else {
                throw Failure(status: 400, message: "both Content-Length and Transfer-Encoding")
            }
            guard codings.count == 1, codings[0].lowercased() == "chunked" else {
                throw Failure(status: 501, message: "only the chunked transfer coding is taken")
            }
            return .chunked
        }
        guard let text = lengths.first else { return .none }
        guard lengths.allSatisfy({ $0 == text }), let length = decimal(text) else {
            throw Failure(status: 400, message: "bad Content-Length")
        }
        guard length <= limit else { throw Failure(status: 413, message: "request body over \(limit) bytes") }
        return length == 0 ? .none : .length(length)
    }

    /// The body as `framing` delimits it, taken from `buffer`; `more` appends bytes to it or throws
    /// when none will come (end of stream, deadline). At most `limit` bytes of body.
    public static func body(
        _ framing: Framing, from buffer: inout InputBuffer, limit: Int,
        more: (inout InputBuffer) throws -> Void
    ) throws -> [UInt8] {
        switch framing {
        case .none:
            return []
        case .length(let count):
            return try take(count, from: &buffer, more: more)
        case .chunked:
            return try chunked(from: &buffer, limit: limit, more: more)
        }
    }

    private static func chunked(
        from buffer: inout InputBuffer, limit: Int, more: (inout InputBuffer) throws -> Void
    ) throws -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let sizeLine = try line(from: &buffer, more: more)
            let digits = sizeLine.prefix { $0 != UInt8(ascii: ";") }
            guard let size = hexadecimal(digits) else { throw Failure(status: 400, message: "bad chunk size") }
            if size == 0 {
                // Trailer fields, up to the blank line, at most 64 lines of 4 KiB.
                for _ in 0..<64 {
                    if try line(from: &buffer, more: more).isEmpty { return body }
                }
                throw Failure(status: 431, message: "more than 64 trailer fields")
            }
            // Compared by subtraction (the body never passes the limit), never by adding a size
            // read from the wire to it.
            guard size <= limit - body.count else {
                throw Failure(status: 413, message: "request body over \(limit) bytes")
            }
            body += try take(size, from: &buffer, more: more)
            guard try line(from: &buffer, more: more).isEmpty else {
                throw Failure(status: 400, message: "chunk without CRLF")
            }
        }
    }

    private static func take(
        _ count: Int, from buffer: inout InputBuffer, more: (inout InputBuffer) throws -> Void
    ) throws -> [UInt8] {
        while buffer.available.count < count {
            do {
                try more(&buffer)
            } catch {
                throw Failure(status: 400, message: "incomplete request body")
            }
        }
        let bytes = Array(buffer.available.prefix(count))
        buffer.consume(count)
        return bytes
    }

    /// A line of at most 4 KiB, without its CRLF.
    private static func line(
        from buffer: inout InputBuffer, more: (inout InputBuffer) throws -> Void
    ) throws
        -> ArraySlice<UInt8>
    {
        while true {
            let available = buffer.available
            if let end = available.prefix(4098).firstRange(of: [13, 10]) {
                let text = available[available.startIndex..<end.lowerBound]
                let copy = ArraySlice(Array(text))
                buffer.consume(end.upperBound - available.startIndex)
                return copy
            }
            guard available.count < 4098 else { throw Failure(status: 400, message: "chunk line too long") }
            do {
                try more(&buffer)
            } catch {
                throw Failure(status: 400, message: "incomplete chunked body")
            }
        }
    }

    /// Hexadecimal digits (optionally followed by spaces), saturating at `Int.max`: a size too
    /// large for an `Int` is over every limit.
    static func hexadecimal(_ bytes: ArraySlice<UInt8>) -> Int? {
        let digits = bytes.prefix { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
        guard !digits.isEmpty,
            bytes.dropFirst(digits.count).allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
        else { return nil }
        var value = 0
        for byte in digits {
            let digit: Int
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = Int(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = Int(byte - UInt8(ascii: "A")) + 10
            default: return nil
            }
            value = value > Int.max >> 4 ? Int.max : value << 4 | digit
        }
        return value
    }

    /// 1 to 18 decimal digits: never more than `Int.max`.
    static func decimal(_ text: String) -> Int? {
        guard !text.isEmpty, text.utf8.count <= 18, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return Int(text)
    }

    /// A `tchar` of RFC 9110, section 5.6.2.
    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
