import Foundation
import Synchronization
import Testing

@testable import Runtime

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A raw client connection, to send exactly the bytes a test needs.
private final class RawConnection {
    let descriptor: Int32

    init(port: Int) throws {
        guard let descriptor = LocalHTTP.connect(port: port) else { throw CocoaError(.fileReadUnknown) }
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    func send(_ text: String) {
        _ = Array(text.utf8).withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads one response (head and a Content-Length body); nil when the server closed the connection.
    func response() -> (status: Int, headers: [String: String], body: String)? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        func fill() -> Bool {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return false }
            bytes += buffer[0..<count]
            return true
        }
        while String(decoding: bytes, as: UTF8.self).range(of: "\r\n\r\n") == nil { if !fill() { return nil } }
        let text = String(decoding: bytes, as: UTF8.self)
        let head = text[..<text.range(of: "\r\n\r\n")!.lowerBound]
        var lines = head.split(separator: "\r\n")
        let status = Int(lines.removeFirst().split(separator: " ")[1])!
        var headers: [String: String] = [:]
        for line in lines {
            let parts = line.split(separator: ":", maxSplits: 1)
            headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        let headLength = head.utf8.count + 4
        let length = Int(headers["content-length"] ?? "0")!
        while bytes.count < headLength + length { if !fill() { return nil } }
        return (status, headers, String(decoding: bytes[headLength..<(headLength + length)], as: UTF8.self))
    }

    /// Whether the server closed its side (a read returns end of stream).
    var closedByServer: Bool {
        var byte: UInt8 = 0
        return recv(descriptor, &byte, 1, 0) == 0
    }
}

/// Echoes what it received: method, path, query and body, with the connection count.
private func echoServer(limits: HTTPServer.Limits = HTTPServer.Limits(), delay: Double = 0) throws -> HTTPServer {
    try HTTPServer(port: 0, host: "127.0.0.1", limits: limits) { request in
        if delay > 0 { Thread.sleep(forTimeInterval: delay) }
        return HTTPResponse(
            status: 200,
            text:
                "\(request.method) \(request.path) \(request.query ?? "-") \(String(decoding: request.body, as: UTF8.self))"
        )
    }
}

@Suite("The HTTP/1.1 server the probes, the simulators and webhook receivers use")
struct HTTPServerTests {
    @Test("Several requests on one keep-alive connection, bodies by Content-Length and chunked")
    func keepAliveAndBodies() throws {
        let server = try echoServer()
        defer { server.stop() }
        let connection = try RawConnection(port: server.port)
        connection.send("GET /api/data/v9.2/accounts?$select=name HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(connection.response()?.body == "GET /api/data/v9.2/accounts $select=name ")
        connection.send(
            "PATCH /accounts(accountnumber='A1') HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{\"name\":\"Ab\"}")
        #expect(connection.response()?.body == "PATCH /accounts(accountnumber='A1') - {\"name\":\"Ab\"}")
        connection.send(
            "POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
        )
        let chunked = connection.response()
        #expect(chunked?.body == "POST /hook - hello, world")
        #expect(chunked?.headers["connection"] == "keep-alive")
        #expect(server.openConnections == 1)
        connection.send("GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(connection.response()?.headers["connection"] == "close")
        #expect(connection.closedByServer)
    }

    @Test(
        "A bad request gets a clean error and the connection is closed",
        arguments: [
            ("GARBAGE\r\n\r\n", 400),
            ("GET /x HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
            ("POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST /x HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 413),
            ("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n7D0\r\n", 413),
            ("GET /x HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 3000))\r\n\r\n", 431),
        ])
    func badRequests(request: String, status: Int) throws {
        var limits = HTTPServer.Limits()
        limits.maxBodyBytes = 1000
        limits.maxHeaderBytes = 2048
        let server = try echoServer(limits: limits)
        defer { server.stop() }
        let connection = try RawConnection(port: server.port)
        connection.send(request)
        #expect(connection.response()?.status == status)
        #expect(connection.closedByServer)
    }

    @Test("A stop lets the request in progress finish, then refuses new connections")
    func gracefulStop() throws {
        let server = try echoServer(delay: 0.3)
        let connection = try RawConnection(port: server.port)
        connection.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        Thread.sleep(forTimeInterval: 0.1)
        server.stop(timeout: .seconds(5))
        let response = connection.response()
        #expect(response?.status == 200)
        #expect(response?.headers["connection"] == "close")
        #expect(server.openConnections == 0)
        #expect(throws: (any Error).self) { try RawConnection(port: server.port) }
    }

    @Test("Foundation's URLSession talks to it: a JSON POST and its answer")
    func urlSession() async throws {
        let server = try HTTPServer(port: 0, host: "127.0.0.1") { request in
            HTTPResponse(
                status: 201, headers: HTTPHeaders([("Content-Type", "application/json"), ("OData-Version", "4.0")]),
                body: request.body)
        }
        defer { server.stop() }
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(server.port)/api/data/v9.2/accounts")!)
        request.httpMethod = "POST"
        request.httpBody = Data(#"{"name":"Litware, Inc."}"#.utf8)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let (data, response) = try await URLSession.shared.data(for: request)
        #expect((response as? HTTPURLResponse)?.statusCode == 201)
        #expect((response as? HTTPURLResponse)?.value(forHTTPHeaderField: "OData-Version") == "4.0")
        #expect(String(decoding: data, as: UTF8.self) == #"{"name":"Litware, Inc."}"#)
    }

    @Test("A request refused from its head is answered before its body is sent, and the body is never read")
    func admitFromTheHead() throws {
        let server = try HTTPServer(
            port: 0, host: "127.0.0.1",
            admit: { request in
                request.headers["x-key"] == "right" ? nil : HTTPResponse(status: 401, text: "no\n")
            }
        ) { request in HTTPResponse(status: 200, text: "\(request.body.count)") }
        defer { server.stop() }
        let refused = try RawConnection(port: server.port)
        refused.send("POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
        #expect(refused.response()?.status == 401, "answered with no body byte sent")
        let admitted = try RawConnection(port: server.port)
        admitted.send("POST /hook HTTP/1.1\r\nHost: x\r\nx-key: right\r\nContent-Length: 3\r\n\r\nabc")
        #expect(admitted.response()?.body == "3")
    }

    @Test("A head that does not arrive whole within headTimeout of its first byte gets 408, however it trickles")
    func headDeadline() throws {
        var limits = HTTPServer.Limits()
        limits.headTimeout = .seconds(1)
        let server = try echoServer(limits: limits)
        defer { server.stop() }
        let slow = try RawConnection(port: server.port)
        let started = ContinuousClock.now
        for byte in "GET /slow HTTP/1.1\r\nX-Drip: ".map(String.init).prefix(6) {
            slow.send(byte)
            Thread.sleep(forTimeInterval: 0.3)
        }
        #expect(slow.response()?.status == 408)
        #expect(ContinuousClock.now - started < .seconds(3))
    }

    @Test("A full house closes the connection waiting longest for its head; a new request is served")
    func fullHouse() throws {
        var limits = HTTPServer.Limits()
        limits.maxConnections = 8
        let server = try echoServer(limits: limits)
        defer { server.stop() }
        let idle = try (0..<8).map { _ in try RawConnection(port: server.port) }
        Thread.sleep(forTimeInterval: 0.2)
        let fresh = try RawConnection(port: server.port)
        fresh.send("GET /fresh HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(fresh.response()?.body == "GET /fresh - ")
        #expect(idle[0].closedByServer, "the oldest waiting connection made way")
        #expect(server.openConnections <= 8)
    }

    @Test("At most maxRequests are handled at once; the others wait their turn and are served")
    func requestSlots() throws {
        var limits = HTTPServer.Limits()
        limits.maxRequests = 1
        let running = Atomic<Int>(0)
        let most = Atomic<Int>(0)
        let server = try HTTPServer(port: 0, host: "127.0.0.1", limits: limits) { _ in
            let now = running.add(1, ordering: .relaxed).newValue
            most.store(max(most.load(ordering: .relaxed), now), ordering: .relaxed)
            Thread.sleep(forTimeInterval: 0.1)
            running.subtract(1, ordering: .relaxed)
            return HTTPResponse(status: 200, text: "ok")
        }
        defer { server.stop() }
        let connections = try (0..<4).map { _ in try RawConnection(port: server.port) }
        for connection in connections { connection.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }
        #expect(connections.map { $0.response()?.status } == [200, 200, 200, 200])
        #expect(most.load(ordering: .relaxed) == 1)
    }

    @Test("The loop turns at least four times a second while idle, for a liveness probe")
    func turnsWhileIdle() throws {
        let turns = Atomic<Int>(0)
        let server = try HTTPServer(port: 0, host: "127.0.0.1", onTurn: { turns.add(1, ordering: .relaxed) }) { _ in
            HTTPResponse(status: 200)
        }
        defer { server.stop() }
        Thread.sleep(forTimeInterval: 1.1)
        #expect(turns.load(ordering: .relaxed) >= 4)
    }

    @Test("The parser's sizes: hex chunk sizes saturate instead of overflowing, Content-Length takes digits only")
    func sizes() throws {
        #expect(HTTPRequestParser.hexadecimal(ArraySlice("7fffffffffffffff".utf8)) == Int.max)
        #expect(HTTPRequestParser.hexadecimal(ArraySlice("ffffffffffffffffffff".utf8)) == Int.max)
        #expect(HTTPRequestParser.hexadecimal(ArraySlice("1A ".utf8)) == 26)
        #expect(HTTPRequestParser.hexadecimal(ArraySlice("-1".utf8)) == nil)
        #expect(HTTPRequestParser.decimal("+5") == nil)
        #expect(HTTPRequestParser.decimal("99999999999999999999") == nil)
        let twice = HTTPRequest(
            method: "POST", target: "/", headers: HTTPHeaders([("Content-Length", "5"), ("Content-Length", "6")]))
        #expect(throws: HTTPRequestParser.Failure(status: 400, message: "bad Content-Length")) {
            try HTTPRequestParser.framing(of: twice, limit: 100)
        }
    }
}
