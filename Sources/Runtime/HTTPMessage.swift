import Foundation

/// A request as the server read it.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The request target as sent: path and query.
    public var target: String
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// HTTP/1.0 or HTTP/1.1.
    public var version: String

    public init(
        method: String, target: String, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [],
        version: String = "HTTP/1.1"
    ) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.version = version
    }

    /// The target's path, before any `?`.
    public var path: String { String(target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]) }

    /// The target's query, after the first `?`, if any.
    public var query: String? {
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        return parts.count == 2 ? String(parts[1]) : nil
    }

    /// Whether the connection stays open after the response.
    public var keepAlive: Bool {
        let connection = headers["connection"]?.lowercased() ?? ""
        return version == "HTTP/1.0" ? connection == "keep-alive" : connection != "close"
    }
}

/// A response to write.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A plain-text response.
    public init(status: Int, text: String, contentType: String = "text/plain; charset=utf-8") {
        self.init(status: status, headers: HTTPHeaders([("Content-Type", contentType)]), body: Array(text.utf8))
    }

    /// The reason phrase of `status` (`No Content` for 204).
    public static func reason(_ status: Int) -> String {
        [
            100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified",
            400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
            412: "Precondition Failed",
            413: "Content Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
        ][status] ?? "Status"
    }
}

/// Header fields in order; names compare case-insensitively.
public struct HTTPHeaders: Sendable, Equatable {
    public private(set) var entries: [(String, String)]

    public init(_ entries: [(String, String)] = []) { self.entries = entries }

    /// The first value of `name`, any case.
    public subscript(name: String) -> String? {
        entries.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
    }

    public mutating func add(_ name: String, _ value: String) { entries.append((name, value)) }

    /// Replaces every field of `name` with one.
    public mutating func set(_ name: String, _ value: String) {
        entries.removeAll { $0.0.caseInsensitiveCompare(name) == .orderedSame }
        entries.append((name, value))
    }

    /// Every value of `name`, any case, in order.
    public func values(_ name: String) -> [String] {
        entries.filter { $0.0.caseInsensitiveCompare(name) == .orderedSame }.map(\.1)
    }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.entries.map { "\($0.0.lowercased()):\($0.1)" } == rhs.entries.map { "\($0.0.lowercased()):\($0.1)" }
    }
}
