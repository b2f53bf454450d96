import Foundation
import ProspectToCash
import Runtime
import Synchronization

/// A simulated Dataverse environment over HTTP, implementing documented behaviour only (each piece
/// names its source in FACTS.md): the Entra token endpoint for its application users, bearer
/// authentication, `WhoAmI`, application users found by their client id, and the service
/// protection limits with 429 and `Retry-After`. Tables, writes, `$batch`, change tracking and
/// webhooks are not simulated yet.
public final class DataverseSimulator: Sendable {
    /// An Entra application registered in the environment as an application user (DV-S2S: one
    /// application user per registered application).
    public struct Client: Sendable, Equatable {
        /// The Entra application (client) id, a GUID.
        public var id: UUID
        public var secret: String
        /// The application user's `systemuserid`.
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

    /// Service protection limits per user (DV-LIM: 6,000 requests and 52 concurrent requests in a
    /// 5-minute sliding window, defaults; smaller ones in tests).
    public struct Limits: Sendable, Equatable {
        public var requests = 6_000
        public var window = Duration.seconds(300)
        public var concurrent = 52

        public init() {}

        /// `requests=6000,window=300,concurrent=52`, any subset.
        public init(parsing text: String) throws(UsageError) {
            for item in text.split(separator: ",") {
                let pair = item.split(separator: "=", maxSplits: 1)
                guard pair.count == 2, let value = Int(pair[1]), value > 0 else {
                    throw UsageError("--limits expects name=positive integer pairs, got '\(item)'")
                }
                switch pair[0] {
                case "requests": requests = value
                case "window": window = .seconds(value)
                case "concurrent": concurrent = value
                default: throw UsageError("--limits: unknown limit '\(pair[0])' (requests, window, concurrent)")
                }
            }
        }
    }

    /// Injected faults: a share of requests answered 503, and added latency.
    public struct Faults: Sendable, Equatable {
        public var unavailable = 0.0
        public var latency = Duration.zero

        public init() {}

        /// `503=0.05,latency=20ms`.
        public init(parsing text: String) throws(UsageError) {
            for item in text.split(separator: ",") {
                let pair = item.split(separator: "=", maxSplits: 1).map(String.init)
                if pair.count == 2, pair[0] == "503", let share = Double(pair[1]), (0...1).contains(share) {
                    unavailable = share
                } else if pair.count == 2, pair[0] == "latency", pair[1].hasSuffix("ms"),
                    let milliseconds = Int(pair[1].dropLast(2)), milliseconds >= 0
                {
                    latency = .milliseconds(milliseconds)
                } else {
                    throw UsageError("--faults expects 503=<share 0..1> and latency=<n>ms, got '\(item)'")
                }
            }
        }
    }

    public let tenantID: UUID
    public let organizationID = UUID()
    public let businessUnitID = UUID()
    private let clients: [Client]
    private let limits: Limits
    private let faults: Faults
    private let state = Mutex(State())
    private let server: HTTPServer

    private struct State {
        /// Access token → the client it was issued to, and until when it is valid.
        var tokens: [String: (client: UUID, expires: ContinuousClock.Instant)] = [:]
        /// Per application user: request times in the window, and requests in progress.
        var requests: [UUID: [ContinuousClock.Instant]] = [:]
        var inProgress: [UUID: Int] = [:]
        var throttled = 0
    }

    /// Starts the simulator on `port` of 127.0.0.1 (0 picks one).
    public init(
        clients: [Client], limits: Limits = Limits(), faults: Faults = Faults(), tenantID: UUID = UUID(), port: Int = 0
    ) throws {
        self.clients = clients
        self.limits = limits
        self.faults = faults
        self.tenantID = tenantID
        let box = Handler()
        server = try HTTPServer(port: port, host: "127.0.0.1") { request in box.handle(request) }
        box.simulator.withLock { $0 = self }
    }

    /// `http://127.0.0.1:<port>`: the environment URL (`/api/data/v9.2/...`) and the authority
    /// (`/<tenant>/oauth2/v2.0/token`) in one.
    public var baseURL: URL { URL(string: "http://127.0.0.1:\(server.port)")! }

    /// Requests answered 429 so far.
    public var throttledCount: Int { state.withLock { $0.throttled } }

    public func stop() { server.stop() }

    /// Routes requests to the simulator once it is built (the server starts inside its init).
    private final class Handler: Sendable {
        let simulator = Mutex<DataverseSimulator?>(nil)
        func handle(_ request: HTTPRequest) -> HTTPResponse {
            guard let simulator = simulator.withLock({ $0 }) else { return HTTPResponse(status: 503) }
            return simulator.handle(request)
        }
    }

    private static let api = "/api/data/v9.2/"

