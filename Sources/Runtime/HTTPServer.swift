import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A small HTTP/1.1 server for the probes, the simulated systems and the webhook receivers:
/// keep-alive, `Content-Length` and chunked request bodies, and limits on everything a client
/// controls. Not a general web server (no TLS: put a proxy in front).
///
/// One loop thread accepts connections and reads request heads, each within a deadline for the
/// whole head (not per byte); a full house of connections gives way to a new one by closing the
/// one that has waited longest for its head. A request is admitted (`admit`) from its head alone,
/// so a refused one costs no body read. Admitted requests are served by at most
/// `Limits.maxRequests` threads, each reading its body within a deadline, so the memory bodies
/// take is at most `maxRequests × maxBodyBytes`.
public final class HTTPServer: Sendable {
    /// What the server accepts.
    public struct Limits: Sendable {
        /// Request line and headers together. Default: 16 KiB.
        public var maxHeaderBytes = 16 * 1024
        /// A request body. Default: 4 MiB.
        public var maxBodyBytes = 4 * 1024 * 1024
        /// Connections open at once, those waiting for a request included. Default: 512.
        public var maxConnections = 512
        /// Requests read and answered at once (their bodies in memory); more wait their turn.
        /// Default: 64.
        public var maxRequests = 64
        /// A request's head arrives whole within this of its first byte (of the connection's
        /// opening, for its first request), or the connection is closed. Default: 10 s.
        public var headTimeout = Duration.seconds(10)
        /// A request's body arrives whole within this of its head, and a response is written
        /// within this. Default: 30 s.
        public var bodyTimeout = Duration.seconds(30)
        /// A keep-alive connection with no new request for this long is closed. Default: 30 s.
        public var idleTimeout = Duration.seconds(30)

        public init() {}
    }

    /// The port it listens on (the one the system chose when asked for 0).
    public let port: Int
    private let socket: Int32
    private let wake: (read: Int32, write: Int32)
    private let limits: Limits
    private let admit: (@Sendable (HTTPRequest) -> HTTPResponse?)?
    private let onTurn: (@Sendable () -> Void)?
    private let handler: @Sendable (HTTPRequest) -> HTTPResponse
    private let stopped = Atomic<Bool>(false)
    private let loopEnded = Atomic<Bool>(false)
    private let connections = Atomic<Int>(0)
    /// Keep-alive connections the request threads hand back to the loop.
    private let handedBack = Mutex<[Connection]>([])
    private let requests = Mutex<RequestQueue>(RequestQueue())

