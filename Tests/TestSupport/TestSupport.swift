import Foundation
import Kafka
import Runtime
import Topology

/// The repository's `Topics/` folder.
public let topicsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Topics").path

/// An embedded broker with every topic of `Topics/`, and that catalog: one per suite, or per story
/// when a story must read only its own events.
public struct TestBroker: Sendable {
    public let cluster: EmbeddedCluster
    public let catalog: TopicCatalog

    /// Stops the tests at once if the broker cannot start: nothing else could run.
    public init(brokers: Int = 1) {
        do {
            cluster = try EmbeddedCluster(brokers: brokers)
            catalog = try TopicCatalog.load(directory: topicsDirectory)
            for topic in catalog.topics { try cluster.createTopic(topic.name, partitions: topic.partitions) }
        } catch {
            fatalError("embedded broker: \(error)")
        }
    }

    public var bootstrapServers: String { cluster.bootstrapServers }

    /// Every committed record of `topic` so far, partition by partition. It blocks its thread: call
    /// it from a thread of its own (`waitUntilOnThread`, `AsyncBridge.onThread`), never
    /// from a task that members under test need the shared pool for.
    public func read(_ topic: String) throws -> [KafkaRecord] {
        guard let declaration = catalog[topic] else { fatalError("Topics/ declares no \(topic)") }
        var configuration = ConsumerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: bootstrapServers), groupID: "reader-\(UUID())")
        configuration.reportPartitionEnd = true
        let reader = try KafkaConsumer(configuration: configuration)
        var records: [KafkaRecord] = []
        try reader.readToEnd(
            (0..<declaration.partitions).map { TopicPartitionOffset(topic, Int32($0), offset: KafkaOffset.beginning) }
        ) { records.append($0) }
        return records
    }

    /// Sends `records` and waits for their delivery.
    public func publish(_ records: [OutgoingRecord]) throws {
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: bootstrapServers)))
        for record in records { _ = try producer.send(record) }
        _ = try producer.flush(timeout: .seconds(30))
    }
}

/// Waits until `done` holds, checking it every `every`, for at most `limit`; the caller's
/// expectations say what should hold by then.
public func waitUntil(
    _ limit: Duration, every: Duration = .milliseconds(100), _ done: () throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + limit
    while try !done() && ContinuousClock.now < deadline { try await Task.sleep(for: every) }
}

/// Waits as `waitUntil`, running `done` (a Kafka read, which blocks) on a thread of its own, off
/// the shared pool the members under test need for their HTTP calls.
public func waitUntilOnThread(
    _ limit: Duration, every: Duration = .milliseconds(100), _ done: @escaping @Sendable () throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + limit
    while try await !AsyncBridge.onThread(done) && ContinuousClock.now < deadline {
        try await Task.sleep(for: every)
    }
}
