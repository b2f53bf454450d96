import Apply
import Connectors
import Dataverse
import Foundation
import Kafka
import Membership
import ProspectToCash
import Runtime
import Simulators
import Synchronization
import TestSupport
import Testing
import Topology

/// An embedded broker with every topic of `Topics/`, and that catalog.
func broker() -> TestBroker { TestBroker() }

/// One broker for the suite's big story, and a second for the small stories, one stream each, so
/// that no story reads another's events.
private let shared = broker()
private let small = broker()
/// The failing-document story's own: its members read every customer event of their broker.
private let sickBroker = broker()

/// An inbound event of `table` for key `USMF/<number>` carrying `data`.
private func inbound(
    _ stream: SyncStream, _ table: String, _ number: String, _ data: JSONObject, action: String = "upserted"
)
    -> OutgoingRecord
{
    OutgoingRecord(
        topic: Role.inbound.topicName(side: .crm, stream: stream), key: Array("USMF/\(number)".utf8),
        value: data.jsonBytes,
        headers: [
            KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", "\(table)-\(number)-\(UUID())"),
            KafkaHeader("ce_source", "erp"), KafkaHeader("ce_type", "\(table).\(action)"),
            KafkaHeader("content-type", "application/json"),
        ])
}

/// Sends `records` to the small broker (or `broker`) and waits for their delivery.
private func publish(_ records: [OutgoingRecord], to broker: TestBroker = small) throws {
    try broker.publish(records)
}

/// An apply member on its own thread, as `p2c apply` runs it.
final class RunningApplier: Sendable {
    let applier: Applier
    private let finished = Mutex<(done: Bool, error: String?)>((false, nil))

    init(_ applier: Applier) {
        self.applier = applier
        Thread { [self] in
            var failure: String?
            do { try applier.run() } catch { failure = "\(error)" }
            finished.withLock { $0 = (true, failure) }
        }.start()
    }

    /// Stops it and waits for `run()` to return; its error, if any.
    func stop() -> String? {
        applier.stop()
        while !finished.withLock({ $0.done }) { Thread.sleep(forTimeInterval: 0.02) }
        return finished.withLock { $0.error }
    }
}

/// A client of `simulator` for `user` whose HTTP client paces itself as apply's does.
private func dataverse(
    _ simulator: DataverseSimulator, _ user: DataverseSimulator.Client, pacing: Bool = false
)
    -> ServiceClient
{
    var settings = ServiceClient.Settings(
        url: simulator.baseURL, tenantID: simulator.tenantID.uuidString.lowercased(),
        clientID: user.id.uuidString.lowercased(), clientSecret: user.secret)
    settings.authority = simulator.baseURL
    var configuration = HTTPClient.Configuration()
    configuration.retriesThrottled = !pacing
    return ServiceClient(settings: settings, http: HTTPClient(configuration: configuration))
}

/// The CRM side's inbound events, as the erp-to-crm workers publish them: every column the maps
/// send to the CRM, lookups as natural keys.
private struct InboundStory {
    var records: [OutgoingRecord] = []
    /// Per entity set: alternate key text → the last record written for it.
    var expected: [String: [String: JSONObject]] = [:]
    /// Reference rows the environment must hold: entity set → key column → values.
    var references: [String: (column: String, values: Set<String>)] = [:]
    var count = 0

    /// The P2C tables, the lookup each P2C table's rows may point to, and the lookups left out
    /// (they point to rows this story does not create).
    static let documentLookups: [String: String] = [
        "customerid": "account", "msdyn_invoicecustomerid": "account", "productid": "product",
        "salesorderid": "salesorder", "quoteid": "quote", "invoiceid": "invoice",
        "msdyn_salesorderorigin": "msdyn_salesorderorigin",
    ]
    static let leftOut: Set<String> = [
        "msdyn_billingaccount", "msdyn_contactperson", "msdyn_associatedcontact", "msdyn_primarycontact",
        "msdyn_generatedsalesordernumber", "msdyn_globalproduct", "msdyn_partyid", "msdyn_alternativeitemnumber",
        "msdyn_operatingunit",
    ]

