import Apply
import Connectors
import FinanceOperations
import Foundation
import Kafka
import Operations
import ProspectToCash
import Runtime
import Simulators
import Topology

/// `p2c bench --apply [--side erp]`: apply's write rate into the Dataverse (or F&O) simulator under its service
/// protection limits, as a ratio of the most those limits allow.
///
/// The documented per-user limits ("Service protection API limits": 6,000 requests and 1,200 s of combined
/// execution time per 5-minute sliding window) are scaled to a shorter window with the same rates, so that a run
/// passes through several windows in minutes; the execution-time model (each write runs 10 ms, each read 2 ms) is
/// stated, not documented. The ceiling is then the execution budget's rate divided by a write's cost: 1,200 s / 300
/// s / 10 ms = 400 writes/s per identity. The rate is measured after the first window (whose unspent budget allows
/// a burst) to the end. On F&O, whose writes need a read first (no documented upsert), the reads spend part of the
/// same budget.
public struct ApplyBench: Sendable {
    var side: Side = .crm
    var seconds: Int
    var window: Int
    var identities: Int
    var catalog: TopicCatalog

    static let writeCost = Duration.milliseconds(10)
    static let readCost = Duration.milliseconds(2)

    public init(side: Side = .crm, seconds: Int, window: Int, identities: Int, catalog: TopicCatalog) {
        self.side = side
        self.seconds = seconds
        self.window = window
        self.identities = identities
        self.catalog = catalog
    }

