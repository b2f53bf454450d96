import Foundation
import Runtime
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A request for `HTTPClient`.
public struct HTTPClientRequest: Sendable {
    public var method: String
    public var url: URL
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// Whether sending it twice does no harm (reads, upserts, deletes), so that it may be retried
    /// after an answer that does not say it was not applied (5xx, a timeout). A 429 is always
    /// retried: the service did not run the request. Default: true for every method but POST.
    public var idempotent: Bool

    public init(
        method: String, url: URL, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [], idempotent: Bool? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.idempotent = idempotent ?? (method != "POST")
    }
}

/// What `HTTPClient` got back.
public struct HTTPClientResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// How many times the request was sent.
    public var attempts: Int
}

/// The request could not be completed: no answer, after every attempt allowed.
public struct HTTPTransportError: Error, Sendable, CustomStringConvertible {
    public var method: String
    public var url: String
    public var reason: String
    public var attempts: Int

    public var description: String {
        "\(method) \(url): \(reason) (after \(attempts) attempt\(attempts == 1 ? "" : "s"))"
    }
}

/// The HTTP client of the connectors, on Foundation's `URLSession`: keep-alive, TLS, a timeout per
/// request, bounded retries (429 and 503 after their `Retry-After`, other 5xx and transport errors
/// with exponential backoff and full jitter), a concurrency limit per identity (the services limit
/// concurrent requests per user), and metrics. It logs method, host and path of retried requests,
/// never bodies, queries or headers (they carry tokens and data).
public final class HTTPClient: Sendable {
    public struct Configuration: Sendable {
        /// One attempt, from sending to the whole answer. Default: 30 s.
        public var requestTimeout = Duration.seconds(30)
        /// Attempts of one request, the first included. Default: 6.
        public var maxAttempts = 6
        /// Backoff before the second attempt; doubles each time, up to `maxBackoff`. Default: 200 ms.
        public var initialBackoff = Duration.milliseconds(200)
        /// Default: 30 s.
        public var maxBackoff = Duration.seconds(30)
        /// A `Retry-After` longer than this is not waited for: the response is returned. Default: 300 s.
        public var maxRetryAfter = Duration.seconds(300)
        /// Requests in flight per identity. Default: 16.
        public var maxConcurrency = 16
        /// Whether a 429 or 503 is waited out and sent again here; off for a caller that paces
        /// itself by the answer (apply pauses the partitions and shrinks its concurrency).
        public var retriesThrottled = true

        public init() {}
    }

    public let configuration: Configuration
    public let metrics = HTTPClientMetrics()
    private let session: URLSession
    private let log: Log
    private let limiters = Mutex<[String: ConcurrencyLimiter]>([:])

    public init(configuration: Configuration = Configuration(), log: Log = Log()) {
        self.configuration = configuration
        self.log = log
        let sessionConfiguration = URLSessionConfiguration.ephemeral
        sessionConfiguration.timeoutIntervalForRequest = configuration.requestTimeout.seconds
        sessionConfiguration.timeoutIntervalForResource = configuration.requestTimeout.seconds
        sessionConfiguration.httpMaximumConnectionsPerHost = max(1, configuration.maxConcurrency)
        sessionConfiguration.requestCachePolicy = .reloadIgnoringLocalCacheData
        sessionConfiguration.httpCookieStorage = nil
        session = URLSession(configuration: sessionConfiguration)
    }

    deinit { session.invalidateAndCancel() }

    /// The limiter of `identity` (created with `maxConcurrency` slots on first use).
    public func limiter(for identity: String) -> ConcurrencyLimiter {
        limiters.withLock { limiters in
            if let limiter = limiters[identity] { return limiter }
            let limiter = ConcurrencyLimiter(limit: configuration.maxConcurrency)
            limiters[identity] = limiter
            return limiter
        }
    }

    /// Sends `request` for `identity`, retrying as the configuration allows; returns the final
    /// response, whatever its status. Throws `HTTPTransportError` when no answer came, and
    /// `CancellationError` when the task is cancelled (a stop).
    public func send(_ request: HTTPClientRequest, identity: String = "") async throws -> HTTPClientResponse {
        var urlRequest = URLRequest(url: request.url)
        urlRequest.httpMethod = request.method
        for (name, value) in request.headers.entries { urlRequest.addValue(value, forHTTPHeaderField: name) }
        if !request.body.isEmpty { urlRequest.httpBody = Data(request.body) }
        urlRequest.timeoutInterval = configuration.requestTimeout.seconds
        let limiter = limiter(for: identity)
        var attempt = 0
        while true {
            attempt += 1
            try Task.checkCancellation()
            let started = ContinuousClock.now
            let outcome: Result<(Data, URLResponse), any Error>
            await limiter.acquire()
            do {
                outcome = .success(try await session.data(for: urlRequest))
            } catch {
                outcome = .failure(error)
            }
            await limiter.release()
            metrics.latency.observe(seconds: (ContinuousClock.now - started).seconds)
            let wait: Duration
            switch outcome {
            case .success(let (data, response)):
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                metrics.count(status: status)
                var headers = HTTPHeaders()
                for (name, value) in (response as? HTTPURLResponse)?.allHeaderFields ?? [:] {
                    headers.add("\(name)", "\(value)")
                }
                let result = HTTPClientResponse(status: status, headers: headers, body: Array(data), attempts: attempt)
                guard let pause = retryPause(status: status, headers: headers, request: request, attempt: attempt)
                else { return result }
                wait = pause
                log.warning(
                    "retrying",
                    [
                        ("method", .string(request.method)), ("host", .string(request.url.host ?? "")),
                        ("path", .string(request.url.path)), ("status", .int(Int64(status))),
                        ("attempt", .int(Int64(attempt))), ("wait_ms", .int(Int64(wait.seconds * 1000))),
                    ])
            case .failure(let error):
                if error is CancellationError || (error as? URLError)?.code == .cancelled { throw CancellationError() }
                metrics.count(status: 0)
                let reason = (error as? URLError).map { "\($0.code)" } ?? "\(error)"
                guard request.idempotent, attempt < configuration.maxAttempts else {
                    throw HTTPTransportError(
                        method: request.method, url: "\(request.url.host ?? "")\(request.url.path)", reason: reason,
                        attempts: attempt)
                }
                wait = backoff(attempt: attempt)
                log.warning(
                    "retrying",
                    [
                        ("method", .string(request.method)), ("host", .string(request.url.host ?? "")),
                        ("path", .string(request.url.path)), ("error", .string(reason)),
                        ("attempt", .int(Int64(attempt))), ("wait_ms", .int(Int64(wait.seconds * 1000))),
                    ])
            }
            metrics.retries.add()
            try await Task.sleep(for: wait)
        }
    }

