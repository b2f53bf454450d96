import Foundation
import OData
import ProspectToCash
import Runtime
import Synchronization

/// An Entra application registered with a simulated service: Dataverse makes it an application user ("Use
/// single-tenant server-to-server authentication"), F&O maps it to the user its calls run as ("Service endpoints
/// overview").
public struct SimulatedClient: Sendable, Equatable {
    /// The Entra application (client) id, a GUID.
    public var id: UUID
    public var secret: String
    /// The user the calls run as: Dataverse's `systemuserid` of the application user.
    public var systemUserID: UUID

    public init(id: UUID, secret: String, systemUserID: UUID = UUID()) {
        self.id = id
        self.secret = secret
        self.systemUserID = systemUserID
    }

    /// `<client id>:<secret>`, as `--client` takes it.
    public init(parsing text: String) throws(UsageError) {
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let id = UUID(uuidString: String(parts[0])), !parts[1].isEmpty else {
            throw UsageError("--client expects <client id GUID>:<secret>, got '\(text.prefix(40))'")
        }
        self.init(id: id, secret: String(parts[1]))
    }
}

/// Service protection limits per user ("Service protection API limits": 6,000 requests and 1,200 s of combined
/// execution time in a 5-minute sliding window, 52 concurrent requests; the defaults; F&O documented the same
/// user-based figures until 10.0.36, "Service protection API limits"), and the execution-time model: what each
/// operation costs (the docs give no figure, so it is a setting; a request runs for its cost and counts it against
/// `execution`).
public struct ServiceLimits: Sendable, Equatable {
    public var requests = 6_000
    public var window = Duration.seconds(300)
    public var concurrent = 52
    public var execution = Duration.seconds(1_200)
    /// Execution time of one write (in a request or a `$batch`) and of one read.
    public var writeCost = Duration.zero
    public var readCost = Duration.zero

    public init() {}

    /// `requests=6000,window=300,concurrent=52,exec=1200,write=10ms,read=2ms`, any subset.
    public init(parsing text: String) throws(UsageError) {
        for item in text.split(separator: ",") {
            let pair = item.split(separator: "=", maxSplits: 1)
            if pair.count == 2, pair[0] == "write" || pair[0] == "read", pair[1].hasSuffix("ms"),
                let milliseconds = Int(pair[1].dropLast(2)), milliseconds >= 0
            {
                if pair[0] == "write" {
                    writeCost = .milliseconds(milliseconds)
                } else {
                    readCost = .milliseconds(milliseconds)
                }
                continue
            }
            guard pair.count == 2, let value = Int(pair[1]), value > 0 else {
                throw UsageError(
                    "--limits expects name=positive integer pairs (write=<n>ms, read=<n>ms), got '\(item)'")
            }
            switch pair[0] {
            case "requests": requests = value
            case "window": window = .seconds(value)
            case "concurrent": concurrent = value
            case "exec": execution = .seconds(value)
            default:
                throw UsageError(
                    "--limits: unknown limit '\(pair[0])' (requests, window, concurrent, exec, write, read)")
            }
        }
    }
}

/// What both simulated services do before a request reaches their data: the Entra token endpoint
/// for their clients ("OAuth 2.0 client credentials flow"), bearer authentication, and the limits per user with 429 and
/// `Retry-After`.
final class ServiceGate: Sendable {
    let tenantID: UUID
    let clients: [SimulatedClient]
    let limits: ServiceLimits
    private let state = Mutex(State())

    private struct State {
        /// Access token → the client it was issued to, and until when it is valid.
        var tokens: [String: (client: UUID, expires: ContinuousClock.Instant)] = [:]
        /// Per user: request times in the window, and requests in progress.
        var requests: [UUID: [ContinuousClock.Instant]] = [:]
        var inProgress: [UUID: Int] = [:]
        /// Per user: when each request ended and the execution time it took.
        var executions: [UUID: [(end: ContinuousClock.Instant, cost: Duration)]] = [:]
        var peakConcurrent = 0
        var throttled = 0
        var received = 0
    }

    /// A request the limits turn away: which limit (the service's fault code), and when to come back.
    struct Refusal {
        var code: String
        var text: String
        var retryAfter: Duration

        /// `Retry-After` in whole seconds, at least 1.
        var retryAfterHeader: String { String(max(1, Int(retryAfter.seconds.rounded(.up)))) }
    }

    init(tenantID: UUID, clients: [SimulatedClient], limits: ServiceLimits) {
        self.tenantID = tenantID
        self.clients = clients
        self.limits = limits
    }

    /// The token endpoint's path: `/<tenant>/oauth2/v2.0/token`.
    var tokenPath: String { "/\(tenantID.uuidString.lowercased())/oauth2/v2.0/token" }

    /// The most requests of one user in progress at once so far.
    var peakConcurrent: Int { state.withLock { $0.peakConcurrent } }

    /// Requests answered 429 so far.
    var throttled: Int { state.withLock { $0.throttled } }

    /// Requests of the users so far (token requests aside).
    var received: Int { state.withLock { $0.received } }

