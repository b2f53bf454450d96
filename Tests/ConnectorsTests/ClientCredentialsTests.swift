import Connectors
import Foundation
import Runtime
import Testing

@Suite("Client-credentials tokens from Entra ID (OAuth 2.0 client credentials flow)")
struct ClientCredentialsTests {
    private func settings(_ service: ScriptedService) -> ClientCredentials.Settings {
        var settings = ClientCredentials.Settings(
            tenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47", clientID: "11111111-2222-3333-4444-555555555555",
            clientSecret: "s3cr+t&=",
            scope: ClientCredentials.Settings.scope(
                for: URL(string: "https://contoso.crm.dynamics.com/api/data/v9.2/")!))
        settings.authority = service.url
        return settings
    }

    @Test("The documented token request; the token is kept until shortly before it expires, then renewed")
    func tokenRequestAndCache() async throws {
        let answer = HTTPResponse(
            status: 200, text: #"{"token_type":"Bearer","expires_in":2,"access_token":"eyJ0eXAi.first"}"#,
            contentType: "application/json")
        let service = try ScriptedService([answer, answer, answer])
        defer { service.stop() }
        let credentials = ClientCredentials(settings: settings(service), client: HTTPClient())
        #expect(try await credentials.token() == "eyJ0eXAi.first")
        #expect(try await credentials.token() == "eyJ0eXAi.first")
        #expect(await credentials.fetched == 1)
        let request = try #require(service.requests.first?.request)
        #expect(request.method == "POST")
        #expect(request.path == "/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token")
        #expect(request.headers["Content-Type"] == "application/x-www-form-urlencoded")
        let form = Dictionary(
            uniqueKeysWithValues: String(decoding: request.body, as: UTF8.self).split(separator: "&").map { pair in
                let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? "" }
                return (parts[0], parts.count > 1 ? parts[1] : "")
            })
        #expect(form["grant_type"] == "client_credentials")
        #expect(form["scope"] == "https://contoso.crm.dynamics.com/.default")
        #expect(form["client_id"] == "11111111-2222-3333-4444-555555555555")
        #expect(form["client_secret"] == "s3cr+t&=")
        // Two seconds of life, renewed with a tenth of it left.
        try await Task.sleep(for: .seconds(2))
        _ = try await credentials.token()
        #expect(await credentials.fetched == 2)
        await credentials.invalidate()
        _ = try await credentials.token()
        #expect(await credentials.fetched == 3)
    }

    @Test("A refused request (a wrong secret) is an error with Entra's code and message, never the secret")
    func refused() async throws {
        let service = try ScriptedService([
            HTTPResponse(
                status: 401,
                text:
                    #"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#,
                contentType: "application/json")
        ])
        defer { service.stop() }
        let credentials = ClientCredentials(settings: settings(service), client: HTTPClient())
        let error = await #expect(throws: ClientCredentials.Refused.self) { try await credentials.token() }
        #expect(error?.code == "invalid_client")
        #expect(error?.description.contains("AADSTS7000215") == true)
        #expect(error?.description.contains("s3cr") == false)
    }
}
