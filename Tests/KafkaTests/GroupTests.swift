import Foundation
import Kafka
import Synchronization
import Testing

/// Clusters whose broker was made slow on purpose: a consumer given up on in a test is never
/// destroyed, so its cluster stays up until the test process ends.
private let slowClusters = Mutex<[EmbeddedCluster]>([])

/// How many times a consumer's partitions were revoked.
private final class Revokes: Sendable {
    private let count = Atomic<Int>(0)
    func add() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

@Suite("Consumer group membership: bounded commits and close, describing a group", .serialized, .timeLimit(.minutes(2)))
struct GroupTests {
    /// A consumer of a new one-broker cluster that holds all of `topic`'s partitions.
    private func member(of topic: String, on cluster: EmbeddedCluster, revoked: Revokes) throws -> KafkaConsumer {
        var configuration = ConsumerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), groupID: "bounded-\(topic)")
        configuration.sessionTimeoutMilliseconds = 6_000
        configuration.heartbeatIntervalMilliseconds = 1_000
        let consumer = try KafkaConsumer(configuration: configuration)
        consumer.onRebalance { event in
            if case .revoked = event { revoked.add() }
        }
        try consumer.subscribe([topic])
        let deadline = ContinuousClock.now + .seconds(30)
        while try consumer.assignment().isEmpty && ContinuousClock.now < deadline {
            _ = try consumer.poll(timeout: .milliseconds(100))
        }
        return consumer
    }

    @Test("A commit with a timeout is stored; close with a timeout serves the revoke handler and leaves the group")
    func boundedCommitAndClose() throws {
        let topic = TestCluster.unique("bounded")
        let cluster = try TestCluster.isolated(topics: [topic: 2])
        let revoked = Revokes()
        let consumer = try member(of: topic, on: cluster, revoked: revoked)
        try #require(try consumer.assignment().count == 2)
        let offsets = [TopicPartitionOffset(topic, 0, offset: 0), TopicPartitionOffset(topic, 1, offset: 0)]
        try consumer.commit(offsets, timeout: .seconds(10))
        #expect(try consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)]).map(\.offset) == [0, 0])
        #expect(try consumer.close(timeout: .seconds(10)))
        #expect(revoked.value == 1)
    }

    @Test("Against a coordinator that answers after 5 s, a commit and a close give up at their timeouts instead")
    func slowCoordinator() throws {
        let topic = TestCluster.unique("slow")
        let cluster = try TestCluster.isolated(topics: [topic: 1])
        slowClusters.withLock { $0.append(cluster) }
        let revoked = Revokes()
        let consumer = try member(of: topic, on: cluster, revoked: revoked)
        try #require(try consumer.assignment().count == 1)
        try cluster.setRoundTripTime(broker: 1, milliseconds: 5_000)
        let error = #expect(throws: KafkaError.self) {
            try consumer.commit([TopicPartitionOffset(topic, 0, offset: 0)], timeout: .milliseconds(300))
        }
        #expect(error?.code == .timedOut)
        #expect(error?.isRetriable == true)
        // Leaving needs the coordinator: the close is given up, not waited for.
        #expect(try consumer.close(timeout: .milliseconds(300)) == false)
    }

    @Test("DescribeGroups is not offered by the embedded broker (librdkafka 2.0.2's mock): the call says so")
    func describeUnsupported() throws {
        let admin = try KafkaAdmin(configuration: TestCluster.kafka)
        let error = #expect(throws: KafkaError.self) { try admin.describeGroup("no-such-group", timeout: .seconds(5)) }
        #expect(error?.code == .unsupportedFeature)
    }
}