    /// Listens on `port` (0 picks one) of `host`, an IPv4 address (every interface by default),
    /// and answers every request with `handler`, called on a request thread. `admit` sees each
    /// request's head first: a response it returns is sent instead, without reading the body, and
    /// the connection closed. `onTurn` is called on every turn of the loop (at least 4 times a
    /// second), for a liveness probe.
    public init(
        port: Int, host: String = "0.0.0.0", limits: Limits = Limits(),
        admit: (@Sendable (HTTPRequest) -> HTTPResponse?)? = nil, onTurn: (@Sendable () -> Void)? = nil,
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse
    ) throws {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(clamping: port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw HTTPError("listen address '\(host)' is not an IPv4 address")
        }
        let descriptor = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw HTTPError("socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(descriptor, 1024) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw HTTPError("port \(port): \(reason)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else {
            close(descriptor)
            throw HTTPError("pipe: \(String(cString: strerror(errno)))")
        }
        for end in [descriptor] + ends { Self.makeNonBlocking(end) }
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        self.socket = descriptor
        self.wake = (ends[0], ends[1])
        self.limits = limits
        self.admit = admit
        self.onTurn = onTurn
        self.handler = handler
        let thread = Thread { [self] in
            var loop = EventLoop(server: self)
            loop.run()
        }
        thread.name = "p2c-http-loop"
        thread.start()
    }

    deinit {
        close(wake.read)
        close(wake.write)
    }

    /// Raises the process's soft limit of open descriptors to its hard limit, so that a flood of
    /// connections meets the server's own limits (`maxConnections`) before the system's.
    public static func raiseDescriptorLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// Connections open right now.
    public var openConnections: Int { connections.load(ordering: .relaxed) }

    /// Stops accepting, lets requests in progress finish (their responses say `Connection: close`)
    /// and closes idle connections; returns once every connection is closed or `timeout` passed.
    public func stop(timeout: Duration = .seconds(5)) {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        wakeLoop()
        let deadline = ContinuousClock.now + timeout
        while (connections.load(ordering: .relaxed) > 0 || !loopEnded.load(ordering: .relaxed))
            && ContinuousClock.now < deadline
        {
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    /// Non-blocking, and closed in a child process at exec.
    private static func makeNonBlocking(_ descriptor: Int32) {
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
    }

    private func wakeLoop() {
        var byte: UInt8 = 1
        _ = Glibc.write(wake.write, &byte, 1)
    }

    private func closeConnection(_ descriptor: Int32) {
        close(descriptor)
        connections.subtract(1, ordering: .relaxed)
    }

    // MARK: - The loop: accepting, reading heads

    /// A connection's state while the loop holds it. Owned by one thread at a time (the loop,
    /// or the request thread it was handed to), hence unchecked.
    private final class Connection: @unchecked Sendable {
        enum Phase {
            /// Waiting for (the rest of) a request head until the deadline.
            case head(ContinuousClock.Instant)
            /// Kept alive, waiting for the next request's first byte.
            case idle(ContinuousClock.Instant)
            /// Refused: the response is sent, what the client still sends is discarded until the
            /// deadline, so that it reads the response before the connection closes.
            case closing(ContinuousClock.Instant)
        }

        let descriptor: Int32
        var input = InputBuffer()
        var phase: Phase
        /// Since when it has been waiting: a full house closes the longest waiting first.
        var since = ContinuousClock.now

        init(descriptor: Int32, phase: Phase) {
            self.descriptor = descriptor
            self.phase = phase
        }

        var deadline: ContinuousClock.Instant {
            switch phase {
            case .head(let deadline), .idle(let deadline), .closing(let deadline): deadline
            }
        }
    }

    private struct EventLoop {
        let server: HTTPServer
        var waiting: [Int32: Connection] = [:]
        var acceptPausedUntil = ContinuousClock.now

        init(server: HTTPServer) { self.server = server }

        mutating func run() {
            defer {
                for connection in waiting.values { server.closeConnection(connection.descriptor) }
                close(server.socket)
                server.loopEnded.store(true, ordering: .relaxed)
            }
            var descriptors: [pollfd] = []
            while !server.stopped.load(ordering: .relaxed) {
                takeHandedBack()
                descriptors.removeAll(keepingCapacity: true)
                let accepting = acceptPausedUntil <= .now
                descriptors.append(pollfd(fd: server.socket, events: accepting ? Int16(POLLIN) : 0, revents: 0))
                descriptors.append(pollfd(fd: server.wake.read, events: Int16(POLLIN), revents: 0))
                for descriptor in waiting.keys {
                    descriptors.append(pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0))
                }
                let now = ContinuousClock.now
                let nearest = waiting.values.lazy.map(\.deadline).min() ?? now + .milliseconds(250)
                let wait = max(0, min(250, Int((nearest - now) / .milliseconds(1)) + 1))
                let ready = poll(&descriptors, nfds_t(descriptors.count), Int32(wait))
                server.onTurn?()
                if ready > 0 {
                    if descriptors[1].revents != 0 { drainWake() }
                    for entry in descriptors.dropFirst(2) where entry.revents != 0 {
                        if let connection = waiting[entry.fd] { read(connection) }
                    }
                    if descriptors[0].revents != 0 { acceptWaiting() }
                }
                expire()
            }
        }

        private mutating func takeHandedBack() {
            let connections = server.handedBack.withLock { handed in
                defer { handed.removeAll() }
                return handed
            }
            for connection in connections {
                connection.phase = .idle(.now + server.limits.idleTimeout)
                connection.since = .now
                waiting[connection.descriptor] = connection
                // A pipelined request may be read already.
                if !connection.input.isEmpty {
                    connection.phase = .head(.now + server.limits.headTimeout)
                    advance(connection)
                }
            }
        }

        private func drainWake() {
            var bytes = [UInt8](repeating: 0, count: 64)
            while Glibc.read(server.wake.read, &bytes, bytes.count) > 0 {}
        }

        private mutating func acceptWaiting() {
            for _ in 0..<256 {
                let descriptor = accept(server.socket, nil, nil)
                guard descriptor >= 0 else {
                    guard errno == EMFILE || errno == ENFILE else { return }
                    // Out of descriptors: the connection waiting longest gives way, or accepting
                    // pauses a moment (the connection stays in the backlog).
                    guard let oldest = waiting.values.min(by: { $0.since < $1.since }) else {
                        acceptPausedUntil = .now + .milliseconds(100)
                        return
                    }
                    drop(oldest)
                    continue
                }
                HTTPServer.makeNonBlocking(descriptor)
                var keepAlive: Int32 = 1
                setsockopt(descriptor, SOL_SOCKET, SO_KEEPALIVE, &keepAlive, socklen_t(MemoryLayout<Int32>.size))
                let open = server.connections.add(1, ordering: .relaxed).newValue
                if open > server.limits.maxConnections {
                    // A full house: the connection waiting longest for its request gives way.
                    guard let oldest = waiting.values.min(by: { $0.since < $1.since }) else {
                        HTTPServer.send(
                            HTTPServer.encode(
                                HTTPResponse(status: 503, text: "too many connections\n"), head: false,
                                keepAlive: false),
                            to: descriptor, until: .now)
                        server.closeConnection(descriptor)
                        continue
                    }
                    drop(oldest)
                }
                waiting[descriptor] = Connection(descriptor: descriptor, phase: .head(.now + server.limits.headTimeout))
            }
        }

        private mutating func drop(_ connection: Connection) {
            waiting[connection.descriptor] = nil
            server.closeConnection(connection.descriptor)
        }

        /// Reads what is there: a head's bytes (at most the head limit), or bytes to discard.
        private mutating func read(_ connection: Connection) {
            let room = max(1, server.limits.maxHeaderBytes - connection.input.available.count)
            let count = withUnsafeTemporaryAllocation(byteCount: min(room, 16 * 1024), alignment: 1) { buffer in
                let count = recv(connection.descriptor, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
                if count > 0, case .closing = connection.phase {
                    return count
                } else if count > 0 {
                    connection.input.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                }
                return count
            }
            if count == 0 || (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                drop(connection)
                return
            }
            guard count > 0 else { return }
            switch connection.phase {
            case .closing: return
            case .idle:
                connection.phase = .head(.now + server.limits.headTimeout)
                connection.since = .now
            case .head: break
            }
            advance(connection)
        }

        /// Hands a connection whose head is complete on, or refuses its request.
        private mutating func advance(_ connection: Connection) {
            let limits = server.limits
            do {
                guard
                    let length = try HTTPRequestParser.headLength(
                        in: connection.input.available, limit: limits.maxHeaderBytes)
                else { return }
                let request = try HTTPRequestParser.request(head: connection.input.available.prefix(length))
                connection.input.consume(length)
                if let refusal = server.admit?(request) {
                    refuse(connection, with: refusal)
                    return
                }
                let framing = try HTTPRequestParser.framing(of: request, limit: limits.maxBodyBytes)
                if framing != .none, request.headers["expect"]?.lowercased() == "100-continue" {
                    HTTPServer.send(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8), to: connection.descriptor, until: .now)
                }
                waiting[connection.descriptor] = nil
                server.enqueue(Pending(connection: connection, request: request, framing: framing))
            } catch let failure as HTTPRequestParser.Failure {
                refuse(connection, with: HTTPResponse(status: failure.status, text: failure.message + "\n"))
            } catch {
                drop(connection)
            }
        }

        /// Sends `response`, then discards what the client still sends for up to a second (at
        /// most 64 KiB a read), so that it sees the response rather than a reset.
        private mutating func refuse(_ connection: Connection, with response: HTTPResponse) {
            HTTPServer.send(
                HTTPServer.encode(response, head: false, keepAlive: false), to: connection.descriptor, until: .now)
            shutdown(connection.descriptor, Int32(SHUT_WR))
            connection.input = InputBuffer()
            connection.phase = .closing(.now + .seconds(1))
        }

        private mutating func expire() {
            let now = ContinuousClock.now
            for connection in waiting.values where connection.deadline <= now {
                if case .head = connection.phase, !connection.input.isEmpty {
                    HTTPServer.send(
                        HTTPServer.encode(
                            HTTPResponse(status: 408, text: "request head not complete in time\n"), head: false,
                            keepAlive: false),
                        to: connection.descriptor, until: now)
                }
                drop(connection)
            }
        }
    }

    // MARK: - Requests: bodies, the handler, responses

    /// A request whose head is read and admitted.
    private struct Pending: Sendable {
        var connection: Connection
        var request: HTTPRequest
        var framing: HTTPRequestParser.Framing
        var queued = ContinuousClock.now
    }

    private struct RequestQueue {
        var pending: [Pending] = []
        var threads = 0
    }

    /// Serves `pending` on a request thread, starting one while fewer than `maxRequests` run.
    private func enqueue(_ pending: Pending) {
        let start = requests.withLock { queue in
            if queue.threads < limits.maxRequests {
                queue.threads += 1
                return true
            }
            queue.pending.append(pending)
            return false
        }
        guard start else { return }
        let thread = Thread { [self] in
            var next: Pending? = pending
            while let pending = next {
                serve(pending)
                next = requests.withLock { queue in
                    guard !queue.pending.isEmpty else {
                        queue.threads -= 1
                        return nil
                    }
                    return queue.pending.removeFirst()
                }
            }
        }
        thread.name = "p2c-http"
        thread.start()
    }

    private func serve(_ pending: Pending) {
        let connection = pending.connection
        let descriptor = connection.descriptor
        var request = pending.request
        let deadline = ContinuousClock.now + limits.bodyTimeout
        guard pending.queued + limits.bodyTimeout > .now else {
            Self.send(
                Self.encode(HTTPResponse(status: 503, text: "busy\n"), head: false, keepAlive: false), to: descriptor,
                until: deadline)
            closeConnection(descriptor)
            return
        }
        do {
            request.body = try HTTPRequestParser.body(
                pending.framing, from: &connection.input, limit: limits.maxBodyBytes
            ) { input in try Self.receive(from: descriptor, into: &input, until: deadline) }
        } catch let failure as HTTPRequestParser.Failure {
            Self.send(
                Self.encode(
                    HTTPResponse(status: failure.status, text: failure.message + "\n"), head: false, keepAlive: false),
                to: descriptor, until: deadline)
            closeConnection(descriptor)
            return
        } catch {
            closeConnection(descriptor)
            return
        }
        let response = handler(request)
        let keepAlive = request.keepAlive && !stopped.load(ordering: .relaxed)
        let written = Self.send(
            Self.encode(response, head: request.method == "HEAD", keepAlive: keepAlive), to: descriptor,
            until: .now + limits.bodyTimeout)
        guard written, keepAlive else {
            closeConnection(descriptor)
            return
        }
        handedBack.withLock { $0.append(connection) }
        wakeLoop()
    }

    /// The end of the stream, or a deadline passed.
    struct Closed: Error {}

    /// Appends what arrives on `descriptor` to `input`, waiting for it until `deadline`.
    private static func receive(
        from descriptor: Int32, into input: inout InputBuffer, until deadline: ContinuousClock.Instant
    ) throws {
        while true {
            let count = withUnsafeTemporaryAllocation(byteCount: 16 * 1024, alignment: 1) { buffer in
                let count = recv(descriptor, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
                if count > 0 { input.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count])) }
                return count
            }
            if count > 0 { return }
            guard count < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else { throw Closed() }
            try wait(for: Int16(POLLIN), on: descriptor, until: deadline)
        }
    }

