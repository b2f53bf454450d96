import Capture
import Connectors
import Dataverse
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Simulators
import Synchronization
import TestSupport
import Testing
import Topology

/// An embedded broker with every topic of `Topics/`: one for each suite, which takes it down at times.
func captureBroker() -> TestBroker { TestBroker() }

private let shared = captureBroker()

/// A capture member on its own thread, as `p2c capture` runs it.
private final class RunningMember: Sendable {
    let member: CaptureMember
    private let finished = Mutex<(done: Bool, error: String?)>((false, nil))

    init(_ member: CaptureMember) {
        self.member = member
        Thread { [self] in
            var failure: String?
            do { try member.run() } catch { failure = "\(error)" }
            finished.withLock { $0 = (true, failure) }
        }.start()
    }

    func stop() -> String? {
        member.stop()
        while !finished.withLock({ $0.done }) { Thread.sleep(forTimeInterval: 0.02) }
        return finished.withLock { $0.error }
    }
}

func client(
    _ simulator: DataverseSimulator, _ user: DataverseSimulator.Client, http: HTTPClient = HTTPClient()
) -> ServiceClient {
    var settings = ServiceClient.Settings(
        url: simulator.baseURL, tenantID: simulator.tenantID.uuidString.lowercased(),
        clientID: user.id.uuidString.lowercased(), clientSecret: user.secret)
    settings.authority = simulator.baseURL
    return ServiceClient(settings: settings, http: http)
}

/// Every committed record of `topic` so far, on `broker` (the suite's shared one by default).
func read(_ topic: String, from broker: TestBroker? = nil) throws -> [KafkaRecord] {
    try (broker ?? shared).read(topic)
}

extension KafkaRecord {
    var type: String { header("ce_type")?.text ?? "" }
    var data: JSONObject { (try? JSONParser.parse(value ?? []))?.objectValue ?? JSONObject() }
}

@Suite(
    "p2c capture: Dataverse changes published by change tracking (Use change tracking to synchronize data with external systems)",
    .serialized)
struct CaptureTests {
    let apply = DataverseSimulator.Client(id: UUID(), secret: "apply-secret")
    let person = DataverseSimulator.Client(id: UUID(), secret: "person-secret")
    let reader = DataverseSimulator.Client(id: UUID(), secret: "capture-secret")

    /// A capture member of `streams` reading `simulator` as the reader identity, running on a
    /// thread of its own; the apply identity's changes are echoes.
    private func capture(
        _ simulator: DataverseSimulator, group: String, streams: [SyncStream], clientID: String = "capture",
        generation: MapGeneration = .classic, pollIntervalMilliseconds: Int = 300, pageSize: Int? = nil,
        echoes: Bool = true
    ) throws -> RunningMember {
        var configuration = CaptureConfiguration()
        configuration.kafka = KafkaConfiguration(bootstrapServers: shared.cluster.bootstrapServers, clientID: clientID)
        configuration.groupID = group
        configuration.company = "USMF"
        configuration.generation = generation
        configuration.streams = streams
        configuration.pollInterval = .milliseconds(pollIntervalMilliseconds)
        if let pageSize { configuration.pageSize = pageSize }
        configuration.sessionTimeout = .seconds(6)
        let member = try CaptureMember(
            configuration: configuration, adapter: DataverseAdapter(), catalog: shared.catalog,
            client: client(simulator, reader),
            applyUsers: echoes ? [apply.systemUserID] : [])
        return RunningMember(member)
    }

