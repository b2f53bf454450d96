import CRdKafka

/// librdkafka's mock cluster: a real Kafka wire-protocol server on loopback, for the demo and tests.
///
/// Limits of librdkafka 2.0.2's mock: no CreateTopics (create topics here), each partition keeps
/// at most 5 MiB and 100 000 batches, no offset lookup by timestamp, and a new group waits about
/// 3 s for its first assignment.
public final class EmbeddedCluster: Sendable {
    /// The client the mock cluster lives in; it must outlive the cluster.
    private let handle: KafkaHandle
    /// The `rd_kafka_mock_cluster_t`, destroyed in deinit before the handle.
    nonisolated(unsafe) private let cluster: OpaquePointer
    /// `bootstrap.servers` for any Kafka client, in this process or another.
    public let bootstrapServers: String
    /// Number of brokers.
    public let brokerCount: Int

    /// Starts a cluster of `brokers` brokers (1 to 3) on loopback, each on a free port.
    public init(brokers: Int = 1) throws(KafkaError) {
        guard (1...3).contains(brokers) else {
            throw KafkaError(code: .invalidConfiguration, message: "brokers: expected 1 to 3, got \(brokers)")
        }
        // A quiet producer handle only hosts the cluster's threads; it never connects anywhere.
        let conf = try makeConf([("log_level", "3")])
        handle = try KafkaHandle(type: RD_KAFKA_PRODUCER, conf: conf, context: ClientContext())
        guard let cluster = rd_kafka_mock_cluster_new(handle.pointer, Int32(brokers)) else {
            throw KafkaError(code: .invalidConfiguration, message: "the embedded cluster could not start")
        }
        self.cluster = cluster
        self.brokerCount = brokers
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
    }

    /// Creates `topic` with `partitions` partitions; the replication factor is capped at the broker count.
    public func createTopic(_ topic: String, partitions: Int, replicationFactor: Int = 3) throws(KafkaError) {
        let replicas = Int32(min(max(replicationFactor, 1), brokerCount))
        try KafkaError.check(
            rd_kafka_mock_topic_create(cluster, topic, Int32(partitions), replicas),
            "create topic \(topic)"
        )
    }

    /// Takes broker `id` (1-based) down: its connections close and it refuses new ones.
    public func setBrokerDown(_ id: Int32) throws(KafkaError) {
        try KafkaError.check(rd_kafka_mock_broker_set_down(cluster, id), "broker \(id) down")
    }

    /// Brings broker `id` back up.
    public func setBrokerUp(_ id: Int32) throws(KafkaError) {
        try KafkaError.check(rd_kafka_mock_broker_set_up(cluster, id), "broker \(id) up")
    }

    /// Adds `milliseconds` of round-trip time to every request broker `id` answers.
    public func setRoundTripTime(broker id: Int32, milliseconds: Int) throws(KafkaError) {
        try KafkaError.check(rd_kafka_mock_broker_set_rtt(cluster, id, Int32(milliseconds)), "broker \(id) rtt")
    }

    /// Makes the next requests of `api` fail with `errors`, one error per request, in order.
    /// `.transport` closes the connection instead of answering.
    public func failNextRequests(_ api: KafkaAPI, with errors: [KafkaError.Code]) {
        let codes = errors.map(\.err)
        codes.withUnsafeBufferPointer {
            rd_kafka_mock_push_request_errors_array(cluster, api.rawValue, $0.count, $0.baseAddress)
        }
    }

    /// Forgets errors queued by `failNextRequests` for `api`.
    public func clearRequestErrors(_ api: KafkaAPI) {
        rd_kafka_mock_clear_request_errors(cluster, api.rawValue)
    }
}

/// Kafka protocol request types, for injecting errors into the embedded cluster.
public struct KafkaAPI: Hashable, Sendable {
    public var rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    public static let produce = KafkaAPI(rawValue: 0)
    public static let fetch = KafkaAPI(rawValue: 1)
    public static let listOffsets = KafkaAPI(rawValue: 2)
    public static let metadata = KafkaAPI(rawValue: 3)
    public static let offsetCommit = KafkaAPI(rawValue: 8)
    public static let offsetFetch = KafkaAPI(rawValue: 9)
    public static let findCoordinator = KafkaAPI(rawValue: 10)
    public static let joinGroup = KafkaAPI(rawValue: 11)
    public static let heartbeat = KafkaAPI(rawValue: 12)
    public static let syncGroup = KafkaAPI(rawValue: 14)
    public static let initProducerID = KafkaAPI(rawValue: 22)
    public static let addPartitionsToTransaction = KafkaAPI(rawValue: 24)
    public static let addOffsetsToTransaction = KafkaAPI(rawValue: 25)
    public static let endTransaction = KafkaAPI(rawValue: 26)
    public static let transactionOffsetCommit = KafkaAPI(rawValue: 28)
}
