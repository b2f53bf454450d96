import Apply
import Capture
import Connectors
import Dataverse
import FinanceOperations
import Foundation
import Kafka
import Operations
import ProspectToCash
import Runtime
import Simulators
import Synchronization
import Topology
import Worker

/// `p2c bench --e2e`: a change made in the simulated Sales → written in the simulated F&O, through
/// the whole chain (capture, the crm-to-erp mapping worker, apply), p50 and p99: by change tracking
/// (poll interval stated) and by webhooks. An account becomes a `CustomersV3` record; the latency
/// runs from the end of the person's request in Sales to the moment F&O holds the record (seen by
/// reading the simulator every 2 ms).
public struct EndToEndBench: Sendable {
    var changes: Int
    var rate: Int
    var pollInterval: Int
    var catalog: TopicCatalog

    /// The worker bench's latency setting (its Bench.latencyFetchWait), for every member and hop.
    static let fetchWait = 1

    public init(changes: Int, rate: Int, pollInterval: Int, catalog: TopicCatalog) {
        self.changes = changes
        self.rate = rate
        self.pollInterval = pollInterval
        self.catalog = catalog
    }

    public func execute() throws -> Int32 {
        print(
            "p2c bench --e2e: \(changes) new accounts at \(rate)/s in the simulated Sales → CustomersV3 records in the simulated F&O, through capture, one crm-to-erp worker (exactly-once) and apply, each mode on its own embedded broker (fetch.wait.max.ms \(Self.fetchWait))"
        )
        let poll = try run(webhook: false)
        print("  change tracking, poll interval \(pollInterval) ms: p50 \(poll.p50) ms, p99 \(poll.p99) ms")
        let hook = try run(webhook: true)
        print("  webhooks: p50 \(hook.p50) ms, p99 \(hook.p99) ms")
        let back = try financeToSales()
        print(
            "  the other way, a new customer in F&O → its account in Sales by data events (erp-to-crm worker, apply into Dataverse): p50 \(back.p50) ms, p99 \(back.p99) ms"
        )
        return 0
    }

    /// A new customer in F&O → its account in Sales: data events, the erp-to-crm worker, apply.
    private func financeToSales() throws -> (p50: Int, p99: Int) {
        let log = Log([("component", "e2e-bench")], minimumLevel: .error)
        let person = SimulatedClient(id: UUID(), secret: "person")
        let reader = SimulatedClient(id: UUID(), secret: "capture")
        let writer = SimulatedClient(id: UUID(), secret: "apply")
        let port = LocalHTTP.freePort()
        let fno = try FinanceOperationsSimulator(
            clients: [person, reader],
            dataEvents: [.init(entity: "CustomersV3", url: URL(string: "http://127.0.0.1:\(port)/")!, key: "k")])
        let sales = try DataverseSimulator(clients: [writer])
        defer {
            sales.stop()
            fno.stop()
        }
        let (cluster, kafka) = try broker()
        _ = cluster
        let fnoReader = reader.client(of: fno.baseURL, tenant: fno.tenantID, api: .financeOperations, log: log)
        var capture = CaptureConfiguration()
        capture.side = .erp
        capture.kafka = kafka
        capture.streams = [.customers]
        let receiver = try WebhookReceiver(
            configuration: capture, catalog: catalog,
            reader: FinanceOperationsContextReader(
                schema: FinanceOperationsSchema(client: fnoReader), streams: [.customers]),
            applyUsers: [], key: "k", port: port, log: log)
        let worker = try mappingWorker(.erpToCRM, kafka: kafka, log: log)
        let applier = try Self.applier(
            .crm, streams: [.customers], kafka: kafka,
            client: writer.client(of: sales.baseURL, tenant: sales.tenantID, api: .dataverse, log: log),
            catalog: catalog, log: log)
        defer {
            receiver.stop()
            worker.stop()
            applier.stop()
            Thread.sleep(forTimeInterval: 1)
        }
        let clerk = person.client(of: fno.baseURL, tenant: fno.tenantID, api: .financeOperations, log: log)
        return try measure(
            create: { account in
                let answer = try AsyncBridge.wait {
                    try await clerk.send(
                        "POST", "CustomersV3?cross-company=true",
                        body: [
                            "dataAreaId": "USMF", "CustomerAccount": .string(account), "PartyType": "Organization",
                        ])
                }
                guard answer.status == 201 else { throw UsageError("F&O answered \(answer.status)") }
            },
            arrived: { Set(sales.rows("accounts").compactMap { $0["accountnumber"]?.stringValue }) })
    }

