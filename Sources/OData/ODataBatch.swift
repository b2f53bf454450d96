import Foundation
import Runtime

/// One HTTP message inside a `$batch`: a request (`method`, `url`) or a response (`status`).
public struct ODataMessage: Sendable, Equatable {
    /// The request method, empty in a response.
    public var method: String
    /// The request URL (absolute, or relative to the service root), empty in a response.
    public var url: String
    /// The response status, 0 in a request.
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    /// A request to put in a batch.
    public init(method: String, url: String, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.method = method
        self.url = url
        self.status = 0
        self.headers = headers
        self.body = body
    }

    /// A response read from a batch.
    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.method = ""
        self.url = ""
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// `Content-ID` of the part the message came in (change sets number their requests).
    public var contentID: String? { headers["Content-ID"] }
}

/// A `$batch` request or response: parts that stand alone and change sets, which succeed or fail
/// as a whole. The OData multipart format (`multipart/mixed`, parts of `application/http` with
/// `Content-Transfer-Encoding: binary`) as Dataverse and F&O document it.
public struct ODataBatch: Sendable, Equatable {
    public enum Part: Sendable, Equatable {
        case single(ODataMessage)
        case changeSet([ODataMessage])
    }

    public var parts: [Part]

    public init(_ parts: [Part] = []) { self.parts = parts }

    /// Every message, in order, change sets flattened.
    public var messages: [ODataMessage] {
        parts.flatMap { part -> [ODataMessage] in
            switch part {
            case .single(let message): [message]
            case .changeSet(let messages): messages
            }
        }
    }

    // MARK: - Writing

