import Connectors
import Dataverse
import Foundation
import Runtime
import Simulators
import Testing

/// A client of `simulator` for `user`; its retries do not wait out throttling longer than 2 s.
func client(_ simulator: DataverseSimulator, _ user: DataverseSimulator.Client) -> ServiceClient {
    var settings = ServiceClient.Settings(
        url: simulator.baseURL, tenantID: simulator.tenantID.uuidString.lowercased(),
        clientID: user.id.uuidString.lowercased(), clientSecret: user.secret)
    settings.authority = simulator.baseURL
    var configuration = HTTPClient.Configuration()
    configuration.maxRetryAfter = .seconds(2)
    return ServiceClient(settings: settings, http: HTTPClient(configuration: configuration))
}

@Suite("Dataverse over HTTP: tokens, WhoAmI, application users and limits against the simulator")
struct DataverseTests {
    let apply = DataverseSimulator.Client(id: UUID(), secret: "apply-secret")
    let person = DataverseSimulator.Client(id: UUID(), secret: "other-secret")

    @Test(
        "An application user learns its own id (WhoAmI, Use OAuth authentication with Dataverse) and finds another application's user by client id (Use single-tenant server-to-server authentication)"
    )
    func identities() async throws {
        let simulator = try DataverseSimulator(clients: [apply, person])
        defer { simulator.stop() }
        let dataverse = client(simulator, apply)
        #expect(try await dataverse.whoAmI() == apply.systemUserID)
        #expect(try await dataverse.applicationUser(clientID: person.id) == person.systemUserID)
        #expect(try await dataverse.applicationUser(clientID: UUID()) == nil)
    }

    @Test(
        "A wrong secret is refused at the token endpoint with Entra's code (OAuth 2.0 client credentials flow); no token, no request"
    )
    func wrongSecret() async throws {
        let simulator = try DataverseSimulator(clients: [apply])
        defer { simulator.stop() }
        let dataverse = client(
            simulator, DataverseSimulator.Client(id: apply.id, secret: "wrong", systemUserID: apply.systemUserID))
        let error = await #expect(throws: ClientCredentials.Refused.self) { try await dataverse.whoAmI() }
        #expect(error?.code == "invalid_client")
        #expect(error?.description.contains("AADSTS7000215") == true)
    }

    @Test(
        "Over the request limit the simulator answers 429 with Retry-After and the documented fault code (Service protection API limits)"
    )
    func serviceProtection() async throws {
        var limits = DataverseSimulator.Limits()
        limits.requests = 3
        limits.window = .seconds(60)
        let simulator = try DataverseSimulator(clients: [apply], limits: limits)
        defer { simulator.stop() }
        let dataverse = client(simulator, apply)
        for _ in 0..<3 { _ = try await dataverse.whoAmI() }
        // The window's Retry-After (about a minute) is longer than this client waits: the 429 comes back.
        let error = await #expect(throws: ServiceError.self) { try await dataverse.whoAmI() }
        #expect(error?.status == 429)
        #expect(error?.code == "0x80072322")
        #expect(simulator.throttledCount == 1)
    }

    @Test(
        "Requests run for their modelled execution time; past the combined limit of the window the answer is 429 with 0x80072321 (Service protection API limits)"
    )
    func executionTime() async throws {
        let limits = try DataverseSimulator.Limits(parsing: "exec=1,window=60,write=600ms")
        let simulator = try DataverseSimulator(clients: [apply], limits: limits)
        defer { simulator.stop() }
        var configuration = HTTPClient.Configuration()
        configuration.retriesThrottled = false
        var settings = ServiceClient.Settings(
            url: simulator.baseURL, tenantID: simulator.tenantID.uuidString.lowercased(),
            clientID: apply.id.uuidString.lowercased(), clientSecret: apply.secret)
        settings.authority = simulator.baseURL
        let dataverse = ServiceClient(settings: settings, http: HTTPClient(configuration: configuration))
        let started = ContinuousClock.now
        for number in 1...2 {
            let answer = try await dataverse.send(
                "PATCH", "accounts(accountnumber='E-\(number)')", body: ["name": .string("Execution \(number)")])
            #expect(answer.status == 204)
        }
        #expect(ContinuousClock.now - started >= .milliseconds(1_200), "each write ran for its 600 ms")
        let third = try await dataverse.send("PATCH", "accounts(accountnumber='E-3')", body: ["name": "Three"])
        #expect(third.status == 429)
        #expect(ServiceError(third).code == "0x80072321")
        #expect(third.headers["Retry-After"].flatMap(Int.init).map { $0 > 1 } == true)
    }

    @Test(
        "Without a token the Web API answers 401 with the documented error body (Compose HTTP requests and handle errors)"
    )
    func unauthenticated() async throws {
        let simulator = try DataverseSimulator(clients: [apply])
        defer { simulator.stop() }
        let response = try await HTTPClient().send(
            HTTPClientRequest(method: "GET", url: simulator.baseURL.appendingPathComponent("api/data/v9.2/WhoAmI")))
        #expect(response.status == 401)
        #expect(String(decoding: response.body, as: UTF8.self).hasPrefix(#"{"error":{"code":"0x80072243""#))
    }
}
