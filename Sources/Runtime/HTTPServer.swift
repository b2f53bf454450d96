import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A small HTTP/1.1 server: keep-alive, `Content-Length` and chunked request bodies, size limits,
/// a clean 400, 413 or 431 on a bad request, and a graceful stop. One thread per connection, up to
/// `Limits.maxConnections` (more are answered 503 and closed). For the probes, the simulated
/// systems and webhook receivers; not a general web server (no TLS: put a proxy in front).
public final class HTTPServer: Sendable {
    /// What the server accepts.
    public struct Limits: Sendable {
        /// Request line and headers together. Default: 16 KiB.
        public var maxHeaderBytes = 16 * 1024
        /// A request body. Default: 4 MiB.
        public var maxBodyBytes = 4 * 1024 * 1024
        /// Connections served at once. Default: 64.
        public var maxConnections = 64
        /// A keep-alive connection with no new request for this long is closed. Default: 30 s.
        public var idleTimeout = Duration.seconds(30)

        public init() {}
    }

    /// The port it listens on (the one the system chose when asked for 0).
    public let port: Int
    private let socket: Int32
    private let limits: Limits
    private let handler: @Sendable (HTTPRequest) -> HTTPResponse
    private let stopped = Atomic<Bool>(false)
    private let connections = Atomic<Int>(0)

    /// Listens on `port` (0 picks one) of `host` (every interface by default) and answers every
    /// request with `handler`, called on the connection's thread.
    public init(
        port: Int, host: String = "0.0.0.0", limits: Limits = Limits(),
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse
    ) throws {
        let descriptor = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw HTTPError("socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(clamping: port).bigEndian)
        address.sin_addr = in_addr(s_addr: inet_addr(host))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(descriptor, 128) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw HTTPError("port \(port): \(reason)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        self.socket = descriptor
        self.limits = limits
        self.handler = handler
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "p2c-http-accept"
        thread.start()
    }

    /// Connections open right now.
    public var openConnections: Int { connections.load(ordering: .relaxed) }

    /// Stops accepting, lets requests in progress finish (their responses say `Connection: close`)
    /// and closes idle connections; returns once every connection is closed or `timeout` passed.
    public func stop(timeout: Duration = .seconds(5)) {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        shutdown(socket, Int32(SHUT_RDWR))
        close(socket)
        let deadline = ContinuousClock.now + timeout
        while connections.load(ordering: .relaxed) > 0 && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            let connection = accept(socket, nil, nil)
            guard connection >= 0 else {
                if stopped.load(ordering: .relaxed) { return }
                continue
            }
            var keepAlive: Int32 = 1
            setsockopt(connection, SOL_SOCKET, SO_KEEPALIVE, &keepAlive, socklen_t(MemoryLayout<Int32>.size))
            guard connections.add(1, ordering: .relaxed).newValue <= limits.maxConnections else {
                Self.write(
                    HTTPResponse(status: 503, text: "too many connections\n"), to: connection, head: false,
                    keepAlive: false)
                close(connection)
                connections.subtract(1, ordering: .relaxed)
                continue
            }
            let thread = Thread { [self] in
                serve(connection)
                close(connection)
                connections.subtract(1, ordering: .relaxed)
            }
            thread.name = "p2c-http"
            thread.start()
        }
    }

    /// Serves requests on one connection until it closes, errs, idles out or the server stops.
    private func serve(_ connection: Int32) {
        // Short receive timeouts, so a stop or the idle limit is noticed within a second.
        var slice = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &slice, socklen_t(MemoryLayout<timeval>.size))
        var reader = ConnectionReader(descriptor: connection, stopped: { [self] in stopped.load(ordering: .relaxed) })
        while true {
            let request: HTTPRequest
            do {
                guard let parsed = try HTTPRequestParser.next(from: &reader, limits: limits, connection: connection)
                else { return }
                request = parsed
            } catch let error as HTTPRequestParser.Failure {
                Self.write(
                    HTTPResponse(status: error.status, text: error.message + "\n"), to: connection, head: false,
                    keepAlive: false)
                return
            } catch {
                return
            }
            let response = handler(request)
            let keepAlive = request.keepAlive && !stopped.load(ordering: .relaxed)
            guard Self.write(response, to: connection, head: request.method == "HEAD", keepAlive: keepAlive),
                keepAlive
            else { return }
            reader.idleTimeout = limits.idleTimeout
        }
    }

    /// Writes `response` whole; false when the peer has gone.
    @discardableResult
    static func write(_ response: HTTPResponse, to connection: Int32, head: Bool, keepAlive: Bool) -> Bool {
        var text = "HTTP/1.1 \(response.status) \(HTTPResponse.reason(response.status))\r\n"
        for (name, value) in response.headers.entries
        where name.lowercased() != "content-length" && name.lowercased() != "connection" {
            text += "\(name): \(value)\r\n"
        }
        text += "Content-Length: \(response.body.count)\r\nConnection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        var bytes = Array(text.utf8)
        if !head { bytes += response.body }
        return sendAll(bytes, to: connection)
    }

    static func sendAll(_ bytes: [UInt8], to connection: Int32) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes {
                send(connection, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL))
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return false }
            sent += count
        }
        return true
    }
}

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
            405: "Method Not Allowed", 409: "Conflict", 411: "Length Required", 412: "Precondition Failed",
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

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.entries.map { "\($0.0.lowercased()):\($0.1)" } == rhs.entries.map { "\($0.0.lowercased()):\($0.1)" }
    }
}

/// Why the server could not start.
public struct HTTPError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Buffered reads from a connection, giving up when the server stops or the connection idles out.
struct ConnectionReader {
    let descriptor: Int32
    let stopped: () -> Bool
    var buffer: [UInt8] = []
    var start = 0
    /// How long to wait for the first byte of the next request (set after the first one).
    var idleTimeout: Duration?

