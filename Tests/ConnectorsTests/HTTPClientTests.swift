import Connectors
import Foundation
import Runtime
import Synchronization
import Testing

/// A local service whose answers a test scripts, and what it was sent.
final class ScriptedService: Sendable {
    struct Seen: Sendable {
        var request: HTTPRequest
        var at: ContinuousClock.Instant
    }

    /// What the server's handler shares with the test.
    private final class State: Sendable {
        let answers: Mutex<[HTTPResponse]>
        let seen = Mutex<[Seen]>([])
        let concurrent = Atomic<Int>(0)
        let mostConcurrent = Atomic<Int>(0)
        init(_ answers: [HTTPResponse]) { self.answers = Mutex(answers) }
    }

    private let state: State
    let server: HTTPServer

    /// Answers with `answers` in turn, then with `otherwise`; each answer after `delay`.
    init(
        _ answers: [HTTPResponse], otherwise: HTTPResponse = HTTPResponse(status: 200, text: "ok"), delay: Double = 0
    )
        throws
    {
        let state = State(answers)
        self.state = state
        server = try HTTPServer(port: 0, host: "127.0.0.1") { request in
            state.seen.withLock { $0.append(Seen(request: request, at: .now)) }
            let now = state.concurrent.add(1, ordering: .relaxed).newValue
            state.mostConcurrent.max(now, ordering: .relaxed)
            if delay > 0 { Thread.sleep(forTimeInterval: delay) }
            state.concurrent.subtract(1, ordering: .relaxed)
            return state.answers.withLock { $0.isEmpty ? otherwise : $0.removeFirst() }
        }
    }

    var url: URL { URL(string: "http://127.0.0.1:\(server.port)")! }
    var requests: [Seen] { state.seen.withLock { $0 } }
    var peakConcurrency: Int { state.mostConcurrent.load(ordering: .relaxed) }
    func stop() { server.stop() }
}

private func quickClient(maxAttempts: Int = 6, maxConcurrency: Int = 16) -> HTTPClient {
    var configuration = HTTPClient.Configuration()
    configuration.initialBackoff = .milliseconds(10)
    configuration.maxBackoff = .milliseconds(50)
    configuration.maxAttempts = maxAttempts
    configuration.maxConcurrency = maxConcurrency
    configuration.requestTimeout = .seconds(5)
    return HTTPClient(configuration: configuration)
}

@Suite("The connectors' HTTP client: retries, Retry-After, concurrency per identity")
struct HTTPClientTests {
    @Test("429 with Retry-After is waited out and sent again, even for a POST: the service ran nothing")
    func retryAfter() async throws {
        let throttled = HTTPResponse(status: 429, headers: HTTPHeaders([("Retry-After", "1")]))
        let service = try ScriptedService([throttled, throttled])
        defer { service.stop() }
        let client = quickClient()
        let response = try await client.send(
            HTTPClientRequest(method: "POST", url: service.url.appendingPathComponent("api/data/v9.2/$batch")))
        #expect(response.status == 200)
        #expect(response.attempts == 3)
        let times = service.requests.map(\.at)
        #expect(times.count == 3)
        for (earlier, later) in zip(times, times.dropFirst()) { #expect(later - earlier >= .milliseconds(950)) }
        #expect(client.metrics.throttled.value == 2)
        #expect(
            client.metrics.exposition(labels: "system=\"dataverse\"").contains(
                "p2c_http_requests_total{system=\"dataverse\",status=\"429\"} 2"))
    }

    @Test("A 503 is retried for an upsert but returned at once for a POST, which may have been applied")
    func idempotency() async throws {
        let unavailable = HTTPResponse(status: 503)
        let service = try ScriptedService([unavailable, HTTPResponse(status: 200), unavailable])
        defer { service.stop() }
        let client = quickClient()
        let upsert = try await client.send(
            HTTPClientRequest(method: "PATCH", url: service.url.appendingPathComponent("accounts")))
        #expect(upsert.status == 200 && upsert.attempts == 2)
        let create = try await client.send(
            HTTPClientRequest(method: "POST", url: service.url.appendingPathComponent("accounts")))
        #expect(create.status == 503 && create.attempts == 1)
    }

    @Test("A refusal (400) is returned at once; retries stop after the allowed attempts")
    func boundedRetries() async throws {
        let service = try ScriptedService(
            [HTTPResponse(status: 400, text: #"{"error":{"code":"0x80040333","message":"duplicate"}}"#)],
            otherwise: HTTPResponse(status: 500))
        defer { service.stop() }
        let client = quickClient(maxAttempts: 3)
        let refused = try await client.send(HTTPClientRequest(method: "PATCH", url: service.url))
        #expect(refused.status == 400 && refused.attempts == 1)
        #expect(String(decoding: refused.body, as: UTF8.self).contains("0x80040333"))
        let failing = try await client.send(HTTPClientRequest(method: "GET", url: service.url))
        #expect(failing.status == 500 && failing.attempts == 3)
        #expect(service.requests.count == 4)
    }

    @Test("Nobody listening: a bounded number of attempts, then an error naming the request, not its query")
    func transportError() async throws {
        let port = LocalHTTP.freePort()
        let client = quickClient(maxAttempts: 3)
        let error = await #expect(throws: HTTPTransportError.self) {
            try await client.send(
                HTTPClientRequest(
                    method: "GET", url: URL(string: "http://127.0.0.1:\(port)/api/data/v9.2/accounts?$filter=secret")!))
        }
        #expect(error?.attempts == 3)
        #expect(error?.description.contains("secret") == false)
        #expect(client.metrics.count(of: 0) == 3)
    }

    @Test("At most the identity's limit of requests is in flight; other identities are not held up by it")
    func concurrencyLimit() async throws {
        let service = try ScriptedService([], delay: 0.1)
        defer { service.stop() }
        let client = quickClient(maxConcurrency: 3)
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<12 {
                group.addTask {
                    try await client.send(HTTPClientRequest(method: "GET", url: service.url), identity: "apply-1")
                        .status
                }
            }
            for try await status in group { #expect(status == 200) }
        }
        #expect(service.peakConcurrency <= 3)
        #expect(service.peakConcurrency >= 2)
        let limiter = client.limiter(for: "apply-1")
        #expect(await limiter.inFlight == 0)
        await limiter.setLimit(1)
        #expect(await limiter.limit == 1)
        #expect(await client.limiter(for: "apply-2").limit == 3)
    }
}