    /// A new account in Sales → its customer in F&O: capture (change tracking or webhooks), the
    /// crm-to-erp worker, apply.
    private func run(webhook: Bool) throws -> (p50: Int, p99: Int) {
        let log = Log([("component", "e2e-bench")], minimumLevel: .error)
        let person = SimulatedClient(id: UUID(), secret: "person")
        let reader = SimulatedClient(id: UUID(), secret: "capture")
        let writer = SimulatedClient(id: UUID(), secret: "apply")
        let port = LocalHTTP.freePort()
        let hooks =
            webhook
            ? [DataverseSimulator.Webhook(table: "account", url: URL(string: "http://127.0.0.1:\(port)/")!, key: "k")]
            : []
        let sales = try DataverseSimulator(clients: [person, reader], webhooks: hooks)
        let fno = try FinanceOperationsSimulator(clients: [writer])
        defer {
            sales.stop()
            fno.stop()
        }
        let (cluster, kafka) = try broker()
        _ = cluster
        var capture = CaptureConfiguration()
        capture.kafka = kafka
        capture.company = "USMF"
        capture.streams = [.customers]
        capture.pollInterval = .milliseconds(pollInterval)
        capture.sessionTimeout = .seconds(6)
        let salesReader = reader.client(of: sales.baseURL, tenant: sales.tenantID, api: .dataverse, log: log)
        var member: CaptureMember?
        var receiver: WebhookReceiver?
        if webhook {
            receiver = try WebhookReceiver(
                configuration: capture, catalog: catalog,
                reader: DataverseContextReader(client: salesReader, streams: capture.streams), applyUsers: [],
                key: "k", port: port, log: log)
        } else {
            let polling = try CaptureMember(
                configuration: capture, adapter: DataverseAdapter(), catalog: catalog, client: salesReader,
                applyUsers: [], log: log)
            Thread { try? polling.run() }.start()
            member = polling
        }
        let worker = try mappingWorker(.crmToERP, kafka: kafka, log: log)
        let applier = try Self.applier(
            .erp, streams: [.customers], kafka: kafka,
            client: writer.client(of: fno.baseURL, tenant: fno.tenantID, api: .financeOperations, log: log),
            catalog: catalog, log: log)
        defer {
            member?.stop()
            receiver?.stop()
            worker.stop()
            applier.stop()
            Thread.sleep(forTimeInterval: 1)
        }
        let seller = person.client(of: sales.baseURL, tenant: sales.tenantID, api: .dataverse, log: log)
        return try measure(
            create: { account in
                let answer = try AsyncBridge.wait {
                    try await seller.send(
                        "PATCH", "accounts(accountnumber='\(account)')",
                        body: ["customertypecode": .number("3"), "description": .string("Account \(account)")])
                }
                guard answer.status == 204 else { throw UsageError("Sales answered \(answer.status)") }
            },
            arrived: { Set(fno.records("CustomersV3").compactMap { $0["CustomerAccount"]?.stringValue }) })
    }

