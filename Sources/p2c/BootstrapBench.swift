import Capture
import Connectors
import Foundation
import Kafka
import OData
import ProspectToCash
import Runtime
import Simulators
import Topology

/// `p2c bench --bootstrap`: the initial load's rate out of the F&O simulator into Kafka, under the
/// documented default limits per user (6,000 requests and 1,200 s of execution per 5 minutes, 52
/// concurrent; FO-SPL) with each read costing 2 ms of execution (a stated model), one identity.
/// Reported beside dual-write's documented initial-sync ceiling (500,000 records a legal entity in
/// 24 hours, DW-INIT: 5.8 records/s).
struct BootstrapBench {
    var documents: Int
    var pageSize: Int
    var catalog: TopicCatalog

    func execute() throws -> Int32 {
        var limits = ServiceLimits()
        limits.readCost = .milliseconds(2)
        limits.writeCost = .milliseconds(10)
        let loader = SimulatedClient(id: UUID(), secret: "bench")
        let simulator = try FinanceOperationsSimulator(clients: [loader], limits: limits)
        defer { simulator.stop() }
        var settings = ServiceClient.Settings(
            url: simulator.baseURL, tenantID: simulator.tenantID.uuidString.lowercased(),
            clientID: loader.id.uuidString.lowercased(), clientSecret: loader.secret)
        settings.authority = simulator.baseURL
        let log = Log([("component", "bootstrap-bench")], minimumLevel: .error)
        let client = ServiceClient(settings: settings, http: HTTPClient(log: log), api: .financeOperations)
        // Orders of 4 lines each, as a person's records: 5 records a document.
        var creates: [ODataMessage] = []
        for document in 0..<documents {
            let number = "S\(String(format: "%07d", document))"
            creates.append(
                Self.post(
                    "CDSSalesOrderHeaders",
                    [
                        "dataAreaId": "USMF", "SalesOrderNumber": .string(number),
                        "OrderingCustomerAccountNumber": .string("C-\(document % 500)"),
                        "SalesOrderName": .string("Order \(number)"),
                    ]))
            for line in 1...4 {
                creates.append(
                    Self.post(
                        "CDSSalesOrderLines",
                        [
                            "dataAreaId": "USMF", "SalesOrderNumber": .string(number),
                            "LineCreationSequenceNumber": .number(String(line)),
                            "ProductNumber": .string("D-\(line)"), "OrderedSalesQuantity": .number(String(line * 3)),
                            "LineDescription": .string("Line \(line) of \(number)"),
                        ]))
            }
        }
        let records = creates.count
        let seeded = try AsyncBridge.wait { [creates] in
            for start in stride(from: 0, to: creates.count, by: 1_000) {
                let batch = ODataBatch(creates[start..<min(start + 1_000, creates.count)].map { .single($0) })
                    .encoded()
                let answer = try await client.sendRaw(
                    "POST", "$batch", body: batch.body, headers: HTTPHeaders([("Content-Type", batch.contentType)]))
                guard answer.status == 200 else { return false }
            }
            return true
        }
        guard seeded, simulator.records("CDSSalesOrderLines").count == documents * 4 else {
            print("p2c bench --bootstrap: seeding the simulator failed")
            return 1
        }
        let cluster = try EmbeddedCluster(brokers: 1)
        for topic in catalog.topics { try cluster.createTopic(topic.name, partitions: topic.partitions) }
        var configuration = BootstrapConfiguration()
        configuration.kafka = KafkaConfiguration(
            bootstrapServers: cluster.bootstrapServers, clientID: "bootstrap-bench")
        configuration.streams = [.orders]
        configuration.pageSize = pageSize
        print(
            "p2c bench --bootstrap: \(records) records (\(documents) orders of 4 lines) in the F&O simulator, documented default limits per user, reads 2 ms of execution each, pages of \(pageSize), one identity"
        )
        let bootstrap = try Bootstrap(configuration: configuration, catalog: catalog, client: client, log: log)
        let started = ContinuousClock.now
        let done = try bootstrap.run()
        let elapsed = (ContinuousClock.now - started).seconds
        let rate = Double(bootstrap.published.value) / elapsed
        print(
            "bootstrap: \(bootstrap.published.value) records in \(String(format: "%.1f", elapsed)) s = \(Int(rate)) records/s (\(done ? "complete" : "stopped")), \(simulator.requestCount) requests, 429s \(simulator.throttledCount); dual-write's initial sync: at most 5.8 records/s (500,000 a legal entity in 24 h): \(String(format: "%.0f", rate / (500_000.0 / 86_400)))×"
        )
        return bootstrap.published.value == records ? 0 : 1
    }

    private static func post(_ set: String, _ body: JSONObject) -> ODataMessage {
        ODataMessage(
            method: "POST", url: "\(set)?cross-company=true",
            headers: HTTPHeaders([("Content-Type", "application/json")]), body: body.jsonBytes)
    }
}
