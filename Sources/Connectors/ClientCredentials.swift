import Foundation
import ProspectToCash
import Runtime

/// An application's access token from Microsoft Entra ID by the OAuth 2.0 client-credentials grant: `POST
/// <authority>/<tenant>/oauth2/v2.0/token` with `client_id`, `client_secret`, `scope=<resource>/.default` and
/// `grant_type=client_credentials` ("OAuth 2.0 client credentials flow", Microsoft identity platform). The token is
/// kept and renewed before it expires (when less than a tenth of its lifetime, at most five minutes, is left); one
/// request at a time fetches it.
public actor ClientCredentials {
    public struct Settings: Sendable {
        /// Default: `https://login.microsoftonline.com`.
        public var authority = URL(string: "https://login.microsoftonline.com")!
        public var tenantID: String
        public var clientID: String
        /// From the environment or a file, never a flag; never logged.
        public var clientSecret: String
        /// `<resource URL>/.default`, e.g. `https://contoso.crm.dynamics.com/.default`.
        public var scope: String

        public init(tenantID: String, clientID: String, clientSecret: String, scope: String) {
            self.tenantID = tenantID
            self.clientID = clientID
            self.clientSecret = clientSecret
            self.scope = scope
        }

        /// The scope for a resource URL: its scheme and host plus `/.default`.
        public static func scope(for resource: URL) -> String {
            var components = URLComponents()
            components.scheme = resource.scheme
            components.host = resource.host
            components.port = resource.port
            return (components.string ?? resource.absoluteString) + "/.default"
        }
    }

    /// The token endpoint refused (a wrong secret, client or scope): a configuration error.
    public struct Refused: Error, Sendable, CustomStringConvertible {
        public var status: Int
        /// Entra's error, e.g. `invalid_client`.
        public var code: String
        /// Entra's `error_description` (an AADSTS message).
        public var reason: String

        public var description: String { "token request refused (HTTP \(status), \(code)): \(reason)" }
    }

    public let settings: Settings
    private let client: HTTPClient
    private var current: (token: String, renewAt: ContinuousClock.Instant)?
    private var fetching: Task<(String, Duration), any Error>?
    /// Tokens fetched so far.
    public private(set) var fetched = 0

    public init(settings: Settings, client: HTTPClient) {
        self.settings = settings
        self.client = client
    }

    /// A valid access token: the kept one, or a new one.
    public func token() async throws -> String {
        if let current, ContinuousClock.now < current.renewAt { return current.token }
        if let fetching { return try await fetching.value.0 }
        let task = Task { [settings, client] in try await Self.fetch(settings, client: client) }
        fetching = task
        defer { fetching = nil }
        let (token, lifetime) = try await task.value
        fetched += 1
        let margin = min(Duration.seconds(300), lifetime / 10)
        current = (token, .now + lifetime - margin)
        return token
    }

    /// Forgets the kept token (after a 401), so the next call fetches a new one.
    public func invalidate() { current = nil }

    private static func fetch(_ settings: Settings, client: HTTPClient) async throws -> (String, Duration) {
        let url = settings.authority.appendingPathComponent(settings.tenantID).appendingPathComponent(
            "oauth2/v2.0/token")
        var form = URLComponents()
        form.queryItems = [
            URLQueryItem(name: "client_id", value: settings.clientID),
            URLQueryItem(name: "scope", value: settings.scope),
            URLQueryItem(name: "client_secret", value: settings.clientSecret),
            URLQueryItem(name: "grant_type", value: "client_credentials"),
        ]
        // `+` stays literal in a query component; a form body needs it encoded.
        let body = (form.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B")
        let response = try await client.send(
            HTTPClientRequest(
                method: "POST", url: url,
                headers: HTTPHeaders([
                    ("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json"),
                ]),
                body: Array(body.utf8), idempotent: true))
        let json = (try? JSONParser.parse(response.body))?.objectValue
        guard response.status == 200, let token = json?["access_token"]?.stringValue else {
            throw Refused(
                status: response.status, code: json?["error"]?.stringValue ?? "no token",
                reason: json?["error_description"]?.stringValue ?? "no access_token in the answer")
        }
        let seconds = json?["expires_in"]?.decimalNumber.flatMap { Int($0.description) } ?? 3_599
        return (token, .seconds(max(1, seconds)))
    }
}