    @Test(
        "Party generation: a person's party, location and address in Sales become change events of the party streams, an address under its location's key with the location as a natural key"
    )
    func partyTables() async throws {
        let simulator = try DataverseSimulator(clients: [apply, person, reader])
        defer { simulator.stop() }
        let seller = client(simulator, person)
        for (resource, body) in [
            ("msdyn_parties", ["msdyn_partynumber": "P-1", "msdyn_organizationname": "Litware, Inc."] as JSONObject),
            ("msdyn_postaladdresscollections", ["msdyn_location": "L-1"]),
            (
                "msdyn_postaladdresses",
                [
                    "msdyn_postaladdresscollectionid@odata.bind":
                        "/msdyn_postaladdresscollections(msdyn_location='L-1')",
                    "msdyn_validfrom": "2026-01-01T00:00:00Z", "msdyn_city": "Redmond",
                ]
            ),
        ] {
            let answer = try await seller.send("POST", resource, body: body)
            #expect(answer.status == 204, "\(resource): \(answer.status)")
        }
        let running = try capture(
            simulator, group: "capture-party", streams: [.parties, .postaladdresses], generation: .party)
        // A loaded machine takes a while to read the tables, a page a turn: up to 90 s.
        try await waitUntilOnThread(.seconds(90), every: .milliseconds(200)) {
            try read("crm.parties.changes").count >= 1 && read("crm.postaladdresses.changes").count >= 2
        }
        #expect(running.stop() == nil)
        let parties = try read("crm.parties.changes")
        #expect(parties.map(\.type) == ["msdyn_party.upserted"])
        #expect(parties.first?.data["msdyn_organizationname"] == "Litware, Inc.")
        #expect(parties.first?.header("ce_subject")?.text == "USMF/P-1")
        let addresses = try read("crm.postaladdresses.changes")
        #expect(addresses.map(\.type) == ["msdyn_postaladdresscollection.upserted", "msdyn_postaladdress.upserted"])
        #expect(addresses.allSatisfy { $0.header("ce_subject")?.text == "USMF/L-1" })
        #expect(addresses.last?.data["msdyn_postaladdresscollectionid"] == .object(["msdyn_location": "L-1"]))
        #expect(addresses.last?.data["msdyn_city"] == "Redmond")
    }

    @Test(
        "A person's upserts, updates and deletes in Sales become change events in order with natural keys, the header before its lines; the apply identity's writes are marked ce_origin p2c; nothing is published twice"
    )
    func personAndApplyChanges() async throws {
        let simulator = try DataverseSimulator(clients: [apply, person, reader])
        defer { simulator.stop() }
        let seller = client(simulator, person)
        func write(_ resource: String, _ body: JSONObject, as dataverse: ServiceClient? = nil) async throws {
            let answer = try await (dataverse ?? seller).send("PATCH", resource, body: body)
            #expect((200..<300).contains(answer.status), "\(resource): \(answer.status)")
        }
        #expect(try await seller.send("POST", "transactioncurrencies", body: ["isocurrencycode": "USD"]).status == 204)
        try await write(
            "accounts(accountnumber='US-001')",
            [
                "customertypecode": .number("3"),
                "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='USD')",
            ])
        try await write(
            "accounts(accountnumber='US-002')", ["customertypecode": .number("3")], as: client(simulator, apply))
        try await write(
            "salesorders(msdyn_salesordernumber='C000001')",
            [
                "msdyn_ordertype": .number("192350000"),
                "customerid_account@odata.bind": "/accounts(accountnumber='US-001')",
            ])
        let header = try await seller.get("salesorders(msdyn_salesordernumber='C000001')?$select=salesorderid")
        let headerID = try #require(header["salesorderid"]?.stringValue)
        for line in 1...3 {
            try await write(
                "salesorderdetails(_salesorderid_value=\(headerID),sequencenumber=\(line))",
                ["quantity": .number(String(line * 2))])
        }

        let running = try capture(simulator, group: "capture-story", streams: [.customers, .orders], pageSize: 2)
        // The snapshot first, whole: the person's changes below must come after it (a loaded
        // machine can take a while to read the tables' pages).
        try await waitUntilOnThread(.seconds(90), every: .milliseconds(200)) {
            try read("crm.orders.changes").count >= 4 && read("crm.customers.changes").count >= 2
        }
        try #require(try read("crm.orders.changes").count >= 4, "the snapshot of the order and its lines")

        // Then the person changes things: an update, a delete, a new line.
        try await write(
            "accounts(accountnumber='US-001')", ["customertypecode": .number("3"), "description": "Key account"])
        #expect(
            try await seller.send("DELETE", "salesorderdetails(_salesorderid_value=\(headerID),sequencenumber=2)")
                .status == 204)
        try await write(
            "salesorderdetails(_salesorderid_value=\(headerID),sequencenumber=4)", ["quantity": .number("8")])
        try await waitUntilOnThread(.seconds(90), every: .milliseconds(200)) {
            try read("crm.orders.changes").count >= 6 && read("crm.customers.changes").count >= 3
        }
        #expect(running.stop() == nil)

        let customers = try read("crm.customers.changes")
        #expect(customers.count == 3)
        #expect(customers.allSatisfy { $0.type == "account.upserted" })
        let first = try #require(customers.first { $0.data["accountnumber"] == "US-001" })
        #expect(first.data["transactioncurrencyid"] == .object(["isocurrencycode": "USD"]))
        #expect(first.data["customertypecode"] == .number("3"))
        #expect(first.header("ce_subject")?.text == "USMF/US-001")
        #expect(first.header("ce_company")?.text == "USMF")
        #expect(first.header("ce_origin") == nil)
        let echo = try #require(customers.first { $0.data["accountnumber"] == "US-002" })
        #expect(echo.header("ce_origin")?.text == "p2c")
        #expect(customers.last { $0.data["accountnumber"] == "US-001" }?.data["description"] == "Key account")

