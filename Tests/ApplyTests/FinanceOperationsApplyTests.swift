import Apply
import Connectors
import FinanceOperations
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Simulators
import Synchronization
import TestSupport
import Testing
import Topology

/// Brokers of their own: the F&O stories read only their own events.
private let fno = broker()
private let fnoSmall = broker()

/// The ERP side's inbound events, as the crm-to-erp workers publish them: every field the maps
/// send to the ERP, upper case as the maps spell them, for key `<company>/<number>`.
private struct ERPStory {
    var records: [OutgoingRecord] = []
    /// Per entity set: key text (`USMF/<number>[#<line>]`) → the fields last sent, upper case.
    var expected: [String: [String: JSONObject]] = [:]
    var count = 0

    mutating func add(_ kind: RecordKind, company: String, number: String, line: Int? = nil, version: Int = 1) {
        var data = JSONObject()
        for row in TableMap.builtIn[kind.mapName]!.rows where row.type.flowsToERP && row.erpField != "none" {
            guard data[row.erpField] == nil else { continue }
            data[row.erpField] =
                FinanceOperationsSchemaTypes.isDecimal(row.erpField)
                ? .number("\(count % 97).\(version)5") : .string("\(row.erpField.suffix(8)) \(number) v\(version)")
        }
        data[kind.erpKey] = .string(number)
        if kind.erpEntitySet == "ReleasedProductsV2" { data["ITEMNUMBER"] = .string(number) }
        if let line {
            data["LINECREATIONSEQUENCENUMBER"] = .number(String(line))
        } else {
            data["LINECREATIONSEQUENCENUMBER"] = nil
        }
        count += 1
        let subject = "\(company)/\(number)"
        records.append(
            OutgoingRecord(
                topic: Role.inbound.topicName(side: .erp, stream: kind.stream), key: Array(subject.utf8),
                value: data.jsonBytes,
                headers: [
                    KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", "erp-story-\(count)"),
                    KafkaHeader("ce_source", "crm"), KafkaHeader("ce_type", "\(kind.erpName).upserted"),
                    KafkaHeader("ce_subject", subject), KafkaHeader("ce_company", company),
                    KafkaHeader("content-type", "application/json"),
                ]))
        expected[kind.erpEntitySet!, default: [:]][line.map { "\(subject)#\($0)" } ?? subject] = data
    }
}

/// Which ERP fields the story fills with decimals.
private enum FinanceOperationsSchemaTypes {
    static func isDecimal(_ field: String) -> Bool {
        ["AMOUNT", "QUANTITY", "PRICE", "PERCENTAGE", "LIMIT", "COST", "LATITUDE", "LONGITUDE"].contains {
            field.hasSuffix($0)
        }
            || field.hasSuffix("SEQUENCENUMBER")
    }
}

@Suite("p2c apply --side erp: inbound events written into F&O (Open Data Protocol (OData))", .serialized)
struct FinanceOperationsApplyTests {
    let apply = FinanceOperationsSimulator.Client(id: UUID(), secret: "apply-secret")

    private func client(_ simulator: FinanceOperationsSimulator) -> ServiceClient {
        var settings = ServiceClient.Settings(
            url: simulator.baseURL, tenantID: simulator.tenantID.uuidString.lowercased(),
            clientID: apply.id.uuidString.lowercased(), clientSecret: apply.secret)
        settings.authority = simulator.baseURL
        var configuration = HTTPClient.Configuration()
        configuration.retriesThrottled = false
        return ServiceClient(
            settings: settings, http: HTTPClient(configuration: configuration), api: .financeOperations)
    }

    private func publish(_ records: [OutgoingRecord], to broker: TestBroker = fno) throws {
        try broker.publish(records)
    }

    private func applier(
        _ simulator: FinanceOperationsSimulator, group: String, streams: [SyncStream],
        on broker: TestBroker = fno, referenceWait: Int = 60_000
    ) throws -> Applier {
        var configuration = ApplyConfiguration()
        configuration.side = .erp
        configuration.streams = streams
        configuration.kafka = KafkaConfiguration(bootstrapServers: broker.cluster.bootstrapServers, clientID: group)
        configuration.groupID = group
        configuration.sessionTimeout = .seconds(6)
        configuration.commitInterval = .milliseconds(200)
        configuration.referenceWait = .milliseconds(referenceWait)
        let client = client(simulator)
        return try Applier(
            configuration: configuration, catalog: broker.catalog,
            sinks: [FinanceOperationsSink(client: client, schema: FinanceOperationsSchema(client: client))])
    }

