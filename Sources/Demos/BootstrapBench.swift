import Apply
import Capture
import Connectors
import Dataverse
import FinanceOperations
import Foundation
import Kafka
import OData
import ProspectToCash
import Runtime
import Simulators
import Topology
import Worker

/// `p2c bench --bootstrap`: the initial load's rate out of the F&O simulator into Kafka, under the documented
/// default limits per user (6,000 requests and 1,200 s of execution per 5 minutes, 52 concurrent; "Service
/// protection API limits") with each read costing 2 ms of execution (a stated model), one identity. Reported beside
/// dual-write's documented initial-sync ceiling (500,000 records a legal entity in 24 hours, "Initial
/// synchronization guidance": 5.8 records/s).
///
/// Then the whole chain: customers loaded out of F&O, mapped by an erp-to-crm worker and written into the simulated
/// Dataverse by apply under its documented default limits per user (writes 10 ms of execution each, a stated
/// model), with one identity and with two: records/s from the start of the load until the last account is in
/// Dataverse.
///
/// A load that short never spends the 5-minute execution budget (1,200 s, i.e. 120,000 writes at 10 ms), which is
/// what holds a long one. So the chain runs once more per identity count with the Dataverse limits' window scaled
/// to `window` seconds at the same rates (as `--apply` does), with enough customers to outlast the first window and
/// `seconds` more: records/s after the first window, against the 400 writes/s per identity the budget allows.
public struct BootstrapBench: Sendable {
    var documents: Int
    var customers: Int
    var pageSize: Int
    var window: Int
    var seconds: Int
    var catalog: TopicCatalog

    static let dualWrite = 500_000.0 / 86_400

    public init(documents: Int, customers: Int, pageSize: Int, window: Int, seconds: Int, catalog: TopicCatalog) {
        self.documents = documents
        self.customers = customers
        self.pageSize = pageSize
        self.window = window
        self.seconds = seconds
        self.catalog = catalog
    }

    public func execute() throws -> Int32 {
        // Reads cost execution time; the seeding's writes cost none (they are not measured).
        var limits = ServiceLimits()
        limits.readCost = .milliseconds(2)
        let loader = SimulatedClient(id: UUID(), secret: "bench")
        let simulator = try FinanceOperationsSimulator(clients: [loader], limits: limits)
        defer { simulator.stop() }
        let log = Log([("component", "bootstrap-bench")], minimumLevel: .error)
        let client = loader.client(
            of: simulator.baseURL, tenant: simulator.tenantID, api: .financeOperations, log: log)
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
        let bootstrap = try Bootstrap(
            configuration: configuration, adapter: FinanceOperationsAdapter(), catalog: catalog, client: client,
            log: log)
        let started = ContinuousClock.now
        let done = try bootstrap.run()
        let elapsed = (ContinuousClock.now - started).seconds
        let rate = Double(bootstrap.published.value) / elapsed
        print(
            "bootstrap: \(bootstrap.published.value) records in \(String(format: "%.1f", elapsed)) s = \(Int(rate)) records/s (\(done ? "complete" : "stopped")), \(simulator.requestCount) requests, 429s \(simulator.throttledCount); dual-write's initial sync: at most 5.8 records/s (500,000 a legal entity in 24 h): \(String(format: "%.0f", rate / Self.dualWrite))×"
        )
        guard bootstrap.published.value == records else { return 1 }
        var rates: [Double] = []
        for identities in [1, 2] {
            let rate = try chain(identities: identities, customers: customers, window: nil)
            rates.append(rate)
            print(
                "bootstrap through the chain (F&O → Kafka → erp-to-crm worker → apply → Dataverse), \(customers) customers, \(identities) Dataverse identit\(identities == 1 ? "y" : "ies"): \(Int(rate)) records/s = \(String(format: "%.0f", rate / Self.dualWrite))× dual-write's initial sync (goal ≥ 24×, 140 records/s)"
            )
        }
        print(
            "  two identities: \(String(format: "%.2f", rates[1] / rates[0]))× one (a load this short spends no budget)"
        )
        print(
            "bootstrap through the chain, budget-bound: the Dataverse limits' window scaled to \(window) s (\(6_000 * window / 300) requests, \(1_200 * window / 300) s of execution), records/s over \(seconds) s after the first window"
        )
        rates = []
        for identities in [1, 2] {
            let ceiling = 400.0 * Double(identities)
            let load = Int(ceiling * Double(window + seconds) * 1.3)
            let rate = try chain(identities: identities, customers: load, window: window)
            rates.append(rate)
            print(
                "  \(load) customers, \(identities) Dataverse identit\(identities == 1 ? "y" : "ies"): \(Int(rate)) records/s = \(String(format: "%.2f", rate / ceiling)) of the \(Int(ceiling)) writes/s the budget allows, \(String(format: "%.0f", rate / Self.dualWrite))× dual-write's initial sync"
            )
        }
        print("  two identities: \(String(format: "%.2f", rates[1] / rates[0]))× one (goal: close to 2×)")
        return 0
    }