        let orders = try read("crm.orders.changes")
        // One document, one key, one partition: in the order it changed.
        #expect(Set(orders.map(\.partition)).count == 1)
        #expect(
            orders.map(\.type) == [
                "salesorder.upserted", "salesorderdetail.upserted", "salesorderdetail.upserted",
                "salesorderdetail.upserted", "salesorderdetail.deleted", "salesorderdetail.upserted",
            ])
        try #require(orders.count == 6, "every change of the order arrived")
        #expect(orders[0].data["customerid"] == .object(["accountnumber": "US-001"]))
        #expect(orders[0].data["msdyn_ordertype"] == .number("192350000"))
        #expect(orders[1].data["salesorderid"] == .object(["msdyn_salesordernumber": "C000001"]))
        // The deletion, then the new line, as they happened.
        #expect(orders[5].data["sequencenumber"] == .number("4"))
        let deleted = orders[4]
        #expect(
            deleted.data == [
                "salesorderid": .object(["msdyn_salesordernumber": "C000001"]), "sequencenumber": .number("2"),
            ])
        #expect(deleted.header("ce_subject")?.text == "USMF/C000001")
        let ids = (customers + orders).compactMap { $0.header("ce_id")?.text }
        #expect(Set(ids).count == ids.count, "nothing published twice")
    }

    @Test(
        "Webhooks: a person's changes posted as RemoteExecutionContext become change events (a delete keyed by its pre image), the apply identity's as echoes; while Kafka is unreachable the receiver answers 503 and the retried post lands once"
    )
    func webhooks() async throws {
        let port = LocalHTTP.freePort()
        let receiverURL = URL(string: "http://127.0.0.1:\(port)/dataverse")!
        var hooks = ["account", "salesorder", "salesorderdetail"].map {
            DataverseSimulator.Webhook(table: $0, url: receiverURL, key: "hook-key")
        }
        for index in hooks.indices { hooks[index].retryDelay = .seconds(4) }
        let simulator = try DataverseSimulator(clients: [apply, person, reader], webhooks: hooks)
        defer { simulator.stop() }
        var configuration = CaptureConfiguration()
        configuration.kafka = KafkaConfiguration(bootstrapServers: shared.cluster.bootstrapServers, clientID: "hooks")
        configuration.company = "USMF"
        let receiver = try WebhookReceiver(
            configuration: configuration, catalog: shared.catalog,
            reader: DataverseContextReader(client: client(simulator, reader), streams: []),
            applyUsers: [apply.systemUserID], key: "hook-key", port: port, deliveryTimeout: .seconds(2))
        defer { receiver.stop() }
        let seller = client(simulator, person)
        func write(_ resource: String, _ body: JSONObject, as dataverse: ServiceClient? = nil) async throws {
            let answer = try await (dataverse ?? seller).send("PATCH", resource, body: body)
            #expect((200..<300).contains(answer.status), "\(resource): \(answer.status)")
        }
        try await write("accounts(accountnumber='WH-1')", ["customertypecode": .number("3")])
        try await write(
            "accounts(accountnumber='WH-2')", ["customertypecode": .number("3")], as: client(simulator, apply))
        try await write(
            "salesorders(msdyn_salesordernumber='C000900')",
            ["customerid_account@odata.bind": "/accounts(accountnumber='WH-1')"])
        let header = try await seller.get("salesorders(msdyn_salesordernumber='C000900')?$select=salesorderid")
        let headerID = try #require(header["salesorderid"]?.stringValue)
        try await write(
            "salesorderdetails(_salesorderid_value=\(headerID),sequencenumber=1)", ["quantity": .number("5")])
        #expect(
            try await seller.send("DELETE", "salesorderdetails(_salesorderid_value=\(headerID),sequencenumber=1)")
                .status
                == 204)
        // The line's create is published, or read back after its delete and then publishes nothing.
        try await waitUntilOnThread(.seconds(90), every: .milliseconds(200)) {
            receiver.metrics.published.value + receiver.metrics.superseded.value >= 5
        }
        let customers = try read("crm.customers.changes").filter {
            $0.data["accountnumber"]?.stringValue?.hasPrefix("WH-") == true
        }
        #expect(customers.count == 2)
        let first = try #require(customers.first { $0.data["accountnumber"] == "WH-1" })
        #expect(first.data["customertypecode"] == .number("3"))
        #expect(first.header("ce_origin") == nil)
        #expect(customers.first { $0.data["accountnumber"] == "WH-2" }?.header("ce_origin")?.text == "p2c")
        let orders = try read("crm.orders.changes").filter { $0.header("ce_subject")?.text == "USMF/C000900" }
        // Asynchronous webhooks keep no order: each change arrives, in whatever order, and is read
        // back when taken (the line's create, taken after its delete, publishes nothing).
        #expect(
            Set(orders.map(\.type)) == ["salesorder.upserted", "salesorderdetail.deleted", "salesorderdetail.upserted"]
                || orders.map(\.type).sorted() == ["salesorder.upserted", "salesorderdetail.deleted"])
        #expect(orders.count <= 3)
        #expect(
            orders.first { $0.type == "salesorder.upserted" }?.data["customerid"] == .object(["accountnumber": "WH-1"]))
        #expect(
            orders.first { $0.type == "salesorderdetail.deleted" }?.data
                == ["salesorderid": .object(["msdyn_salesordernumber": "C000900"]), "sequencenumber": .number("1")])

        // Kafka unreachable: 503, then the sender's one retry lands once Kafka is back.
        try shared.cluster.setBrokerDown(1)
        try await write(
            "accounts(accountnumber='WH-1')", ["customertypecode": .number("3"), "description": "while down"])
        try await waitUntilOnThread(.seconds(20), every: .milliseconds(200)) { receiver.metrics.failures.value >= 1 }
        #expect(receiver.metrics.failures.value == 1, "the first post was answered 503")
        try shared.cluster.setBrokerUp(1)
        try await waitUntilOnThread(.seconds(90), every: .milliseconds(200)) { receiver.metrics.published.value >= 6 }
        let updates = try read("crm.customers.changes").filter { $0.data["description"] == "while down" }
        #expect(updates.count == 1, "the retried post landed once")
    }

    @Test(
        "An expired delta link (refused with 400 or 404: the service's answer is not documented) makes capture take a new snapshot, which carries the change made meanwhile",
        arguments: [400, 404])
    func expiredDeltaLink(status: Int) async throws {
        var faults = DataverseSimulator.Faults()
        faults.deltaExpiry = .seconds(1)
        faults.deltaExpiredStatus = status
        let simulator = try DataverseSimulator(clients: [apply, person, reader], faults: faults)
        defer { simulator.stop() }
        let seller = client(simulator, person)
        let account = "EXP-\(status)"
        #expect(
            try await seller.send(
                "PATCH", "accounts(accountnumber='\(account)')", body: ["customertypecode": .number("3")]
            )
            .status == 204)
        // Idle tables are read every 4 s, and a link expires after 1 s: a change made after the
        // read that follows the snapshot meets an expired link at the next read.
        let running = try capture(
            simulator, group: "capture-expiry-\(status)", streams: [.customers], clientID: "expiry",
            pollIntervalMilliseconds: 4_000, echoes: false)
        @Sendable func events() throws -> [KafkaRecord] {
            try read("crm.customers.changes").filter { $0.data["accountnumber"]?.stringValue == account }
        }
        try await waitUntilOnThread(.seconds(90), every: .milliseconds(200)) { try !events().isEmpty }
        // A delta round read (more pages than snapshots, each snapshot one page here): the account's
        // link is fresh and its next read is 4 s away, by when the link has expired.
        try await waitUntilOnThread(.seconds(90), every: .milliseconds(200)) {
            running.member.metrics.pages.value > running.member.metrics.snapshots.value
        }
        let before = running.member.metrics.snapshots.value
        #expect(
            try await seller.send(
                "PATCH", "accounts(accountnumber='\(account)')",
                body: ["customertypecode": .number("3"), "description": "after expiry"]
            ).status == 204)
        try await waitUntilOnThread(.seconds(90), every: .milliseconds(200)) {
            try events().contains { $0.data["description"] == "after expiry" }
        }
        #expect(running.stop() == nil)
        #expect(try events().contains { $0.data["description"] == "after expiry" })
        // New snapshots after refused links, one of them carrying the change.
        #expect(running.member.metrics.refusedLinks.value >= 1)
        #expect(running.member.metrics.snapshots.value > before)
    }
}
