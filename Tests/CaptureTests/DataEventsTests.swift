import Capture
import Connectors
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Simulators
import Testing
import Topology

/// Its own broker: the story takes it down.
private let shared = captureBroker()

@Suite("p2c capture --side erp: F&O data events published as change events (CONNECTORS.md, FACTS.md 2.5)")
struct DataEventsTests {
    let apply = FinanceOperationsSimulator.Client(id: UUID(), secret: "apply-secret")
    let person = FinanceOperationsSimulator.Client(id: UUID(), secret: "person-secret")

    private func client(
        _ simulator: FinanceOperationsSimulator, _ user: FinanceOperationsSimulator.Client
    )
        -> ServiceClient
    {
        var settings = ServiceClient.Settings(
            url: simulator.baseURL, tenantID: simulator.tenantID.uuidString.lowercased(),
            clientID: user.id.uuidString.lowercased(), clientSecret: user.secret)
        settings.authority = simulator.baseURL
        return ServiceClient(settings: settings, http: HTTPClient(), api: .financeOperations)
    }

    /// Waits until `done` holds, up to `limit`; `done` (Kafka reads) runs on a thread of its own,
    /// off the shared pools the members under test need for their HTTP calls.
    private func waitUntil(_ limit: Duration, _ done: @escaping @Sendable () throws -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while try await !AsyncBridge.onThread(done) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    @Test(
        "A person's creates, updates and deletes in F&O become change events with the maps' field names and the record's company (a deleted line keyed by its header and sequence), the apply identity's as echoes; while Kafka is unreachable the receiver answers 503, and takes changes again once it is back, none twice"
    )
    func dataEvents() async throws {
        let port = LocalHTTP.freePort()
        let url = URL(string: "http://127.0.0.1:\(port)/fno")!
        var endpoints = ["CustomerV3", "CDSSalesOrderHeaders", "CDSSalesOrderLines"].map {
            FinanceOperationsSimulator.DataEvents(entity: $0, url: url, key: "events-key")
        }
        for index in endpoints.indices { endpoints[index].retryDelay = .seconds(4) }
        let simulator = try FinanceOperationsSimulator(clients: [apply, person], dataEvents: endpoints)
        defer { simulator.stop() }
        var configuration = CaptureConfiguration()
        configuration.side = .erp
        configuration.kafka = KafkaConfiguration(bootstrapServers: shared.cluster.bootstrapServers, clientID: "events")
        let reader = client(simulator, person)
        let receiver = try WebhookReceiver(
            configuration: configuration, catalog: shared.catalog,
            reader: FinanceOperationsContextReader(schema: FinanceOperationsSchema(client: reader), streams: []),
            applyUsers: [apply.id], key: "events-key", port: port, deliveryTimeout: .seconds(2))
        defer { receiver.stop() }
        let seller = client(simulator, person)
        func send(_ method: String, _ resource: String, _ body: JSONObject?, as fno: ServiceClient? = nil) async throws
        {
            let answer = try await (fno ?? seller).send(method, resource + "?cross-company=true", body: body)
            #expect((200..<300).contains(answer.status), "\(method) \(resource): \(answer.status)")
        }
        try await send(
            "POST", "CustomersV3",
            ["dataAreaId": "USMF", "CustomerAccount": "DE-1", "CustomerGroupId": "10", "CreditLimit": .number("500")])
        try await send(
            "POST", "CustomersV3", ["dataAreaId": "DEMF", "CustomerAccount": "DE-2"], as: client(simulator, apply))
        try await send(
            "PATCH", "CustomersV3(dataAreaId='USMF',CustomerAccount='DE-1')", ["CreditLimit": .number("750")])
        try await send("POST", "CDSSalesOrderHeaders", ["dataAreaId": "USMF", "SalesOrderNumber": "S-900"])
        try await send(
            "POST", "CDSSalesOrderLines",
            ["dataAreaId": "USMF", "SalesOrderNumber": "S-900", "LineCreationSequenceNumber": .number("1")])
        try await send(
            "DELETE", "CDSSalesOrderLines(dataAreaId='USMF',SalesOrderNumber='S-900',LineCreationSequenceNumber=1)",
            nil)
        try await waitUntil(.seconds(20)) { receiver.metrics.published.value >= 6 }
        let customers = try read("erp.customers.changes", from: shared).filter {
            $0.data["CUSTOMERACCOUNT"]?.stringValue?.hasPrefix("DE-") == true
        }
        #expect(customers.count == 3)
        let updated = try #require(customers.first { $0.data["CREDITLIMIT"] == .number("750") })
        #expect(updated.type == "CustomersV3.upserted")
        #expect(updated.header("ce_company")?.text == "USMF")
        #expect(updated.header("ce_subject")?.text == "USMF/DE-1")
        #expect(updated.data["CUSTOMERGROUPID"] == "10")
        #expect(updated.header("ce_origin") == nil)
        let echo = try #require(customers.first { $0.data["CUSTOMERACCOUNT"] == "DE-2" })
        #expect(echo.header("ce_origin")?.text == "p2c")
        #expect(echo.header("ce_subject")?.text == "DEMF/DE-2")
        let orders = try read("erp.orders.changes", from: shared).filter {
            $0.header("ce_subject")?.text == "USMF/S-900"
        }
        #expect(
            orders.map(\.type).sorted() == [
                "SalesOrderHeader.upserted", "SalesOrderLine.deleted", "SalesOrderLine.upserted",
            ])
        #expect(
            orders.first { $0.type == "SalesOrderLine.deleted" }?.data
                == ["SALESORDERNUMBER": "S-900", "LINECREATIONSEQUENCENUMBER": .number("1")])

        // Kafka unreachable: the post is answered 503 (the sender keeps it to retry); once Kafka is
        // back the receiver takes changes again. Whether the sender's one retry comes after Kafka is
        // back is its timing (the Dataverse webhook story tests a retry that lands): the refused
        // change is published at most once either way.
        try shared.cluster.setBrokerDown(1)
        try await send(
            "PATCH", "CustomersV3(dataAreaId='USMF',CustomerAccount='DE-1')", ["SalesMemo": "while down"])
        try await waitUntil(.seconds(20)) { receiver.metrics.failures.value >= 1 }
        #expect(receiver.metrics.failures.value >= 1, "the post was answered 503")
        try shared.cluster.setBrokerUp(1)
        try await send(
            "PATCH", "CustomersV3(dataAreaId='USMF',CustomerAccount='DE-1')", ["SalesMemo": "after recovery"])
        @Sendable func published(_ memo: String) throws -> Int {
            try read("erp.customers.changes", from: shared).filter { $0.data["SALESMEMO"] == .string(memo) }.count
        }
        try await waitUntil(.seconds(40)) { try published("after recovery") >= 1 }
        #expect(try published("after recovery") == 1, "a change after Kafka is back is published once")
        #expect(try published("while down") <= 1, "the refused change is never published twice")
    }
}