    /// Customers out of F&O into Dataverse through the chain: records/s from the start of the load
    /// to the last account written; with `window`, over `seconds` after the first window.
    private func chain(identities: Int, customers: Int, window: Int?) throws -> Double {
        let log = Log([("component", "bootstrap-bench")], minimumLevel: .error)
        let loader = SimulatedClient(id: UUID(), secret: "load")
        let fno = try FinanceOperationsSimulator(clients: [loader])
        var limits = ServiceLimits()
        limits.writeCost = .milliseconds(10)
        limits.readCost = .milliseconds(2)
        if let window {
            limits.window = .seconds(window)
            limits.requests = 6_000 * window / 300
            limits.execution = .seconds(1_200 * window / 300)
        }
        let writers = (0..<identities).map { _ in SimulatedClient(id: UUID(), secret: "apply") }
        let sales = try DataverseSimulator(clients: writers, limits: limits)
        defer {
            fno.stop()
            sales.stop()
        }
        func client(_ url: URL, _ tenant: UUID, _ user: SimulatedClient, _ api: ServiceClient.API) -> ServiceClient {
            var http = HTTPClient.Configuration()
            http.retriesThrottled = api == .financeOperations
            return user.client(of: url, tenant: tenant, api: api, log: log, http: http)
        }
        let source = client(fno.baseURL, fno.tenantID, loader, .financeOperations)
        let creates = (0..<customers).map { number in
            Self.post(
                "CustomersV3",
                [
                    "dataAreaId": "USMF", "CustomerAccount": .string("C\(String(format: "%06d", number))"),
                    "PartyType": "Organization", "CreditLimit": .number(String(1_000 + number)),
                    "SalesMemo": .string("Customer \(number)"), "IdentificationNumber": .string("ID-\(number)"),
                ])
        }
        let seeded = try AsyncBridge.wait { [creates] in
            for start in stride(from: 0, to: creates.count, by: 1_000) {
                let batch = ODataBatch(creates[start..<min(start + 1_000, creates.count)].map { .single($0) })
                    .encoded()
                let answer = try await source.sendRaw(
                    "POST", "$batch", body: batch.body, headers: HTTPHeaders([("Content-Type", batch.contentType)]))
                guard answer.status == 200 else { return false }
            }
            return true
        }
        guard seeded else { throw UsageError("seeding the F&O simulator failed") }
        let cluster = try EmbeddedCluster(brokers: 1)
        for topic in catalog.topics { try cluster.createTopic(topic.name, partitions: topic.partitions) }
        var kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: "bootstrap-chain")
        kafka.properties = ["fetch.wait.max.ms": "10"]
        let worker = try EndToEndBench.mappingWorker(.erpToCRM, kafka: kafka, catalog: catalog, log: log)
        var apply = ApplyConfiguration()
        apply.side = .crm
        apply.streams = [.customers]
        apply.kafka = kafka
        apply.sessionTimeout = .seconds(6)
        let sinks = DataverseAdapter().sinks(
            clients: writers.map { client(sales.baseURL, sales.tenantID, $0, .dataverse) })
        let applier = try Applier(configuration: apply, catalog: catalog, sinks: sinks.sinks, log: log)
        Thread { try? applier.run() }.start()
        defer {
            worker.stop()
            applier.stop()
            Thread.sleep(forTimeInterval: 1)
        }
        // Both groups assigned before the clock starts.
        while !applier.metrics.liveness.isReady || !worker.metrics.isReady { Thread.sleep(forTimeInterval: 0.1) }
        var configuration = BootstrapConfiguration()
        configuration.kafka = kafka
        configuration.streams = [.customers]
        configuration.pageSize = pageSize
        let started = ContinuousClock.now
        let bootstrap = try Bootstrap(
            configuration: configuration, adapter: FinanceOperationsAdapter(), catalog: catalog, client: source,
            log: log)
        if let window {
            // The load reads on while apply writes: from the first write on, the first window,
            // then the measured span.
            Thread { _ = try? bootstrap.run() }.start()
            defer { bootstrap.stop() }
            func applied() -> Int { applier.metrics.applied.value }
            while applied() == 0 { Thread.sleep(forTimeInterval: 0.05) }
            Thread.sleep(forTimeInterval: Double(window))
            let (count, from) = (applied(), ContinuousClock.now)
            Thread.sleep(forTimeInterval: Double(seconds))
            let written = applied() - count
            guard applied() < customers else {
                throw UsageError("the load ran out within \(seconds) s after the first window: add customers")
            }
            return Double(written) / (ContinuousClock.now - from).seconds
        }
        guard try bootstrap.run() else { throw UsageError("the load stopped") }
        let deadline = ContinuousClock.now + .seconds(600)
        while sales.rows("accounts").count < customers && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        let elapsed = (ContinuousClock.now - started).seconds
        guard sales.rows("accounts").count == customers else {
            throw UsageError("only \(sales.rows("accounts").count) of \(customers) accounts reached Dataverse")
        }
        return Double(customers) / elapsed
    }

    private static func post(_ set: String, _ body: JSONObject) -> ODataMessage {
        ODataMessage(
            method: "POST", url: "\(set)?cross-company=true",
            headers: HTTPHeaders([("Content-Type", "application/json")]), body: body.jsonBytes)
    }
}