    /// Waits until `descriptor` is ready for `events`, at most until `deadline`.
    private static func wait(for events: Int16, on descriptor: Int32, until deadline: ContinuousClock.Instant) throws {
        let left = deadline - .now
        guard left > .zero else { throw Closed() }
        var entry = pollfd(fd: descriptor, events: events, revents: 0)
        _ = poll(&entry, 1, Int32(min(1_000, left / .milliseconds(1) + 1)))
    }

    /// The bytes of `response` on the wire.
    static func encode(_ response: HTTPResponse, head: Bool, keepAlive: Bool) -> [UInt8] {
        var text = "HTTP/1.1 \(response.status) \(HTTPResponse.reason(response.status))\r\n"
        for (name, value) in response.headers.entries
        where name.lowercased() != "content-length" && name.lowercased() != "connection" {
            text += "\(name): \(value)\r\n"
        }
        text += "Content-Length: \(response.body.count)\r\nConnection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        var bytes = Array(text.utf8)
        if !head { bytes += response.body }
        return bytes
    }

    /// Writes `bytes` whole by `deadline` (what the socket takes at once, for a deadline now);
    /// false when the peer has gone or the deadline passed.
    @discardableResult
    static func send(_ bytes: [UInt8], to descriptor: Int32, until deadline: ContinuousClock.Instant) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if count > 0 {
                sent += count
                continue
            }
            guard count < 0, errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else { return false }
            do {
                try wait(for: Int16(POLLOUT), on: descriptor, until: deadline)
            } catch {
                return false
            }
        }
        return true
    }
}

/// Why the server could not start.
public struct HTTPError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