    /// The simulator's records of `set` by `<dataAreaId>/<number>[#<line>]`, fields upper case as the maps spell them.
    private func stored(
        _ simulator: FinanceOperationsSimulator, _ set: String, key: String, tag: String
    )
        -> [String: JSONObject]
    {
        var result: [String: JSONObject] = [:]
        for record in simulator.records(set) {
            var upper = JSONObject()
            for field in record.fields where field.key != "dataAreaId" { upper[field.key.uppercased()] = field.value }
            let company = record["dataAreaId"]?.stringValue ?? ""
            var text = "\(company)/\(upper[key]?.stringValue ?? "")"
            if case .number(let line)? = upper["LINECREATIONSEQUENCENUMBER"], set.hasSuffix("Lines") {
                text += "#\(line)"
            }
            // The other story's records: the same topics, read from the start by a new group.
            if upper[key]?.stringValue?.hasPrefix(tag) == true { result[text] = upper }
        }
        return result
    }

    @Test(
        "Customers, contacts, quotes and orders with lines (two companies, updates after creates) reach F&O complete, every field under its $metadata name, lines after their header, through 429s, 5 % 503s and latency, under both readings of what F&O leaves undocumented; nothing dead-lettered",
        arguments: ["patch-missing=404,batch-on-error=stop", "patch-missing=create,batch-on-error=continue"])
    func story(readingsText: String) async throws {
        var limits = FinanceOperationsSimulator.Limits()
        limits.requests = 12
        limits.window = .seconds(1)
        var faults = FinanceOperationsSimulator.Faults()
        faults.unavailable = 0.05
        faults.latency = .milliseconds(3)
        let readings = try FinanceOperationsSimulator.Readings(parsing: readingsText)
        let simulator = try FinanceOperationsSimulator(
            clients: [apply], limits: limits, faults: faults, readings: readings)
        defer { simulator.stop() }
        let kinds = Dictionary(grouping: RecordKind.all, by: \.erpName).mapValues { $0[0] }
        var story = ERPStory()
        let tag = readingsText.hasPrefix("patch-missing=404") ? "A" : "B"
        for company in ["USMF", "DEMF"] {
            for number in 1...60 {
                story.add(kinds["CustomersV3"]!, company: company, number: "\(tag)C-\(number)")
            }
            for number in 1...30 { story.add(kinds["ContactsV2"]!, company: company, number: "\(tag)P-\(number)") }
            for (header, line, prefix) in [
                ("SalesQuotationHeader", "SalesQuotationLine", "Q"), ("SalesOrderHeader", "SalesOrderLine", "S"),
            ] {
                for number in 1...40 {
                    let document = "\(tag)\(prefix)-\(number)"
                    story.add(kinds[header]!, company: company, number: document)
                    for sequence in 1...3 {
                        story.add(kinds[line]!, company: company, number: document, line: sequence)
                    }
                }
            }
            // Updates of records created above: PATCH, not POST.
            for number in 1...20 {
                story.add(kinds["CustomersV3"]!, company: company, number: "\(tag)C-\(number)", version: 2)
            }
        }
        try publish(story.records)
        let running = RunningApplier(
            try applier(
                simulator, group: "fno-story-\(tag)", streams: [.customers, .contacts, .quotes, .orders]))
        let sets = [
            ("CustomersV3", "CUSTOMERACCOUNT"), ("ContactPersons", "CONTACTPERSONID"),
            ("CDSSalesQuotationHeaders", "SALESQUOTATIONNUMBER"), ("CDSSalesQuotationLines", "SALESQUOTATIONNUMBER"),
            ("CDSSalesOrderHeaders", "SALESORDERNUMBER"), ("CDSSalesOrderLines", "SALESORDERNUMBER"),
        ]
        func complete() -> Bool {
            sets.allSatisfy { set, key in
                stored(simulator, set, key: key, tag: tag) == (story.expected[set] ?? [:])
            }
        }
        try await waitUntil(.seconds(120)) { complete() }
        let metrics = running.applier.metrics
        #expect(running.stop() == nil)
        for (set, key) in sets {
            let actual = stored(simulator, set, key: key, tag: tag)
            let expected = story.expected[set] ?? [:]
            #expect(actual.count == expected.count, "\(set)")
            let wrong = expected.filter { actual[$0.key] != $0.value }.keys.sorted()
            #expect(
                wrong.isEmpty, "\(set): \(wrong.prefix(3)) differ, e.g. \(wrong.first.map { actual[$0] as Any } ?? "")")
        }
        #expect(metrics.deadLettered.value == 0)
        #expect(simulator.throttledCount > 0, "the limits were small enough for 429s")
    }

    /// An inbound ERP event of `type` for `<company>/<number>`.
    private func event(_ stream: SyncStream, _ type: String, _ number: String, _ data: JSONObject) -> OutgoingRecord {
        OutgoingRecord(
            topic: Role.inbound.topicName(side: .erp, stream: stream), key: Array("USMF/\(number)".utf8),
            value: data.jsonBytes,
            headers: [
                KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", "\(type)-\(number)-\(UUID())"),
                KafkaHeader("ce_source", "crm"), KafkaHeader("ce_type", "\(type).upserted"),
                KafkaHeader("ce_company", "USMF"), KafkaHeader("content-type", "application/json"),
            ])
    }

    /// Every record of `topic` on the small broker.
    private func read(_ topic: String) throws -> [KafkaRecord] { try fnoSmall.read(topic) }

    @Test(
        "A write F&O refuses (a value not of its property's type: 400) lands in erp.customers.inbound.dlq with http_400 and F&O's message while the partition goes on; an order line queued before its header is written once the header is; a line whose header never comes is dead-lettered after referenceWaitMs"
    )
    func refusalsAndLateHeaders() async throws {
        let simulator = try FinanceOperationsSimulator(clients: [apply])
        defer { simulator.stop() }
        try publish(
            [
                event(.customers, "CustomersV3", "R-1", ["CUSTOMERACCOUNT": "R-1", "CREDITLIMIT": "lots"]),
                event(.customers, "CustomersV3", "R-1", ["CUSTOMERACCOUNT": "R-1", "CREDITLIMIT": .number("10")]),
                event(
                    .orders, "SalesOrderLine", "L-1",
                    ["SALESORDERNUMBER": "L-1", "LINECREATIONSEQUENCENUMBER": .number("1")]),
                event(.orders, "SalesOrderHeader", "L-1", ["SALESORDERNUMBER": "L-1"]),
                event(
                    .orders, "SalesOrderLine", "L-2",
                    ["SALESORDERNUMBER": "L-2", "LINECREATIONSEQUENCENUMBER": .number("1")]),
            ], to: fnoSmall)
        // A reference wait long enough for a header that comes late on a loaded machine; the header
        // that never comes is refused after it.
        let running = RunningApplier(
            try applier(
                simulator, group: "fno-refusals", streams: [.customers, .orders], on: fnoSmall, referenceWait: 10_000))
        try await waitUntil(.seconds(60)) {
            simulator.records("CDSSalesOrderLines").count == 1 && running.applier.metrics.deadLettered.value == 2
        }
        #expect(running.stop() == nil)
        // The refused write is dead-lettered; the next event of the same record is written.
        #expect(simulator.records("CustomersV3").map { $0["CreditLimit"] } == [.number("10")])
        let refused = try read("erp.customers.inbound.dlq")
        #expect(refused.count == 1)
        #expect(refused.first?.header("p2c_error_code")?.text == "http_400")
        #expect(
            refused.first?.header("p2c_error_message")?.text?.contains("Cannot convert the literal 'lots'") == true)
        // The late header: its line written after it; the header that never came: dead-lettered.
        #expect(simulator.records("CDSSalesOrderHeaders").count == 1)
        let lines = simulator.records("CDSSalesOrderLines")
        #expect(lines.first?["SalesOrderNumber"] == "L-1")
        let waited = try read("erp.orders.inbound.dlq")
        #expect(waited.map { $0.header("p2c_error_code")?.text } == ["reference_missing"])
    }

    @Test(
        "A document whose line comes before its header (the header's event later in the same key) is written in one change set, the header first: no wait, no dead letter"
    )
    func lineBeforeHeaderInOneRound() async throws {
        let simulator = try FinanceOperationsSimulator(clients: [apply])
        defer { simulator.stop() }
        let client = client(simulator)
        let sink = FinanceOperationsSink(client: client, schema: FinanceOperationsSchema(client: client))
        let line = ApplyItem(
            table: "SalesOrderLine", deleted: false,
            record: ["SALESORDERNUMBER": "LB-1", "LINECREATIONSEQUENCENUMBER": .number("1")], company: "USMF")
        let header = ApplyItem(
            table: "SalesOrderHeader", deleted: false, record: ["SALESORDERNUMBER": "LB-1"], company: "USMF")
        // A line of another order whose header this document does not write still waits.
        let orphan = ApplyItem(
            table: "SalesOrderLine", deleted: false,
            record: ["SALESORDERNUMBER": "LB-2", "LINECREATIONSEQUENCENUMBER": .number("1")], company: "USMF")
        let outcomes = await sink.apply([[line, header], [orphan]])
        #expect(outcomes[0] == [.applied, .applied])
        #expect(outcomes[1].count == 1)
        if case .referenceMissing = outcomes[1][0] {} else { Issue.record("the orphan line: \(outcomes[1])") }
        #expect(simulator.records("CDSSalesOrderHeaders").count == 1)
        #expect(simulator.records("CDSSalesOrderLines").map { $0["SalesOrderNumber"] } == ["LB-1"])
    }
}