    /// A record of `kind` numbered `number` (a line: `line` of document `number`).
    mutating func add(_ kind: RecordKind, number: String, line: Int? = nil, accounts: [String], products: [String]) {
        var data = JSONObject()
        let map = TableMap.builtIn[kind.mapName]!
        for row in map.rows where row.type.flowsToCRM && row.crmColumn != "none" {
            if row.crmColumn.contains(".Account(") {
                let attribute = String(row.crmColumn.prefix { $0 != "." })
                data[attribute] = .object([
                    "accountnumber": .string(accounts[(count + attribute.count) % accounts.count])
                ])
                continue
            }
            let path = row.crmColumn.split(separator: ".").map(String.init)
            if path.count == 1 {
                if data[path[0]] != nil { continue }
                if let pair = row.valueMap.first {
                    data[path[0]] =
                        Int(pair.crm) != nil
                        ? .number(pair.crm)
                        : (pair.crm == "True" || pair.crm == "False") ? .bool(pair.crm == "True") : .string(pair.crm)
                } else if row.erpField.contains("AMOUNT") || row.erpField.contains("QUANTITY")
                    || row.erpField.contains("PRICE") || row.erpField.contains("PERCENTAGE")
                {
                    data[path[0]] = .number("\(count % 97).\(count % 10)5")
                } else {
                    data[path[0]] = .string("\(path[0].suffix(10)) \(number) 'O''Brien' #\(count)")
                }
                continue
            }
            let attribute = path[0]
            guard path.count == 2, !Self.leftOut.contains(attribute), data[attribute] == nil else { continue }
            if let table = Self.documentLookups[attribute] {
                let value: String
                switch table {
                case "product": value = products[count % products.count]
                case "account": value = accounts[count % accounts.count]
                case "msdyn_salesorderorigin": value = "ORIGIN-\(count % 5)"
                // An invoice's order: the order of the same number.
                case "salesorder" where kind.crmName == "invoice": value = "C" + number.dropFirst()
                default: value = number
                }
                data[attribute] = .object([path[1]: .string(value)])
                continue
            }
            // A reference table row the environment holds (currencies, units, sites...).
            let value = "\(path[1].suffix(8))-\(count % 3)"
            data[attribute] = .object([path[1]: .string(value)])
            references[attribute, default: (path[1], [])].values.insert(value)
        }
        data.set(path: kind.crmKey, to: .string(number))
        if let line { data["sequencenumber"] = .number(String(line)) }
        count += 1
        let key = Array("USMF/\(number)".utf8)
        let headers = [
            KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", "story-\(count)"),
            KafkaHeader("ce_source", "erp"), KafkaHeader("ce_type", "\(kind.crmName).upserted"),
            KafkaHeader("ce_subject", "USMF/\(number)"), KafkaHeader("ce_company", "USMF"),
            KafkaHeader("content-type", "application/json"),
        ]
        let topic = Role.inbound.topicName(side: .crm, stream: kind.stream)
        records.append(OutgoingRecord(topic: topic, key: key, value: data.jsonBytes, headers: headers))
        let set =
            [
                "msdyn_sharedproductdetails": "msdyn_sharedproductdetailses",
                "msdyn_contactforparty": "msdyn_contactforparties",
            ][
                kind.crmName] ?? kind.crmName + "s"
        expected[set, default: [:]][line.map { "\(number)#\($0)" } ?? number] = data
    }
}

@Suite("p2c apply: inbound events written into Dataverse (Use Upsert to Create or Update a record)", .serialized)
struct ApplyTests {
    let apply = DataverseSimulator.Client(id: UUID(), secret: "apply-secret")
    let secondApply = DataverseSimulator.Client(id: UUID(), secret: "second-secret")
    let person = DataverseSimulator.Client(id: UUID(), secret: "person-secret")

