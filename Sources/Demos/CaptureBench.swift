import Capture
import Connectors
import Dataverse
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Simulators
import Topology

/// `p2c bench --capture`: from a change made in the simulated Dataverse to its event in Kafka, by
/// change tracking (polled every `pollInterval`) and by webhook.
public struct CaptureBench: Sendable {
    var changes: Int
    var rate: Int
    var pollInterval: Int
    var catalog: TopicCatalog

    public init(changes: Int, rate: Int, pollInterval: Int, catalog: TopicCatalog) {
        self.changes = changes
        self.rate = rate
        self.pollInterval = pollInterval
        self.catalog = catalog
    }

    public func execute() throws -> Int32 {
        print(
            "p2c bench --capture: \(changes) account changes at \(rate)/s in the simulated Dataverse after 10 to warm up, each mode on its own embedded broker; latency = the event's Kafka timestamp - the end of the change's request"
        )
        let poll = try run(webhook: false)
        print(
            "  change tracking, poll interval \(pollInterval) ms: p50 \(poll.p50) ms, p99 \(poll.p99) ms (goal: p99 ≤ poll interval + 1 s = \(pollInterval + 1_000) ms: \(poll.p99 <= pollInterval + 1_000 ? "met" : "MISSED"))"
        )
        let hook = try run(webhook: true)
        print(
            "  webhook: p50 \(hook.p50) ms, p99 \(hook.p99) ms (goal: p99 ≤ 50 ms: \(hook.p99 <= 50 ? "met" : "MISSED"))"
        )
        return 0
    }

    private func run(webhook: Bool) throws -> (p50: Int, p99: Int) {
        let person = DataverseSimulator.Client(id: UUID(), secret: "person")
        let reader = DataverseSimulator.Client(id: UUID(), secret: "capture")
        let port = LocalHTTP.freePort()
        let hooks =
            webhook
            ? [DataverseSimulator.Webhook(table: "account", url: URL(string: "http://127.0.0.1:\(port)/")!, key: "k")]
            : []
        let simulator = try DataverseSimulator(clients: [person, reader], webhooks: hooks)
        defer { simulator.stop() }
        let cluster = try EmbeddedCluster(brokers: 1)
        for topic in catalog.topics { try cluster.createTopic(topic.name, partitions: topic.partitions) }
        func client(_ user: DataverseSimulator.Client) -> ServiceClient {
            user.client(
                of: simulator.baseURL, tenant: simulator.tenantID, api: .dataverse, log: Log(minimumLevel: .error))
        }
        var configuration = CaptureConfiguration()
        configuration.kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: "capture-bench")
        configuration.company = "USMF"
        configuration.streams = [.customers]
        configuration.pollInterval = .milliseconds(pollInterval)
        configuration.sessionTimeout = .seconds(6)
        let log = Log([("component", "capture-bench")], minimumLevel: .error)
        var member: CaptureMember?
        var receiver: WebhookReceiver?
        if webhook {
            receiver = try WebhookReceiver(
                configuration: configuration, catalog: catalog,
                reader: DataverseContextReader(client: client(reader), streams: configuration.streams),
                applyUsers: [],
                key: "k",
                port: port, log: log)
        } else {
            let capture = try CaptureMember(
                configuration: configuration, adapter: DataverseAdapter(), catalog: catalog, client: client(reader),
                applyUsers: [], log: log)
            Thread { try? capture.run() }.start()
            member = capture
            // The first snapshot of every table, before the clock starts.
            while capture.metrics.snapshots.value < 2 { Thread.sleep(forTimeInterval: 0.1) }
            Thread.sleep(forTimeInterval: 1)
        }
        defer {
            member?.stop()
            receiver?.stop()
        }
        let seller = client(person)
        // Warm-up, not measured: the first reads of the table definitions, the producer's first
        // metadata.
        for number in 1...10 {
            _ = try AsyncBridge.wait {
                try await seller.send(
                    "PATCH", "accounts(accountnumber='WARM-\(number)')", body: ["customertypecode": .number("3")])
            }
        }
        Thread.sleep(forTimeInterval: Double(pollInterval) / 1000 + 1)
        var written: [String: Int64] = [:]
        let pause = 1.0 / Double(rate)
        for number in 1...changes {
            let account = "LAT-\(number)"
            let answer = try AsyncBridge.wait {
                try await seller.send(
                    "PATCH", "accounts(accountnumber='\(account)')", body: ["customertypecode": .number("3")])
            }
            guard answer.status == 204 else { throw UsageError("the simulator answered \(answer.status)") }
            written[account] = Int64(Date().timeIntervalSince1970 * 1000)
            Thread.sleep(forTimeInterval: pause)
        }
        var latencies: [Int64] = []
        let consumer = try KafkaConsumer(
            configuration: ConsumerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), groupID: "capture-bench-reader"))
        try consumer.subscribe(["crm.customers.changes"])
        let deadline = ContinuousClock.now + .seconds(Double(pollInterval) / 1000 * 3 + 30)
        while latencies.count < changes && ContinuousClock.now < deadline {
            guard case .record(let record)? = try consumer.poll(timeout: .milliseconds(100)) else { continue }
            let data = (try? JSONParser.parse(record.value ?? []))?.objectValue
            guard let account = data?["accountnumber"]?.stringValue, let at = written[account] else { continue }
            latencies.append(max(0, record.timestamp - at))
        }
        try? consumer.close()
        guard latencies.count == changes else {
            throw UsageError("only \(latencies.count) of \(changes) changes arrived")
        }
        latencies.sort()
        return (
            Int(latencies[latencies.count / 2]), Int(latencies[min(latencies.count - 1, latencies.count * 99 / 100)])
        )
    }
}