    public func execute() throws -> Int32 {
        var limits = DataverseSimulator.Limits()
        limits.window = .seconds(window)
        limits.requests = 6_000 * window / 300
        limits.execution = .seconds(1_200 * window / 300)
        limits.writeCost = Self.writeCost
        limits.readCost = Self.readCost
        let ceiling = limits.execution.seconds / limits.window.seconds / Self.writeCost.seconds * Double(identities)
        let clients = (0..<identities).map { _ in SimulatedClient(id: UUID(), secret: "bench") }
        let dataverse = side == .crm ? try DataverseSimulator(clients: clients, limits: limits) : nil
        let fno = side == .erp ? try FinanceOperationsSimulator(clients: clients, limits: limits) : nil
        defer {
            dataverse?.stop()
            fno?.stop()
        }
        let baseURL = dataverse?.baseURL ?? fno!.baseURL
        let tenantID = dataverse?.tenantID ?? fno!.tenantID
        let throttled = { dataverse?.throttledCount ?? fno!.throttledCount }
        let peakConcurrent = { dataverse?.peakConcurrent ?? fno!.peakConcurrent }
        let cluster = try EmbeddedCluster(brokers: 1)
        for topic in catalog.topics { try cluster.createTopic(topic.name, partitions: topic.partitions) }
        // Enough orders (a header and 4 lines each) to outlast the run at the ceiling.
        let documents = Int(ceiling * Double(seconds + window) * 1.2) / 5
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)))
        let topic = side == .crm ? "crm.orders.inbound" : "erp.orders.inbound"
        for document in 0..<documents {
            let number = "C\(String(format: "%07d", document))"
            let key = Array("USMF/\(number)".utf8)
            var events: [(String, JSONObject)] = []
            if side == .crm {
                events.append(
                    ("salesorder", ["msdyn_salesordernumber": .string(number), "name": .string("Order \(number)")]))
            } else {
                events.append(
                    (
                        "SalesOrderHeader",
                        ["SALESORDERNUMBER": .string(number), "SALESORDERNAME": .string("Order \(number)")]
                    ))
            }
            for line in 1...4 {
                if side == .crm {
                    events.append(
                        (
                            "salesorderdetail",
                            [
                                "salesorderid": .object(["msdyn_salesordernumber": .string(number)]),
                                "sequencenumber": .number(String(line)), "quantity": .number(String(line * 3)),
                                "description": .string("Line \(line) of \(number)"),
                            ]
                        ))
                } else {
                    events.append(
                        (
                            "SalesOrderLine",
                            [
                                "SALESORDERNUMBER": .string(number),
                                "LINECREATIONSEQUENCENUMBER": .number(String(line)),
                                "ORDEREDSALESQUANTITY": .number(String(line * 3)),
                                "LINEDESCRIPTION": .string("Line \(line) of \(number)"),
                            ]
                        ))
                }
            }
            for (table, data) in events {
                _ = try producer.send(
                    OutgoingRecord(
                        topic: topic, key: key, value: data.jsonBytes,
                        headers: [
                            KafkaHeader(CloudEvent.Header.type, "\(table).upserted"),
                            KafkaHeader(CloudEvent.Header.company, "USMF"),
                        ]))
            }
        }
        _ = try producer.flush(timeout: .seconds(60))
        print(
            "p2c bench --apply: \(documents * 5) order events (\(documents) documents) on \(topic); the \(side == .crm ? "Dataverse" : "F&O") simulator's per-user limits scaled to a \(window) s window (\(limits.requests) requests, \(Int(limits.execution.seconds)) s of execution), writes \(Int(Self.writeCost.seconds * 1000)) ms and reads \(Int(Self.readCost.seconds * 1000)) ms of execution each, \(identities) identity(ies): ceiling \(Int(ceiling)) writes/s"
        )
        let log = Log([("component", "apply-bench")], minimumLevel: .error)
        var configuration = ApplyConfiguration()
        configuration.kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: "apply-bench")
        configuration.groupID = "apply-bench"
        configuration.side = side
        configuration.streams = [.orders]
        configuration.sessionTimeout = .seconds(10)
        let system = Systems.adapter(for: side)
        var http = HTTPClient.Configuration()
        http.retriesThrottled = false
        let sinks = system.sinks(
            clients: clients.map { $0.client(of: baseURL, tenant: tenantID, api: system.api, log: log, http: http) })
        // One member writing through every identity.
        let applier = try Applier(configuration: configuration, catalog: catalog, sinks: sinks.sinks, log: log)
        Thread { try? applier.run() }.start()
        func applied() -> Int { applier.metrics.applied.value }
        // From the first write on: the first window, then the measured span.
        while applied() == 0 { Thread.sleep(forTimeInterval: 0.05) }
        let started = ContinuousClock.now
        Thread.sleep(forTimeInterval: Double(window))
        let (fromCount, from) = (applied(), ContinuousClock.now)
        var last = (fromCount, from)
        while ContinuousClock.now - from < .seconds(seconds) && applied() < documents * 5 {
            Thread.sleep(forTimeInterval: 1)
            last = (applied(), ContinuousClock.now)
            print(
                "  [\(format((last.1 - started).seconds, 0, 3)) s] written \(last.0), \(format(Double(last.0 - fromCount) / (last.1 - from).seconds, 0, 0)) writes/s since the first window, 429s \(throttled())"
            )
        }
        applier.stop()
        let rate = Double(last.0 - fromCount) / (last.1 - from).seconds
        print(
            "apply: \(format(rate, 0, 0)) writes/s over \(format((last.1 - from).seconds, 0, 0)) s after the first window = \(format(rate / ceiling, 2, 0)) of the \(Int(ceiling)) writes/s the limits allow (goal ≥ 0.9); 429s answered: \(throttled()); peak concurrent requests of a user: \(peakConcurrent())"
        )
        // Besides the writes: F&O's existence reads (it has no upsert), Dataverse's id reads.
        let requests = sinks.requests().map { "\($0.kind) \($0.value)" }.joined(separator: ", ")
        print("  requests besides the writes: \(requests), for \(applied()) writes")
        Thread.sleep(forTimeInterval: 1)
        return 0
    }

    private func format(_ value: Double, _ decimals: Int, _ width: Int) -> String {
        let text = String(format: "%.\(decimals)f", value)
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