    init(descriptor: Int32, stopped: @escaping () -> Bool) {
        self.descriptor = descriptor
        self.stopped = stopped
    }

    struct Closed: Error {}

    var available: ArraySlice<UInt8> { buffer[start...] }

    /// Reads more bytes; throws `Closed` at end of stream, on a stop between requests or when idle.
    mutating func fill(betweenRequests: Bool) throws {
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        let began = ContinuousClock.now
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                buffer += chunk[0..<count]
                return
            }
            if count == 0 { throw Closed() }
            guard errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else { throw Closed() }
            if betweenRequests && stopped() { throw Closed() }
            let limit = betweenRequests ? (idleTimeout ?? .seconds(30)) : .seconds(30)
            if ContinuousClock.now - began >= limit { throw Closed() }
        }
    }

    mutating func consume(_ count: Int) { start += count }
}

/// Reads one request off a connection.
enum HTTPRequestParser {
    /// A request the server refuses: answered with `status` and the connection closed.
    struct Failure: Error {
        let status: Int
        let message: String
    }

    /// The next request, nil when the peer closed the connection (or it idled out) between requests.
    static func next(
        from reader: inout ConnectionReader, limits: HTTPServer.Limits, connection: Int32
    ) throws
        -> HTTPRequest?
    {
        // Head: request line and headers, up to the blank line.
        var headEnd: Int?
        while headEnd == nil {
            headEnd = find([13, 10, 13, 10], in: reader.available).map { $0 + 4 }
            if headEnd == nil {
                if reader.available.count > limits.maxHeaderBytes {
                    throw Failure(status: 431, message: "request head over \(limits.maxHeaderBytes) bytes")
                }
                do {
                    try reader.fill(betweenRequests: reader.available.isEmpty)
                } catch is ConnectionReader.Closed {
                    if reader.available.isEmpty { return nil }
                    throw Failure(status: 400, message: "incomplete request head")
                }
            }
        }
        let headBytes = reader.available.prefix(headEnd! - reader.start)
        guard headBytes.count <= limits.maxHeaderBytes else {
            throw Failure(status: 431, message: "request head over \(limits.maxHeaderBytes) bytes")
        }
        reader.consume(headBytes.count)
        let head = String(decoding: headBytes.dropLast(4), as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count == 3, requestLine[2] == "HTTP/1.1" || requestLine[2] == "HTTP/1.0",
            !requestLine[0].isEmpty, requestLine[0].allSatisfy({ $0.isUppercase }), requestLine[1].first == "/"
        else { throw Failure(status: 400, message: "malformed request line") }
        var headers = HTTPHeaders()
        for line in lines {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                !line[..<colon].contains(where: { $0 == " " || $0 == "\t" })
            else { throw Failure(status: 400, message: "malformed header line") }
            headers.add(String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var request = HTTPRequest(
            method: String(requestLine[0]), target: String(requestLine[1]), headers: headers,
            version: String(requestLine[2]))
        let chunked = headers["transfer-encoding"]?.lowercased().contains("chunked") ?? false
        if chunked && headers["content-length"] != nil {
            throw Failure(status: 400, message: "both Content-Length and Transfer-Encoding")
        }
        if headers["expect"]?.lowercased() == "100-continue" {
            _ = HTTPServer.sendAll(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8), to: connection)
        }
        if chunked {
            request.body = try readChunked(from: &reader, limit: limits.maxBodyBytes)
        } else if let text = headers["content-length"] {
            guard let length = Int(text), length >= 0 else { throw Failure(status: 400, message: "bad Content-Length") }
            guard length <= limits.maxBodyBytes else {
                throw Failure(status: 413, message: "request body over \(limits.maxBodyBytes) bytes")
            }
            request.body = try read(length, from: &reader)
        }
        return request
    }

    private static func read(_ count: Int, from reader: inout ConnectionReader) throws -> [UInt8] {
        while reader.available.count < count {
            do {
                try reader.fill(betweenRequests: false)
            } catch {
                throw Failure(status: 400, message: "incomplete request body")
            }
        }
        let bytes = Array(reader.available.prefix(count))
        reader.consume(count)
        return bytes
    }

    private static func line(from reader: inout ConnectionReader) throws -> String {
        while true {
            if let end = find([13, 10], in: reader.available) {
                let text = String(decoding: reader.available.prefix(end - reader.start), as: UTF8.self)
                reader.consume(end - reader.start + 2)
                return text
            }
            guard reader.available.count < 4096 else { throw Failure(status: 400, message: "chunk line too long") }
            do {
                try reader.fill(betweenRequests: false)
            } catch {
                throw Failure(status: 400, message: "incomplete chunked body")
            }
        }
    }

    private static func readChunked(from reader: inout ConnectionReader, limit: Int) throws -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let sizeText = try line(from: &reader).split(separator: ";", maxSplits: 1).first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
                throw Failure(status: 400, message: "bad chunk size")
            }
            if size == 0 {
                // Trailer fields, up to the blank line.
                while try !line(from: &reader).isEmpty {}
                return body
            }
            guard body.count + size <= limit else {
                throw Failure(status: 413, message: "request body over \(limit) bytes")
            }
            body += try read(size, from: &reader)
            guard try line(from: &reader).isEmpty else { throw Failure(status: 400, message: "chunk without CRLF") }
        }
    }

    /// The absolute index where `pattern` starts in `bytes`.
    static func find(_ pattern: [UInt8], in bytes: ArraySlice<UInt8>) -> Int? {
        bytes.firstRange(of: pattern)?.lowerBound
    }
}
