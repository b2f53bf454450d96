import Foundation
import OData
import ProspectToCash
import Runtime

/// An OData client of one service (the Dataverse Web API or F&O's OData) for one identity: the standard headers
/// ("Compose HTTP requests and handle errors"), a token from Entra ID renewed once on a 401, and the documented
/// error body (`{"error":{"code","message"}}`) read into `ServiceError`.
public final class ServiceClient: Sendable {
    /// Which service: where its entity sets are and which headers every request carries.
    public enum API: Sendable {
        /// `<url>/api/data/v9.2/`; writes are upserts unless told otherwise (`If-None-Match: null`).
        case dataverse
        /// `<url>/data/` ("Open Data Protocol (OData)").
        case financeOperations

        var root: String { self == .dataverse ? "api/data/v9.2/" : "data/" }
    }

    public struct Settings: Sendable {
        /// The environment URL, e.g. `https://contoso.crm.dynamics.com` or
        /// `https://contoso.operations.dynamics.com`.
        public var url: URL
        public var tenantID: String
        public var clientID: String
        /// From the environment or a file, never a flag; never logged.
        public var clientSecret: String
        /// Default: `https://login.microsoftonline.com`.
        public var authority = URL(string: "https://login.microsoftonline.com")!

        public init(url: URL, tenantID: String, clientID: String, clientSecret: String) {
            self.url = url
            self.tenantID = tenantID
            self.clientID = clientID
            self.clientSecret = clientSecret
        }
    }

    public let settings: Settings
    public let api: API
    private let http: HTTPClient
    private let credentials: ClientCredentials

    public init(settings: Settings, http: HTTPClient, api: API = .dataverse) {
        self.settings = settings
        self.http = http
        self.api = api
        var token = ClientCredentials.Settings(
            tenantID: settings.tenantID, clientID: settings.clientID, clientSecret: settings.clientSecret,
            scope: ClientCredentials.Settings.scope(for: settings.url))
        token.authority = settings.authority
        credentials = ClientCredentials(settings: token, client: http)
    }

    /// What the Web API answered to `send`.
    public struct Answer: Sendable {
        public var status: Int
        public var headers: HTTPHeaders
        /// The JSON body, when there is one.
        public var json: JSONObject?
    }

    /// Sends `method <url>/<root>/<resource>` (resource with its key and query) with the
    /// standard headers, `headers` and a JSON `body`; a 401 renews the token once. Every status
    /// comes back as an `Answer`; throws only when no answer came.
    public func send(
        _ method: String, _ resource: String, body: JSONObject? = nil, headers extra: HTTPHeaders = HTTPHeaders()
    ) async throws -> Answer {
        var headers = extra
        if body != nil && extra["Content-Type"] == nil { headers.add("Content-Type", "application/json") }
        let response = try await sendRaw(
            method, resource, body: body.map { Array(JSONValue.object($0).jsonText.utf8) } ?? [], headers: headers)
        return Answer(
            status: response.status, headers: response.headers,
            json: response.body.isEmpty ? nil : (try? JSONParser.parse(response.body))?.objectValue)
    }

    /// Sends any body (a `$batch`'s multipart one) with the standard headers and `headers`; a 401
    /// renews the token once; the answer as it came.
    public func sendRaw(
        _ method: String, _ resource: String, body: [UInt8], headers extra: HTTPHeaders
    ) async throws
        -> HTTPClientResponse
    {
        guard let url = URL(string: api.root + resource, relativeTo: settings.url)?.absoluteURL else {
            throw ServiceError(status: 0, code: "bad_url", message: "not a URL: \(resource)")
        }
        var renewed = false
        while true {
            let token = try await credentials.token()
            var headers = HTTPHeaders([
                ("Authorization", "Bearer \(token)"), ("Accept", "application/json"), ("OData-MaxVersion", "4.0"),
                ("OData-Version", "4.0"),
            ])
            if api == .dataverse && extra["If-None-Match"] == nil && extra["If-Match"] == nil {
                headers.add("If-None-Match", "null")
            }
            for (name, value) in extra.entries { headers.add(name, value) }
            let response = try await http.send(
                HTTPClientRequest(method: method, url: url, headers: headers, body: body), identity: settings.clientID)
            // An expired ticket: one new token, then it is the caller's answer.
            if response.status == 401 && !renewed {
                renewed = true
                await credentials.invalidate()
                continue
            }
            return response
        }
    }

    /// `GET <url>/<root>/<resource>`: the JSON answer of a 2xx, else `ServiceError`.
    public func get(_ resource: String) async throws -> JSONObject {
        let answer = try await send("GET", resource)
        guard (200..<300).contains(answer.status), let json = answer.json else { throw ServiceError(answer) }
        return json
    }
}

/// What the service answered instead: the HTTP status and its error code (`0x80040333`...).
public struct ServiceError: Error, Sendable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String
    /// A 429's `Retry-After`.
    public var retryAfter: Duration?

    public var description: String { "HTTP \(status) \(code): \(message)" }

    public init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    /// The error an answer carries (`{"error":{"code","message"}}`), or its status.
    public init(_ answer: ServiceClient.Answer) {
        let error = answer.json?["error"]?.objectValue
        self.init(
            status: answer.status, code: error?["code"]?.stringValue ?? "http_\(answer.status)",
            message: error?["message"]?.stringValue ?? "no error body")
        retryAfter = answer.headers["Retry-After"].flatMap(HTTPClient.retryAfter)
    }
}

extension ServiceClient {
    /// What a `$batch` came back with: each part's answer, or the whole request's refusal.
    public enum BatchAnswer: Sendable {
        case parts([ODataBatch.Part])
        /// Not a readable 200: 429, 5xx, a 400 for the whole batch...
        case refused(HTTPClientResponse)
    }

    /// Posts `parts` as one `$batch` with `Prefer: odata.continue-on-error` (a service that does not
    /// honour it stops at the first failed part, and the parts after it have no answer); throws
    /// only when no answer came.
    public func batch(_ parts: [ODataBatch.Part]) async throws -> BatchAnswer {
        let (contentType, body) = ODataBatch(parts).encoded()
        let response = try await sendRaw(
            "POST", "$batch", body: body,
            headers: HTTPHeaders([("Content-Type", contentType), ("Prefer", "odata.continue-on-error")]))
        guard response.status == 200,
            let answer = try? ODataBatch.decode(
                contentType: response.headers["Content-Type"] ?? "", body: response.body)
        else { return .refused(response) }
        return .parts(answer.parts)
    }
}