    private func configuration(group: String, on cluster: EmbeddedCluster = shared.cluster) -> ApplyConfiguration {
        var configuration = ApplyConfiguration()
        configuration.kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: group)
        configuration.groupID = group
        configuration.sessionTimeout = .seconds(6)
        configuration.commitInterval = .milliseconds(200)
        return configuration
    }

    /// Every record of `topic` from the start.
    private func read(_ topic: String, on broker: TestBroker = shared) throws -> [KafkaRecord] {
        try broker.read(topic)
    }

    @Test(
        "2,000 inbound events (customers, contacts, products, origins, quotes, orders, invoices with lines) reach Dataverse through two application users with every column and lookup, lines after their header, through 429s, 5 % 503s and latency; nothing lost, nothing dead-lettered"
    )
    func storyUnderLimits() async throws {
        var limits = DataverseSimulator.Limits()
        limits.requests = 40
        limits.window = .seconds(1)
        limits.concurrent = 3
        var faults = DataverseSimulator.Faults()
        faults.unavailable = 0.05
        faults.latency = .milliseconds(3)
        let simulator = try DataverseSimulator(clients: [apply, secondApply, person], limits: limits, faults: faults)
        defer { simulator.stop() }
        var story = InboundStory()
        // The simulator's P2C tables: the party streams' tables are not among them.
        let kinds = Dictionary(uniqueKeysWithValues: RecordKind.kinds(for: .classic).map { ($0.crmName, $0) })
        let accounts = (1...120).map { "US-\(String(format: "%04d", $0))" }
        let products = (1...40).map { "D\(String(format: "%04d", $0))" }
        for account in accounts {
            story.add(kinds["account"]!, number: account, accounts: accounts, products: products)
        }
        for contact in 1...40 {
            story.add(
                kinds["msdyn_contactforparty"]!, number: "CP-\(contact)", accounts: accounts, products: products)
        }
        for product in products {
            story.add(kinds["product"]!, number: product, accounts: accounts, products: products)
        }
        for origin in 0..<5 {
            story.add(
                kinds["msdyn_salesorderorigin"]!, number: "ORIGIN-\(origin)", accounts: accounts, products: products)
        }
        for (header, line, prefix, documents) in [
            ("quote", "quotedetail", "Q", 60), ("salesorder", "salesorderdetail", "C", 215),
            ("invoice", "invoicedetail", "I", 85),
        ] {
            for document in 1...documents {
                let number = "\(prefix)\(String(format: "%06d", document))"
                story.add(kinds[header]!, number: number, accounts: accounts, products: products)
                for position in 1...4 {
                    story.add(kinds[line]!, number: number, line: position, accounts: accounts, products: products)
                }
            }
        }
        #expect(story.records.count >= 2_000)
        // The reference rows a deployment has (currencies, units, sites...), written by a person.
        let seeding = dataverse(simulator, person)
        let schema = DataverseSchema(client: seeding)
        var targets: [String: String] = [:]
        for name in Set(kinds.keys) {
            for lookup in try await schema.table(name).lookups { targets[lookup.attribute] = lookup.target }
        }
        for (attribute, reference) in story.references {
            // The referenced table, as the environment's own definitions name it.
            let set = try await schema.table(try #require(targets[attribute])).entitySet
            for value in reference.values {
                // The person's own requests count against the same limits: sent until accepted.
                var answer = try await seeding.send("POST", set, body: [reference.column: .string(value)])
                while answer.status == 429 || answer.status == 503 {
                    try await Task.sleep(for: .milliseconds(200))
                    answer = try await seeding.send("POST", set, body: [reference.column: .string(value)])
                }
                // 412: another lookup to the same table seeded it already.
                #expect(answer.status == 204 || answer.status == 412, "\(set) \(value)")
            }
        }
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: shared.cluster.bootstrapServers)))
        for record in story.records { _ = try producer.send(record) }
        _ = try producer.flush(timeout: .seconds(30))

        var settings = configuration(group: "apply-story")
        settings.maxConcurrency = 6
        // Two application users share the load: the limits are per user.
        let clients = [dataverse(simulator, apply, pacing: true), dataverse(simulator, secondApply, pacing: true)]
        let tables = DataverseSchema(client: clients[0])
        let applier = try Applier(
            configuration: settings, catalog: shared.catalog,
            sinks: clients.map { DataverseSink(client: $0, schema: tables) })
        let running = RunningApplier(applier)
        let expectedRows = story.expected.values.reduce(0) { $0 + $1.count }
        func written() -> Int { story.expected.keys.reduce(0) { $0 + simulator.rows($1).count } }
        try await waitUntil(.seconds(150)) {
            written() >= expectedRows && applier.metrics.applied.value >= story.records.count
        }
        #expect(running.stop() == nil)

        #expect(written() == expectedRows)
        #expect(applier.metrics.deadLettered.value == 0)
        #expect(simulator.throttledCount > 0, "the limits were small enough to answer 429")
        #expect(applier.metrics.throttled.value > 0)
        #expect(simulator.peakConcurrent <= limits.concurrent)
        let writers = Set(
            story.expected.keys.flatMap { simulator.rows($0).compactMap { $0["_modifiedby_value"]?.stringValue } })
        #expect(
            writers == [apply.systemUserID.uuidString.lowercased(), secondApply.systemUserID.uuidString.lowercased()],
            "both identities wrote")
        // Every column as the event carried it; every lookup bound to the row its natural key names.
        let ids = Dictionary(
            uniqueKeysWithValues: [
                "accounts": "accountnumber", "products": "msdyn_productnumber", "salesorders": "msdyn_salesordernumber",
                "quotes": "msdyn_quotenumber", "invoices": "msdyn_invoicenumber",
            ].map { set, key in
                (
                    set,
                    Dictionary(
                        uniqueKeysWithValues: simulator.rows(set).map {
                            ($0[key]!.stringValue!, $0[String(set.dropLast()) + "id"]!)
                        })
                )
            })
        var checked = 0
        for (set, rows) in story.expected {
            let actual = simulator.rows(set)
            for (key, data) in rows {
                let number = String(key.prefix { $0 != "#" })
                let row = actual.first { row in
                    data.fields.allSatisfy { field in
                        if case .object = field.value { return true }
                        return row[field.key] == field.value
                    }
                }
                #expect(row != nil, "\(set) \(key) not written with every column")
                guard let row else { continue }
                for field in data.fields {
                    guard case .object(let nested) = field.value else { continue }
                    let value = row["_\(field.key)_value"]
                    #expect(value != nil, "\(set) \(key): lookup \(field.key) not bound")
                    if let target = ["accountnumber": "accounts", "msdyn_productnumber": "products"][
                        nested.keys.first!],
                        let id = ids[target]?[nested.fields.first!.value.stringValue!]
                    {
                        #expect(value == id, "\(set) \(key): \(field.key) bound to another row")
                    }
                    if set.hasSuffix("details") && ["salesorderid", "quoteid", "invoiceid"].contains(field.key) {
                        #expect(value == ids[field.key.dropLast(2) + "s"]?[number])
                    }
                }
                checked += 1
            }
        }
        #expect(checked == expectedRows)
        for stream in SyncStream.allCases where stream.sources.contains(.erp) {
            #expect(try read(Role.inboundDLQ.topicName(side: .crm, stream: stream)).isEmpty)
        }
    }

    /// A member applying `streams` of the small broker against `simulator`.
    private func member(
        _ simulator: DataverseSimulator, streams: [SyncStream], referenceWait: Int = 600_000
    ) throws -> (Applier, RunningApplier) {
        var settings = configuration(group: "apply-\(streams[0].rawValue)", on: small.cluster)
        settings.streams = streams
        settings.referenceWait = .milliseconds(referenceWait)
        let client = dataverse(simulator, apply, pacing: true)
        let applier = try Applier(
            configuration: settings, catalog: small.catalog,
            sinks: [DataverseSink(client: client, schema: DataverseSchema(client: client))])
        return (applier, RunningApplier(applier))
    }

    @Test(
        "A write Dataverse refuses (a column the table does not have: 400, web-api-client-errors) lands in crm.customers.inbound.dlq with http_400 and Dataverse's code while the partition goes on; a delete removes the row"
    )
    func refusedWrite() async throws {
        let simulator = try DataverseSimulator(clients: [apply, person])
        defer { simulator.stop() }
        let bad = inbound(.customers, "account", "US-BAD", ["accountnumber": "US-BAD", "nmae": "Typo Ltd."])
        try publish([
            inbound(.customers, "account", "US-100", ["accountnumber": "US-100", "name": "Before"]), bad,
            inbound(.customers, "account", "US-101", ["accountnumber": "US-101", "name": "After"]),
            inbound(.customers, "account", "US-102", ["accountnumber": "US-102", "name": "Gone soon"]),
            inbound(.customers, "account", "US-102", ["accountnumber": "US-102"], action: "deleted"),
        ])
        let (applier, running) = try member(simulator, streams: [.customers])
        try await waitUntil(.seconds(30)) { applier.metrics.applied.value + applier.metrics.deadLettered.value >= 5 }
        #expect(running.stop() == nil)
        #expect(simulator.rows("accounts").compactMap { $0["name"]?.stringValue }.sorted() == ["After", "Before"])
        let letters = try read("crm.customers.inbound.dlq", on: small)
        #expect(letters.count == 1)
        let letter = try #require(letters.first)
        #expect(letter.value == bad.value)
        #expect(letter.key == bad.key)
        #expect(letter.header(DeadLetter.codeHeader)?.text == "http_400 0x0")
        #expect(
            letter.header(DeadLetter.messageHeader)?.text?.contains("Could not find a property named 'nmae'") == true)
        #expect(letter.header(DeadLetter.messageHeader)?.text?.contains("PATCH ") == true)
        #expect(letter.header(DeadLetter.sourceTopicHeader)?.text == "crm.customers.inbound")
        #expect(letter.header("ce_type")?.text == "account.upserted")
    }

    /// Dataverse's sink, except that every write of a record whose `accountnumber` is `sick`
    /// comes back as a 500 (one row the service cannot write, while it writes every other).
    private struct FailingOne: DocumentSink {
        let sink: any DocumentSink
        let sick: String

        func apply(_ documents: [[ApplyItem]]) async -> [[ApplyOutcome]] {
            let healthy = documents.filter { $0.first?.record["accountnumber"]?.stringValue != sick }
            var written = await sink.apply(healthy).makeIterator()
            return documents.map { items in
                items.first?.record["accountnumber"]?.stringValue == sick
                    ? items.map { _ in .unavailable("HTTP 500 0x80040216: Generic SQL error.") } : written.next()!
            }
        }
    }

    @Test(
        "A customer Dataverse answers 500 for, again and again while it writes the others, lands in crm.customers.inbound.dlq with its last answer after unavailableWaitMs, and the partition goes on; while every write fails (the service down), nothing is dead-lettered"
    )
    func unavailableForOne() async throws {
        let simulator = try DataverseSimulator(clients: [apply, person])
        defer { simulator.stop() }
        var settings = configuration(group: "apply-sick", on: sickBroker.cluster)
        settings.streams = [.customers]
        settings.unavailableWait = .seconds(2)
        let client = dataverse(simulator, apply, pacing: true)
        let sink = DataverseSink(client: client, schema: DataverseSchema(client: client))

        // The service down: every write fails for longer than unavailableWaitMs.
        let down = try Applier(
            configuration: settings, catalog: sickBroker.catalog, sinks: [FailingOne(sink: sink, sick: "US-300")])
        try publish(
            [inbound(.customers, "account", "US-300", ["accountnumber": "US-300", "name": "Sick"])],
            to: sickBroker)
        let first = RunningApplier(down)
        try await waitUntil(.seconds(30)) { down.metrics.retried.value >= 4 }
        try await Task.sleep(for: .seconds(3))
        #expect(down.metrics.deadLettered.value == 0, "nothing went through: the service is down, nothing is given up")
        #expect(first.stop() == nil)

        // Others go through: the sick one is given up, those after it on its partition are written.
        try publish(
            (301...306).map {
                inbound(.customers, "account", "US-\($0)", ["accountnumber": .string("US-\($0)"), "name": "Well"])
            }, to: sickBroker)
        let applier = try Applier(
            configuration: settings, catalog: sickBroker.catalog, sinks: [FailingOne(sink: sink, sick: "US-300")])
        let running = RunningApplier(applier)
        try await waitUntil(.seconds(30)) {
            applier.metrics.applied.value >= 6 && applier.metrics.deadLettered.value == 1
        }
        #expect(running.stop() == nil)
        #expect(
            simulator.rows("accounts").compactMap { $0["accountnumber"]?.stringValue }.sorted()
                == (301...306).map { "US-\($0)" })
        let letters = try read("crm.customers.inbound.dlq", on: sickBroker).filter {
            $0.key == Array("USMF/US-300".utf8)
        }
        #expect(letters.count == 1)
        #expect(letters.first?.header(DeadLetter.codeHeader)?.text == "unavailable")
        #expect(letters.first?.header(DeadLetter.messageHeader)?.text?.hasPrefix("HTTP 500 0x80040216") == true)
    }

    @Test(
        "Party generation: a customer that arrives before its party waits for it, then the party, its delivery address (location, address, the party's use of it) and its e-mail are written by their natural keys"
    )
    func partyStreams() async throws {
        let simulator = try DataverseSimulator(clients: [apply, person])
        defer { simulator.stop() }
        let party: JSONObject = ["msdyn_partynumber": "P-77"]
        let location: JSONObject = ["msdyn_location": "L-77"]
        // The customer first, naming a party that does not exist yet.
        try publish([
            inbound(.customers, "account", "US-77", ["accountnumber": "US-77", "msdyn_partyid": .object(party)])
        ])
        let (applier, running) = try member(
            simulator, streams: [.customers, .parties, .postaladdresses, .electronicaddresses])
        try await waitUntil(.seconds(15)) { applier.metrics.waiting.value >= 2 }
        #expect(simulator.rows("accounts").isEmpty)
        try publish([
            inbound(
                .parties, "msdyn_party", "P-77",
                [
                    "msdyn_partynumber": "P-77", "msdyn_organizationname": "Litware, Inc.",
                    "msdyn_partytype": .number("192350002"),
                ]),
            inbound(.postaladdresses, "msdyn_postaladdresscollection", "L-77", ["msdyn_location": "L-77"]),
            inbound(
                .postaladdresses, "msdyn_postaladdress", "L-77",
                [
                    "msdyn_postaladdresscollectionid": .object(location), "msdyn_validfrom": "2026-01-01T00:00:00Z",
                    "msdyn_city": "Redmond", "msdyn_street": "1 Main Street",
                ]),
            inbound(
                .postaladdresses, "msdyn_partypostaladdress", "L-77",
                [
                    "msdyn_postaladdresscollectionid": .object(location), "msdyn_partyid": .object(party),
                    "msdyn_isprimary": .bool(true),
                ]),
            inbound(
                .electronicaddresses, "msdyn_partyelectronicaddress", "EA-77",
                [
                    "msdyn_electronicaddressnumber": "EA-77", "msdyn_partyid": .object(party),
                    "msdyn_locator": "info@litware.example", "msdyn_type": .number("192350002"),
                ]),
        ])
        try await waitUntil(.seconds(60)) {
            simulator.rows("accounts").count == 1 && simulator.rows("msdyn_partyelectronicaddresses").count == 1
                && simulator.rows("msdyn_partypostaladdresses").count == 1
        }
        #expect(running.stop() == nil)
        #expect(applier.metrics.deadLettered.value == 0)
        let written = try #require(simulator.rows("msdyn_parties").first)
        #expect(written["msdyn_organizationname"] == .string("Litware, Inc."))
        #expect(simulator.rows("accounts").first?["_msdyn_partyid_value"] == written["msdyn_partyid"])
        let address = try #require(simulator.rows("msdyn_postaladdresses").first)
        #expect(address["msdyn_city"] == .string("Redmond"))
        let collection = try #require(simulator.rows("msdyn_postaladdresscollections").first)
        #expect(address["_msdyn_postaladdresscollectionid_value"] == collection["msdyn_postaladdresscollectionid"])
        let link = try #require(simulator.rows("msdyn_partypostaladdresses").first)
        #expect(link["_msdyn_partyid_value"] == written["msdyn_partyid"])
        #expect(
            simulator.rows("msdyn_partyelectronicaddresses").first?["msdyn_locator"]
                == .string("info@litware.example"))
    }

    @Test(
        "A quote line whose header arrives later waits and is written once the header is; a reference that never comes is dead-lettered after referenceWaitMs"
    )
    func lateHeader() async throws {
        let simulator = try DataverseSimulator(clients: [apply, person])
        defer { simulator.stop() }
        let product: JSONObject = ["msdyn_productnumber": "D0001"]
        #expect(try await dataverse(simulator, person).send("POST", "products", body: product).status == 204)
        let line: JSONObject = [
            "quoteid": .object(["msdyn_quotenumber": "Q000900"]), "sequencenumber": .number("1"),
            "quantity": .number("2"),
            "productid": .object(product),
        ]
        // The line alone: its header is not there yet.
        try publish([inbound(.quotes, "quotedetail", "Q000900", line)])
        let (applier, running) = try member(simulator, streams: [.quotes])
        try await waitUntil(.seconds(15)) { applier.metrics.waiting.value >= 2 }
        #expect(simulator.rows("quotedetails").isEmpty)
        try publish([inbound(.quotes, "quote", "Q000900", ["msdyn_quotenumber": "Q000900", "name": "Late"])])
        try await waitUntil(.seconds(60)) { simulator.rows("quotedetails").count == 1 }
        let header = try #require(simulator.rows("quotes").first)
        let written = try #require(simulator.rows("quotedetails").first)
        #expect(written["_quoteid_value"] == header["quoteid"])
        #expect(written["quantity"] == .number("2"))
        #expect(running.stop() == nil)
        #expect(applier.metrics.deadLettered.value == 0)

        // Now with a short wait: a line for a quote that never comes is refused with its reason.
        try publish([
            inbound(
                .invoices, "invoicedetail", "I000404",
                [
                    "invoiceid": .object(["msdyn_invoicenumber": "I000404"]), "sequencenumber": .number("1"),
                ])
        ])
        let (short, shortRunning) = try member(simulator, streams: [.invoices], referenceWait: 1_000)
        try await waitUntil(.seconds(30)) { short.metrics.deadLettered.value >= 1 }
        #expect(shortRunning.stop() == nil)
        let letter = try #require(try read("crm.invoices.inbound.dlq", on: small).first)
        #expect(letter.header(DeadLetter.codeHeader)?.text == "reference_missing")
        #expect(
            letter.header(DeadLetter.messageHeader)?.text?.contains("invoices(msdyn_invoicenumber='I000404')") == true)
    }

    @Test(
        "SIGTERM while Dataverse does not answer: the member stops within its shutdown timeout and commits nothing it did not write"
    )
    func stopWhileTheServiceHangs() async throws {
        var faults = DataverseSimulator.Faults()
        faults.latency = .seconds(20)
        let simulator = try DataverseSimulator(clients: [apply, person], faults: faults)
        defer { simulator.stop() }
        try publish([inbound(.orders, "salesorder", "C000777", ["msdyn_salesordernumber": "C000777"])])
        var settings = configuration(group: "apply-hang", on: small.cluster)
        settings.streams = [.orders]
        settings.shutdownTimeout = .seconds(4)
        let client = dataverse(simulator, apply, pacing: true)
        let applier = try Applier(
            configuration: settings, catalog: small.catalog,
            sinks: [DataverseSink(client: client, schema: DataverseSchema(client: client))])
        let running = RunningApplier(applier)
        try await waitUntil(.seconds(20)) { applier.metrics.consumed.value == 1 }
        let started = ContinuousClock.now
        #expect(running.stop() == nil)
        #expect(ContinuousClock.now - started < .seconds(6))
        #expect(applier.metrics.applied.value == 0)
    }
}