    /// The request body and its `Content-Type` (with the boundary). Requests in a change set get a
    /// `Content-ID` (1, 2, ... across the batch) unless they have one.
    public func encoded(
        boundary: String = "batch_" + UUID().uuidString.lowercased()
    ) -> (
        contentType: String, body: [UInt8]
    ) {
        var out = ""
        var body: [UInt8] = []
        var nextID = 1
        func flush() {
            body += Array(out.utf8)
            out = ""
        }
        func write(_ message: ODataMessage, numbered: Bool) {
            out += "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            if numbered {
                out += "Content-ID: \(message.contentID ?? String(nextID))\r\n"
                nextID += 1
            }
            out +=
                message.status != 0
                ? "\r\nHTTP/1.1 \(message.status) \(HTTPResponse.reason(message.status))\r\n"
                : "\r\n\(message.method) \(message.url) HTTP/1.1\r\n"
            for (name, value) in message.headers.entries where name.caseInsensitiveCompare("Content-ID") != .orderedSame
            {
                out += "\(name): \(value)\r\n"
            }
            out += "\r\n"
            flush()
            body += message.body
            out += "\r\n"
        }
        for part in parts {
            out += "--\(boundary)\r\n"
            switch part {
            case .single(let message):
                write(message, numbered: false)
            case .changeSet(let messages):
                let changeSet = "changeset_" + UUID().uuidString.lowercased()
                out += "Content-Type: multipart/mixed; boundary=\(changeSet)\r\n\r\n"
                for message in messages {
                    out += "--\(changeSet)\r\n"
                    write(message, numbered: true)
                }
                out += "--\(changeSet)--\r\n"
            }
        }
        out += "--\(boundary)--\r\n"
        flush()
        return ("multipart/mixed; boundary=\(boundary)", body)
    }

    // MARK: - Reading

    /// Why a batch body could not be read.
    public struct FormatError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Reads a batch request or response body given its `Content-Type`.
    public static func decode(contentType: String, body: [UInt8]) throws(FormatError) -> ODataBatch {
        let boundary = try Self.boundary(of: contentType)
        var result = ODataBatch()
        for part in try Self.parts(of: body[...], boundary: boundary) {
            let (headers, content) = try Self.split(part)
            let type = headers["Content-Type"] ?? ""
            if type.lowercased().hasPrefix("multipart/mixed") {
                let inner = try Self.boundary(of: type)
                result.parts.append(
                    .changeSet(
                        try Self.parts(of: content, boundary: inner).map { part throws(FormatError) in
                            let (headers, content) = try Self.split(part)
                            return try Self.message(content, partHeaders: headers)
                        }))
            } else {
                result.parts.append(.single(try Self.message(content, partHeaders: headers)))
            }
        }
        return result
    }

    static func boundary(of contentType: String) throws(FormatError) -> String {
        for parameter in contentType.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            if pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == "boundary" {
                let value = pair[1].trimmingCharacters(in: .whitespaces)
                return value.hasPrefix("\"") && value.hasSuffix("\"") && value.count >= 2
                    ? String(value.dropFirst().dropLast()) : value
            }
        }
        throw FormatError(description: "no boundary in Content-Type \"\(contentType)\"")
    }

    /// The parts between `--boundary` delimiter lines, without the CRLF that ends each.
    static func parts(of body: ArraySlice<UInt8>, boundary: String) throws(FormatError) -> [ArraySlice<UInt8>] {
        let delimiter = Array("--\(boundary)".utf8)
        var starts: [(at: Int, end: Int, last: Bool)] = []
        var index = body.startIndex
        while let found = find(delimiter, in: body[index...]) {
            // A delimiter starts a line: at the beginning of the body or after CRLF.
            let atLineStart =
                found == body.startIndex
                || (found >= body.startIndex + 2 && body[found - 2] == 13 && body[found - 1] == 10)
            var end = found + delimiter.count
            let last = end + 1 < body.endIndex && body[end] == 45 && body[end + 1] == 45
            if atLineStart {
                if last { end += 2 }
                // The rest of the delimiter line (transport padding), then CRLF.
                while end < body.endIndex && body[end] != 10 { end += 1 }
                starts.append((found, min(end + 1, body.endIndex), last))
                if last { break }
            }
            index = found + delimiter.count
        }
        guard starts.last?.last == true else {
            throw FormatError(description: "no closing delimiter --\(boundary)--")
        }
        var result: [ArraySlice<UInt8>] = []
        for (current, next) in zip(starts, starts.dropFirst()) {
            var end = next.at
            if end >= body.startIndex + 2 && body[end - 2] == 13 && body[end - 1] == 10 { end -= 2 }
            result.append(body[current.end..<max(current.end, end)])
        }
        return result
    }

    /// A part's (or a message's) header fields and what follows the blank line.
    static func split(_ part: ArraySlice<UInt8>) throws(FormatError) -> (HTTPHeaders, ArraySlice<UInt8>) {
        guard let blank = find([13, 10, 13, 10], in: part) else {
            // Headers only, no content.
            return (try headers(part), part[part.endIndex...])
        }
        return (try headers(part[part.startIndex..<blank]), part[(blank + 4)...])
    }

    private static func headers(_ bytes: ArraySlice<UInt8>) throws(FormatError) -> HTTPHeaders {
        var headers = HTTPHeaders()
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\r\n") where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else {
                throw FormatError(description: "malformed header line \"\(line.prefix(80))\"")
            }
            headers.add(String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return headers
    }

    /// An `application/http` part's message: a request line or a status line, headers, body.
    private static func message(
        _ content: ArraySlice<UInt8>, partHeaders: HTTPHeaders
    ) throws(FormatError)
        -> ODataMessage
    {
        let lineEnd = find([13, 10], in: content) ?? content.endIndex
        let startLine = String(decoding: content[content.startIndex..<lineEnd], as: UTF8.self)
        let rest = lineEnd < content.endIndex ? content[(lineEnd + 2)...] : content[content.endIndex...]
        var (headers, body) = rest.isEmpty ? (HTTPHeaders(), rest) : try split(rest)
        if let id = partHeaders["Content-ID"], headers["Content-ID"] == nil { headers.add("Content-ID", id) }
        let words = startLine.split(separator: " ", maxSplits: 2)
        if words.count >= 2, words[0].hasPrefix("HTTP/"), let status = Int(words[1]) {
            return ODataMessage(status: status, headers: headers, body: Array(body))
        }
        guard words.count == 3, words[2].hasPrefix("HTTP/") else {
            throw FormatError(description: "malformed start line \"\(startLine.prefix(80))\"")
        }
        return ODataMessage(method: String(words[0]), url: String(words[1]), headers: headers, body: Array(body))
    }

    private static func find(_ pattern: [UInt8], in bytes: ArraySlice<UInt8>) -> Int? {
        bytes.firstRange(of: pattern)?.lowerBound
    }
}