    /// An embedded broker with every topic, and the members' Kafka settings for it.
    private func broker() throws -> (EmbeddedCluster, KafkaConfiguration) {
        let cluster = try EmbeddedCluster(brokers: 1)
        for topic in catalog.topics { try cluster.createTopic(topic.name, partitions: topic.partitions) }
        var kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: "e2e-bench")
        // As in the worker's latency runs: the embedded broker holds an empty fetch for the whole
        // fetch.wait.max.ms even when records arrive meanwhile (a real broker answers at once).
        kafka.properties = ["fetch.wait.max.ms": String(Self.fetchWait)]
        return (cluster, kafka)
    }

    private func mappingWorker(_ flow: Flow, kafka: KafkaConfiguration, log: Log) throws -> Worker {
        try Self.mappingWorker(flow, kafka: kafka, catalog: catalog, log: log)
    }

    /// An apply member of `side` for `streams`, writing as `client`, on its own thread.
    static func applier(
        _ side: Side, streams: [SyncStream], kafka: KafkaConfiguration, client: ServiceClient, catalog: TopicCatalog,
        log: Log
    ) throws -> Applier {
        var configuration = ApplyConfiguration()
        configuration.side = side
        configuration.streams = streams
        configuration.kafka = kafka
        configuration.sessionTimeout = .seconds(6)
        let sinks = Systems.adapter(for: side).sinks(clients: [client])
        let applier = try Applier(configuration: configuration, catalog: catalog, sinks: sinks.sinks, log: log)
        Thread { try? applier.run() }.start()
        return applier
    }

    /// One mapping worker of `flow` for the customers stream, on its own thread.
    static func mappingWorker(
        _ flow: Flow, kafka: KafkaConfiguration, catalog: TopicCatalog, log: Log
    ) throws
        -> Worker
    {
        var mapping = WorkerConfiguration()
        mapping.flow = flow
        mapping.streams = [.customers]
        mapping.kafka = kafka
        mapping.sessionTimeout = .seconds(6)
        mapping.metricsPort = 0
        let worker = try Worker(configuration: mapping, catalog: catalog, log: log)
        Thread { try? worker.run() }.start()
        return worker
    }

    /// Warms the chain up with 5 records (not measured), then creates `changes` records at `rate`
    /// and notes when each appears on the other side (read every 2 ms): p50 and p99 in ms.
    private func measure(
        create: (String) throws -> Void, arrived: @escaping @Sendable () -> Set<String>
    ) throws -> (
        p50: Int, p99: Int
    ) {
        for number in 1...5 { try create("WARM-\(number)") }
        let warm = ContinuousClock.now + .seconds(90)
        while arrived().count < 5 && ContinuousClock.now < warm { Thread.sleep(forTimeInterval: 0.1) }
        guard arrived().count >= 5 else { throw UsageError("the warm-up records never reached the other side") }
        let seen = Mutex<[String: Int64]>([:])
        let watching = Atomic<Bool>(true)
        Thread {
            while watching.load(ordering: .relaxed) {
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                let present = arrived()
                seen.withLock { seen in
                    for record in present where seen[record] == nil { seen[record] = now }
                }
                Thread.sleep(forTimeInterval: 0.002)
            }
        }.start()
        defer { watching.store(false, ordering: .relaxed) }
        var written: [String: Int64] = [:]
        for number in 1...changes {
            let record = "E2E-\(number)"
            try create(record)
            written[record] = Int64(Date().timeIntervalSince1970 * 1000)
            Thread.sleep(forTimeInterval: 1.0 / Double(rate))
        }
        let deadline = ContinuousClock.now + .seconds(Double(pollInterval) / 1000 * 3 + 60)
        while seen.withLock({ seen in written.keys.filter { seen[$0] != nil }.count }) < changes
            && ContinuousClock.now < deadline
        {
            Thread.sleep(forTimeInterval: 0.1)
        }
        let latencies = seen.withLock { seen in
            written.compactMap { record, at in seen[record].map { max(0, $0 - at) } }
        }
        .sorted()
        guard latencies.count == changes else {
            throw UsageError("only \(latencies.count) of \(changes) records reached the other side")
        }
        return (
            Int(latencies[latencies.count / 2]), Int(latencies[min(latencies.count - 1, latencies.count * 99 / 100)])
        )
    }
}