    private func handle(_ request: HTTPRequest) -> HTTPResponse {
        if faults.latency > .zero { Thread.sleep(forTimeInterval: faults.latency.seconds) }
        if request.path == "/\(tenantID.uuidString.lowercased())/oauth2/v2.0/token" && request.method == "POST" {
            return token(request)
        }
        guard request.path.hasPrefix(Self.api) else {
            return error(404, "0x80060888", "Resource not found for the segment '\(request.path)'.")
        }
        // Bearer authentication (DV-HDR: 401 for a missing or expired ticket).
        guard let header = request.headers["Authorization"], header.hasPrefix("Bearer "),
            let client = state.withLock({ state -> UUID? in
                guard let entry = state.tokens[String(header.dropFirst(7))], ContinuousClock.now < entry.expires
                else { return nil }
                return entry.client
            }),
            let user = clients.first(where: { $0.id == client })
        else {
            return error(401, "0x80072243", "ExpiredAuthTicket: the access token is missing, unknown or expired.")
        }
        if let refusal = admit(user.systemUserID) { return refusal }
        defer { state.withLock { $0.inProgress[user.systemUserID, default: 1] -= 1 } }
        if faults.unavailable > 0 && Double.random(in: 0..<1) < faults.unavailable {
            return error(503, "0x80040216", "The service is temporarily unavailable.")
        }
        let resource = String(request.path.dropFirst(Self.api.count))
        switch (request.method, resource) {
        case ("GET", "WhoAmI"):
            // WhoAmI returns the caller's user id (DV-AUTH).
            return json(
                200,
                [
                    "@odata.context": .string("\(baseURL)\(Self.api)$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"),
                    "BusinessUnitId": .string(businessUnitID.uuidString.lowercased()),
                    "UserId": .string(user.systemUserID.uuidString.lowercased()),
                    "OrganizationId": .string(organizationID.uuidString.lowercased()),
                ])
        case ("GET", "systemusers"):
            return systemUsers(request)
        default:
            return error(501, "0x8006088a", "\(request.method) \(resource) is not simulated.")
        }
    }

    /// The client-credentials grant (ENTRA-CC): a form with `client_id`, `client_secret`,
    /// `scope=<url>/.default` and `grant_type=client_credentials`.
    private func token(_ request: HTTPRequest) -> HTTPResponse {
        var form: [String: String] = [:]
        for pair in String(decoding: request.body, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            }
            if parts.count == 2 { form[parts[0]] = parts[1] }
        }
        func refuse(_ status: Int, _ code: String, _ number: Int, _ text: String) -> HTTPResponse {
            json(
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
        return json(200, ["token_type": "Bearer", "expires_in": .number("3599"), "access_token": .string(token)])
    }

    /// `systemusers?$filter=applicationid eq <guid>&$select=systemuserid`: the application user of
    /// an Entra application, as capture looks up the apply identities.
    private func systemUsers(_ request: HTTPRequest) -> HTTPResponse {
        let query = (request.query ?? "").removingPercentEncoding ?? ""
        var filter: UUID?
        for item in query.split(separator: "&") where item.hasPrefix("$filter=") {
            let condition = item.dropFirst("$filter=".count).split(separator: " ")
            guard condition.count == 3, condition[0] == "applicationid", condition[1] == "eq",
                let id = UUID(uuidString: String(condition[2]))
            else {
                return error(400, "0x80060888", "Only $filter=applicationid eq <guid> is simulated on systemusers.")
            }
            filter = id
        }
        let users = clients.filter { filter == nil || $0.id == filter }.map { client -> JSONValue in
            .object([
                "systemuserid": .string(client.systemUserID.uuidString.lowercased()),
                "applicationid": .string(client.id.uuidString.lowercased()),
            ])
        }
        return json(
            200,
            ["@odata.context": .string("\(baseURL)\(Self.api)$metadata#systemusers"), "value": .array(users)])
    }

    /// Counts a request against the user's limits, or answers 429 with `Retry-After` and the
    /// documented fault code (DV-LIM: 0x80072322 requests, 0x80072326 concurrency).
    private func admit(_ user: UUID) -> HTTPResponse? {
        let now = ContinuousClock.now
        let refusal: (code: String, text: String, retryAfter: Duration)? = state.withLock { state in
            var times = state.requests[user, default: []]
            times.removeAll { now - $0 >= limits.window }
            defer { state.requests[user] = times }
            if state.inProgress[user, default: 0] >= limits.concurrent {
                state.throttled += 1
                return (
                    "0x80072326", "Number of concurrent requests exceeded the limit of \(limits.concurrent).",
                    .seconds(1)
                )
            }
            if times.count >= limits.requests {
                state.throttled += 1
                return (
                    "0x80072322",
                    "Number of requests exceeded the limit of \(limits.requests) over time window of \(Int(limits.window.seconds)) seconds.",
                    limits.window - (now - times[0])
                )
            }
            times.append(now)
            state.inProgress[user, default: 0] += 1
            return nil
        }
        guard let refusal else { return nil }
        var response = error(429, refusal.code, refusal.text)
        response.headers.set("Retry-After", String(max(1, Int(refusal.retryAfter.seconds.rounded(.up)))))
        return response
    }

    /// The documented error body: `{"error":{"code":"0x…","message":"…"}}` (DV-BATCH).
    private func error(_ status: Int, _ code: String, _ message: String) -> HTTPResponse {
        json(status, ["error": .object(["code": .string(code), "message": .string(message)])])
    }

    private func json(_ status: Int, _ object: JSONObject) -> HTTPResponse {
        HTTPResponse(
            status: status,
            headers: HTTPHeaders([
                ("Content-Type", "application/json; odata.metadata=minimal"), ("OData-Version", "4.0"),
            ]),
            body: Array(JSONValue.object(object).jsonText.utf8))
    }
}