    /// How long to wait before sending again, or nil to return `status` as it is.
    private func retryPause(status: Int, headers: HTTPHeaders, request: HTTPClientRequest, attempt: Int) -> Duration? {
        guard attempt < configuration.maxAttempts else { return nil }
        switch status {
        case 429, 503:
            if status == 429 { metrics.throttled.add() }
            guard configuration.retriesThrottled, status == 429 || request.idempotent else { return nil }
            if let after = headers["Retry-After"].flatMap(Self.retryAfter) {
                return after <= configuration.maxRetryAfter ? after : nil
            }
            return backoff(attempt: attempt)
        case 500, 502, 504:
            return request.idempotent ? backoff(attempt: attempt) : nil
        default:
            return nil
        }
    }

    /// Full jitter: a random pause up to the doubled backoff.
    private func backoff(attempt: Int) -> Duration {
        Backoff(initial: configuration.initialBackoff, maximum: configuration.maxBackoff).pause(after: attempt)
    }

    /// `Retry-After` as seconds or as an HTTP date.
    package static func retryAfter(_ text: String) -> Duration? {
        if let seconds = Double(text.trimmingCharacters(in: .whitespaces)), seconds >= 0 { return .seconds(seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: text) else { return nil }
        return .seconds(max(0, date.timeIntervalSinceNow))
    }
}

/// Requests in flight for one identity, at most `limit`; the limit can change while in use (a
/// connector shrinks it when the service throttles and grows it back).
public actor ConcurrencyLimiter {
    public private(set) var limit: Int
    public private(set) var inFlight = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

    public init(limit: Int) { self.limit = max(1, limit) }

    /// Waits for a slot.
    public func acquire() async {
        if inFlight < limit {
            inFlight += 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    /// Gives a slot back (to the longest waiter, if the limit allows).
    public func release() {
        if !waiting.isEmpty && inFlight <= limit {
            waiting.removeFirst().resume()
        } else {
            inFlight -= 1
        }
    }

    /// Sets the limit (at least 1); waiters get the slots it adds.
    public func setLimit(_ newLimit: Int) {
        limit = max(1, newLimit)
        while inFlight < limit && !waiting.isEmpty {
            inFlight += 1
            waiting.removeFirst().resume()
        }
    }
}

/// Requests by status, retries, throttling and latency of an `HTTPClient`.
public final class HTTPClientMetrics: Sendable {
    /// Answers by status code; 0 counts requests that got no answer.
    private let statuses = Mutex<[Int: Int]>([:])
    public let retries = Counter()
    public let throttled = Counter()
    public let latency = Histogram(
        name: "p2c_http_request_seconds", help: "Time of one HTTP attempt, from sending to the whole answer.")

    func count(status: Int) { statuses.withLock { $0[status, default: 0] += 1 } }

    /// Answers with `status` so far.
    public func count(of status: Int) -> Int { statuses.withLock { $0[status] ?? 0 } }

    /// Prometheus text exposition, with `labels` (e.g. `system="dataverse"`).
    public func exposition(labels: String) -> String {
        let prefix = labels.isEmpty ? "" : labels + ","
        let byStatus = statuses.withLock { $0 }.sorted { $0.key < $1.key }
        return [
            Exposition.family(
                "p2c_http_requests_total", type: "counter", help: "HTTP attempts by status (0: no answer).",
                samples: byStatus.map { ("\(prefix)status=\"\($0.key)\"", Double($0.value)) }),
            Exposition.family(
                "p2c_http_retries_total", type: "counter", help: "HTTP attempts sent again.",
                samples: [(labels, Double(retries.value))]),
            Exposition.family(
                "p2c_http_throttled_total", type: "counter", help: "429 answers (service protection limits).",
                samples: [(labels, Double(throttled.value))]),
            latency.exposition(labels: labels),
        ].joined(separator: "\n") + "\n"
    }
}