    /// The client-credentials grant ("OAuth 2.0 client credentials flow"): a form with `client_id`, `client_secret`,
    /// `scope=<url>/.default` and `grant_type=client_credentials`.
    func token(_ request: HTTPRequest) -> HTTPResponse {
        var form: [String: String] = [:]
        for pair in String(decoding: request.body, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            }
            if parts.count == 2 { form[parts[0]] = parts[1] }
        }
        func refuse(_ status: Int, _ code: String, _ number: Int, _ text: String) -> HTTPResponse {
            Self.json(
                status,
                [
                    "error": .string(code), "error_description": .string("AADSTS\(number): \(text)"),
                    "error_codes": .array([.number(String(number))]),
                ])
        }
        guard form["grant_type"] == "client_credentials" else {
            return refuse(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        }
        guard let id = form["client_id"].flatMap(UUID.init(uuidString:)),
            let client = clients.first(where: { $0.id == id })
        else { return refuse(400, "unauthorized_client", 700016, "Application not found in the directory.") }
        guard form["client_secret"] == client.secret else {
            return refuse(401, "invalid_client", 7000215, "Invalid client secret provided.")
        }
        guard let scope = form["scope"], scope.hasSuffix("/.default") else {
            return refuse(
                400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid.")
        }
        let token = "sim." + UUID().uuidString.lowercased()
        state.withLock { $0.tokens[token] = (client.id, .now + .seconds(3_599)) }
        return Self.json(200, ["token_type": "Bearer", "expires_in": .number("3599"), "access_token": .string(token)])
    }

    /// The client a request's bearer token was issued to, nil when it has none that is valid.
    func client(of request: HTTPRequest) -> SimulatedClient? {
        guard let header = request.headers["Authorization"], header.hasPrefix("Bearer "),
            let id = state.withLock({ state -> UUID? in
                guard let entry = state.tokens[String(header.dropFirst(7))], ContinuousClock.now < entry.expires
                else { return nil }
                return entry.client
            })
        else { return nil }
        return clients.first { $0.id == id }
    }

    /// Counts a request against the user's limits, or says which limit turns it away ("Service protection API limits":
    /// fault codes: 0x80072322 requests, 0x80072321 execution time, 0x80072326 concurrency).
    /// An admitted request ends with `finish`.
    func admit(_ user: UUID) -> Refusal? {
        let now = ContinuousClock.now
        let limits = limits
        return state.withLock { state -> Refusal? in
            state.received += 1
            var times = state.requests[user, default: []]
            times.removeAll { now - $0 >= limits.window }
            defer { state.requests[user] = times }
            if state.inProgress[user, default: 0] >= limits.concurrent {
                state.throttled += 1
                return Refusal(
                    code: "0x80072326",
                    text: "Number of concurrent requests exceeded the limit of \(limits.concurrent).",
                    retryAfter: .seconds(1))
            }
            var executed = state.executions[user, default: []]
            executed.removeAll { now - $0.end >= limits.window }
            state.executions[user] = executed
            let total = executed.reduce(Duration.zero) { $0 + $1.cost }
            if total >= limits.execution {
                state.throttled += 1
                // Until enough of the window's execution time has aged out.
                var freed = Duration.zero
                var wait = limits.window
                for entry in executed {
                    freed += entry.cost
                    if total - freed < limits.execution {
                        wait = limits.window - (now - entry.end)
                        break
                    }
                }
                return Refusal(
                    code: "0x80072321",
                    text:
                        "Combined execution time of incoming requests exceeded limit of \(Int(limits.execution.seconds)) seconds over time window of \(Int(limits.window.seconds)) seconds.",
                    retryAfter: wait)
            }
            if times.count >= limits.requests {
                state.throttled += 1
                return Refusal(
                    code: "0x80072322",
                    text:
                        "Number of requests exceeded the limit of \(limits.requests) over time window of \(Int(limits.window.seconds)) seconds.",
                    retryAfter: limits.window - (now - times[0]))
            }
            times.append(now)
            state.inProgress[user, default: 0] += 1
            state.peakConcurrent = max(state.peakConcurrent, state.inProgress[user]!)
            return nil
        }
    }

    /// Runs an admitted request for its modelled execution time and counts it.
    func execute(_ request: HTTPRequest, user: UUID) {
        let cost = cost(of: request)
        guard cost > .zero else { return }
        Thread.sleep(forTimeInterval: cost.seconds)
        state.withLock { $0.executions[user, default: []].append((.now, cost)) }
    }

    /// An admitted request is done.
    func finish(_ user: UUID) {
        state.withLock { $0.inProgress[user, default: 1] -= 1 }
    }

    /// The execution time `request` takes by the model: a write per PATCH, POST or DELETE, a read
    /// per GET, each operation of a `$batch` counted.
    private func cost(of request: HTTPRequest) -> Duration {
        guard limits.writeCost > .zero || limits.readCost > .zero else { return .zero }
        func cost(_ method: String) -> Duration { method == "GET" ? limits.readCost : limits.writeCost }
        guard request.path.hasSuffix("$batch"),
            let batch = try? ODataBatch.decode(contentType: request.headers["Content-Type"] ?? "", body: request.body)
        else { return cost(request.method) }
        return batch.messages.reduce(Duration.zero) { $0 + cost($1.method) }
    }

    static func json(_ status: Int, _ object: JSONObject) -> HTTPResponse {
        HTTPResponse(
            status: status,
            headers: HTTPHeaders([
                ("Content-Type", "application/json; odata.metadata=minimal"), ("OData-Version", "4.0"),
            ]),
            body: Array(JSONValue.object(object).jsonText.utf8))
    }
}
