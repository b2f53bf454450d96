import Apply
import Connectors
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Simulators
import Topology

/// `p2c bench --apply`: apply's write rate into the Dataverse simulator under its service protection
/// limits, as a ratio of the most those limits allow.
///
/// The documented per-user limits (DV-LIM: 6,000 requests and 1,200 s of combined execution time
/// per 5-minute sliding window) are scaled to a shorter window with the same rates, so that a run
/// passes through several windows in a minute; the execution-time model (each write runs 10 ms,
/// each read 2 ms) is stated, not documented. The ceiling is then the execution budget's rate
/// divided by a write's cost: 1,200 s / 300 s / 10 ms = 400 writes/s per identity. The rate is
/// measured after the first window (whose unspent budget allows a burst) to the end.
struct ApplyBench {
    var seconds: Int
    var window: Int
    var identities: Int
    var catalog: TopicCatalog

    static let writeCost = Duration.milliseconds(10)
    static let readCost = Duration.milliseconds(2)

    func execute() throws -> Int32 {
        var limits = DataverseSimulator.Limits()
        limits.window = .seconds(window)
        limits.requests = 6_000 * window / 300
        limits.execution = .seconds(1_200 * window / 300)
        limits.writeCost = Self.writeCost
        limits.readCost = Self.readCost
        let ceiling = limits.execution.seconds / limits.window.seconds / Self.writeCost.seconds * Double(identities)
        let clients = (0..<identities).map { _ in DataverseSimulator.Client(id: UUID(), secret: "bench") }
        let simulator = try DataverseSimulator(clients: clients, limits: limits)
        defer { simulator.stop() }
        let cluster = try EmbeddedCluster(brokers: 1)
        for topic in catalog.topics { try cluster.createTopic(topic.name, partitions: topic.partitions) }
        // Enough orders (a header and 4 lines each) to outlast the run at the ceiling.
        let documents = Int(ceiling * Double(seconds + window) * 1.2) / 5
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)))
        for document in 0..<documents {
            let number = "C\(String(format: "%07d", document))"
            let key = Array("USMF/\(number)".utf8)
            var events: [(String, JSONObject)] = [
                ("salesorder", ["msdyn_salesordernumber": .string(number), "name": .string("Order \(number)")])
            ]
            for line in 1...4 {
                events.append(
                    (
                        "salesorderdetail",
                        [
                            "salesorderid": .object(["msdyn_salesordernumber": .string(number)]),
                            "sequencenumber": .number(String(line)), "quantity": .number(String(line * 3)),
                            "description": .string("Line \(line) of \(number)"),
                        ]
                    ))
            }
            for (table, data) in events {
                _ = try producer.send(
                    OutgoingRecord(
                        topic: "crm.orders.inbound", key: key, value: data.jsonBytes,
                        headers: [KafkaHeader("ce_type", "\(table).upserted")]))
            }
        }
        _ = try producer.flush(timeout: .seconds(60))
        print(
            "p2c bench --apply: \(documents * 5) order events (\(documents) documents) on crm.orders.inbound; the simulator's per-user limits scaled to a \(window) s window (\(limits.requests) requests, \(Int(limits.execution.seconds)) s of execution), writes \(Int(Self.writeCost.seconds * 1000)) ms and reads \(Int(Self.readCost.seconds * 1000)) ms of execution each, \(identities) identity(ies): ceiling \(Int(ceiling)) writes/s"
        )
        let log = Log([("component", "apply-bench")], minimumLevel: .error)
        var configuration = ApplyConfiguration()
        configuration.kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: "apply-bench")
        configuration.groupID = "apply-bench"
        configuration.streams = [.orders]
        configuration.sessionTimeoutMilliseconds = 10_000
        var sinks: [any DocumentSink] = []
        var schema: DataverseSchema?
        for client in clients {
            var settings = ServiceClient.Settings(
                url: simulator.baseURL, tenantID: simulator.tenantID.uuidString.lowercased(),
                clientID: client.id.uuidString.lowercased(), clientSecret: client.secret)
            settings.authority = simulator.baseURL
            var http = HTTPClient.Configuration()
            http.retriesThrottled = false
            let dataverse = ServiceClient(settings: settings, http: HTTPClient(configuration: http, log: log))
            schema = schema ?? DataverseSchema(client: dataverse)
            sinks.append(DataverseSink(client: dataverse, schema: schema!))
        }
        // One member writing through every identity.
        let applier = try Applier(configuration: configuration, catalog: catalog, sinks: sinks, log: log)
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
                "  [\(format((last.1 - started).seconds, 0, 3)) s] written \(last.0), \(format(Double(last.0 - fromCount) / (last.1 - from).seconds, 0, 0)) writes/s since the first window, 429s \(simulator.throttledCount)"
            )
        }
        applier.stop()
        let rate = Double(last.0 - fromCount) / (last.1 - from).seconds
        print(
            "apply: \(format(rate, 0, 0)) writes/s over \(format((last.1 - from).seconds, 0, 0)) s after the first window = \(format(rate / ceiling, 2, 0)) of the \(Int(ceiling)) writes/s the limits allow (goal ≥ 0.9); 429s answered: \(simulator.throttledCount); peak concurrent requests of a user: \(simulator.peakConcurrent)"
        )
        Thread.sleep(forTimeInterval: 1)
        return 0
    }

    private func format(_ value: Double, _ decimals: Int, _ width: Int) -> String {
        let text = String(format: "%.\(decimals)f", value)
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
