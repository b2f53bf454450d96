import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The probes' and metrics' responder: GET (and HEAD) of a path, on an `HTTPServer`.
public final class HTTPResponder: Sendable {
    /// What a GET of a path answers.
    public struct Response: Sendable {
        public var status: Int
        public var contentType: String
        public var body: String

        public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }
    }

    private let server: HTTPServer

    /// The port it listens on (the one the system chose when asked for 0).
    public var port: Int { server.port }

    /// Listens on `port` of `host` (every interface by default) and answers GETs with
    /// `handler(path)`. A port of its own, apart from any other server of the member: probes hold
    /// while another port is flooded. Its requests have no body, their heads are due within 5 s.
    public init(port: Int, host: String = "0.0.0.0", handler: @escaping @Sendable (String) -> Response) throws {
        var limits = HTTPServer.Limits()
        limits.maxBodyBytes = 0
        limits.maxHeaderBytes = 8 * 1024
        limits.maxConnections = 128
        limits.maxRequests = 4
        limits.headTimeout = .seconds(5)
        limits.bodyTimeout = .seconds(5)
        limits.idleTimeout = .seconds(10)
        server = try HTTPServer(
            port: port, host: host, limits: limits,
            admit: { request in
                request.method == "GET" || request.method == "HEAD"
                    ? nil : HTTPResponse(status: 405, text: "only GET\n")
            }
        ) { request in
            let response = handler(request.path)
            return HTTPResponse(status: response.status, text: response.body, contentType: response.contentType)
        }
    }

    /// Stops answering.
    public func stop() { server.stop(timeout: .seconds(1)) }
}

/// The client side of the probes, for local use (the demo waiting for its workers, tests): a plain
/// socket, one GET, no keep-alive.
public enum LocalHTTP {
    /// A loopback port nothing listens on right now, for a child process to listen on. Chosen
    /// below the kernel's ephemeral range (`ip_local_port_range`), where outgoing connections never
    /// land: a port the kernel handed out for a bind to port 0 was now and then taken by a Kafka
    /// client's connection before the child bound it ("Address already in use", exit code 2).
    /// A port is handed out once per process: two callers starting children at once would
    /// otherwise both be given a port neither child has bound yet.
    public static func freePort() -> Int {
        let firstEphemeral =
            (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
            .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32_768
        if firstEphemeral > 11_000 {
            for _ in 0..<200 {
                let port = Int.random(in: 10_000..<firstEphemeral)
                guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
                if bind(port: port) != nil { return port }
            }
        }
        return bind(port: 0) ?? 0
    }

    private static let handedOut = Mutex<Set<Int>>([])

    /// Binds a socket to `port` on every interface (as the responder listens) and closes it: the
    /// port it got, or nil when taken.
    private static func bind(port: Int) -> Int? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { return nil }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A socket connected to `127.0.0.1:port` whose reads wait at most `timeoutSeconds`, or nil
    /// when nothing listens there. The caller closes it.
    public static func connect(port: Int, timeoutSeconds: Int = 5) -> Int32? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(descriptor)
            return nil
        }
        return descriptor
    }

    /// GET `path` from `127.0.0.1:port`: status and body, or nil when nothing answers in `timeoutSeconds`.
    public static func get(port: Int, path: String, timeoutSeconds: Int = 5) -> (status: Int, body: String)? {
        guard let descriptor = connect(port: port, timeoutSeconds: timeoutSeconds) else { return nil }
        defer { close(descriptor) }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            response += buffer[0..<count]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let statusText = text.split(separator: " ").dropFirst().first, let status = Int(statusText),
            let split = text.range(of: "\r\n\r\n")
        else { return nil }
        return (status, String(text[split.upperBound...]))
    }
}

/// A fleet member's liveness and readiness: its loop's last turn (for `/healthz`, never tied to
/// the broker or the system it talks to) and whether it has joined its group (`/readyz`).
public final class Liveness: Sendable {
    private let lastTurn = Atomic<Int>(0)
    private let joined = Atomic<Bool>(false)
    private let started = ContinuousClock.now

    public init() {}

    private var millisecondsSinceStart: Int { Int((ContinuousClock.now - started) / .milliseconds(1)) }

    /// The loop turned.
    public func tick() { lastTurn.store(millisecondsSinceStart, ordering: .relaxed) }

    /// The member joined its group (or needs none).
    public func ready() { joined.store(true, ordering: .relaxed) }

    public var isReady: Bool { joined.load(ordering: .relaxed) }

    /// The loop turned within `watchdog`.
    public func isHealthy(watchdog: Duration) -> Bool {
        millisecondsSinceStart - lastTurn.load(ordering: .relaxed) < Int(watchdog / .milliseconds(1))
    }
}

extension HTTPResponder {
    /// The probes of a fleet member on `port`: `/metrics` (what `metrics` returns, Prometheus
    /// text), `/healthz` while the loop turns, `/readyz` once it is ready.
    public static func probes(
        port: Int, host: String = "0.0.0.0", liveness: Liveness, watchdog: Duration,
        metrics: @escaping @Sendable () -> String
    ) throws -> HTTPResponder {
        try HTTPResponder(port: port, host: host) { path in
            switch path {
            case "/metrics":
                return .init(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics())
            case "/healthz":
                return liveness.isHealthy(watchdog: watchdog)
                    ? .init(status: 200, body: "ok\n") : .init(status: 503, body: "the loop is stuck\n")
            case "/readyz":
                return liveness.isReady
                    ? .init(status: 200, body: "ready\n") : .init(status: 503, body: "not in the group yet\n")
            default:
                return .init(status: 404, body: "try /metrics, /healthz or /readyz\n")
            }
        }
    }
}
