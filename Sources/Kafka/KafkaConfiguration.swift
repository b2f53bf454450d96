import CRdKafka
import Foundation

/// Connection settings shared by producers and consumers; the one place librdkafka property names live.
public struct KafkaConfiguration: Sendable, Equatable {
    /// Comma-separated `host:port` list of brokers to bootstrap from. Default: `localhost:9092`.
    public var bootstrapServers: String = "localhost:9092"
    /// The `client.id` sent to brokers, shown in their logs and quotas. Default: `p2c`.
    public var clientID: String = "p2c"
    /// Any librdkafka property, passed through untouched (SASL, SSL, timeouts...); it wins over
    /// everything this type sets. Default: empty.
    public var properties: [String: String] = [:]

    public init(
        bootstrapServers: String = "localhost:9092", clientID: String = "p2c", properties: [String: String] = [:]
    ) {
        self.bootstrapServers = bootstrapServers
        self.clientID = clientID
        self.properties = properties
    }

    enum ClientRole { case producer, consumer }

    /// The pass-through properties a producer or a consumer takes: one worker configuration
    /// serves both clients, and librdkafka warns about a property of the other role.
    func properties(for role: ClientRole) -> [(String, String)] {
        let foreign = role == .producer ? Self.consumerOnly : Self.producerOnly
        return properties.filter { property in !foreign.contains { property.key.hasPrefix($0) } }
            .sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Prefixes of librdkafka's consumer-only properties (CONFIGURATION.md, column C).
    static let consumerOnly = [
        "fetch.", "group.", "session.timeout.ms", "heartbeat.interval.ms", "auto.offset.reset", "auto.commit",
        "enable.auto.", "isolation.level", "max.poll.interval.ms", "queued.", "max.partition.fetch.bytes",
        "partition.assignment.strategy", "check.crcs", "enable.partition.eof", "consume.callback.max.messages",
        "coordinator.query.interval.ms", "allow.auto.create.topics", "offset.store.",
    ]
    /// Prefixes of librdkafka's producer-only properties (CONFIGURATION.md, column P).
    static let producerOnly = [
        "linger.ms", "queue.buffering.", "batch.", "acks", "request.required.acks", "compression.",
        "message.timeout.ms", "delivery.timeout.ms", "enable.idempotence", "enable.gapless.guarantee",
        "transaction", "retries", "message.send.max.retries", "partitioner", "sticky.partitioning.linger.ms",
        "request.timeout.ms", "queuing.strategy", "delivery.report.only.error", "retry.backoff.max.ms",
    ]

    /// Checks `bootstrapServers` syntax, so a typo fails at once instead of as endless reconnects.
    public func validate() throws(KafkaError) {
        let entries = bootstrapServers.split(separator: ",", omittingEmptySubsequences: false)
        for entry in entries {
            let trimmed = entry.trimmingSpaces
            // Accept an optional scheme prefix such as PLAINTEXT:// or SSL:// as librdkafka does.
            let address = trimmed.range(of: "://").map { String(trimmed[$0.upperBound...]) } ?? trimmed
            guard let colon = address.lastIndex(of: ":"), colon != address.startIndex,
                let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port)
            else {
                throw KafkaError(
                    code: .invalidConfiguration,
                    message: "bootstrap.servers: \"\(trimmed)\" is not host:port (e.g. localhost:9092)"
                )
            }
        }
    }
}

/// A producer: idempotent, Java-compatible key partitioning, optionally transactional.
public struct ProducerConfiguration: Sendable, Equatable {
    /// Brokers and pass-through properties. Default: `KafkaConfiguration()`.
    public var kafka = KafkaConfiguration()
    /// Enables transactions when set; must be stable and unique per process. Default: nil.
    public var transactionalID: String? = nil
    /// How long to wait for more records before sending a batch. Default: 5 ms.
    public var lingerMilliseconds: Int = 5
    /// How long a record may wait for delivery before it fails (capped at the transaction timeout
    /// for a transactional producer). Default: 300 000 ms.
    public var messageTimeoutMilliseconds: Int = 300_000
    /// Transaction timeout, the broker aborts a transaction left open longer. Default: 60 000 ms.
    public var transactionTimeoutMilliseconds: Int = 60_000
    /// Records allowed in the local queue before `send` waits for deliveries. Default: 100 000.
    public var maxQueuedMessages: Int = 100_000
    /// Kilobytes allowed in the local queue before `send` waits for deliveries. Default: 65 536.
    public var maxQueuedKilobytes: Int = 65_536

    public init(kafka: KafkaConfiguration = KafkaConfiguration(), transactionalID: String? = nil) {
        self.kafka = kafka
        self.transactionalID = transactionalID
    }

    /// The librdkafka properties, in the order they are applied.
    var properties: [(String, String)] {
        var result: [(String, String)] = [
            ("bootstrap.servers", kafka.bootstrapServers),
            ("client.id", kafka.clientID),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            // Java's default partitioner: keys land on the partitions Java, Streams and Connect choose.
            ("partitioner", "murmur2_random"),
            ("linger.ms", String(lingerMilliseconds)),
            // librdkafka requires message.timeout.ms <= transaction.timeout.ms for a transactional producer.
            (
                "message.timeout.ms",
                String(
                    transactionalID == nil
                        ? messageTimeoutMilliseconds : min(messageTimeoutMilliseconds, transactionTimeoutMilliseconds))
            ),
            ("queue.buffering.max.messages", String(maxQueuedMessages)),
            ("queue.buffering.max.kbytes", String(maxQueuedKilobytes)),
        ]
        if let transactionalID {
            result.append(("transactional.id", transactionalID))
            result.append(("transaction.timeout.ms", String(transactionTimeoutMilliseconds)))
        }
        return result + kafka.properties(for: .producer)
    }
}

/// A group consumer: cooperative-sticky, offsets stored and committed by the application.
public struct ConsumerConfiguration: Sendable, Equatable {
    /// Brokers and pass-through properties. Default: `KafkaConfiguration()`.
    public var kafka = KafkaConfiguration()
    /// The consumer group. Default: `p2c`.
    public var groupID: String = "p2c"
    /// Where a partition without a committed offset starts. Default: `.earliest`.
    public var autoOffsetReset: OffsetReset = .earliest
    /// Reads only committed transactional records when true. Default: true.
    public var readCommitted: Bool = true
    /// Commits stored offsets in the background (at-least-once mode); off for transactions. Default: false.
    public var enableAutoCommit: Bool = false
    /// Reports `ConsumerEvent.partitionEnd` when a partition is caught up. Default: false.
    public var reportPartitionEnd: Bool = false
    /// Static membership: this member's `group.instance.id`, unique per live member. Default: nil.
    public var groupInstanceID: String? = nil
    /// A member that misses heartbeats this long leaves the group. Default: 45 000 ms.
    public var sessionTimeoutMilliseconds: Int = 45_000
    /// How often the member tells the coordinator it is alive; below the session timeout. Default: 3 000 ms.
    public var heartbeatIntervalMilliseconds: Int = 3_000
    /// How often librdkafka reports statistics (lag, queues); 0 turns them off. Default: 0.
    public var statisticsIntervalMilliseconds: Int = 0
    /// Prefetched data kept per consumer, in kilobytes. `poll` wakes the fetchers as soon as a full
    /// queue runs low, so a small one costs no throughput. Default: 4 096.
    public var maxPrefetchKilobytes: Int = 4_096

    public init(kafka: KafkaConfiguration = KafkaConfiguration(), groupID: String = "p2c") {
        self.kafka = kafka
        self.groupID = groupID
    }

    /// A fleet member's: `sessionTimeoutMilliseconds`, and heartbeats every third of it (at most
    /// every 3 s), so that a member is evicted only after missing several.
    public init(kafka: KafkaConfiguration, groupID: String, sessionTimeoutMilliseconds: Int) {
        self.init(kafka: kafka, groupID: groupID)
        self.sessionTimeoutMilliseconds = sessionTimeoutMilliseconds
        heartbeatIntervalMilliseconds = min(3_000, sessionTimeoutMilliseconds / 3)
    }

    /// Where to start reading a partition that has no committed offset.
    public enum OffsetReset: String, Sendable, Equatable {
        case earliest, latest, error
    }

    var properties: [(String, String)] {
        [
            ("bootstrap.servers", kafka.bootstrapServers),
            ("client.id", kafka.clientID),
            ("group.id", groupID),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("auto.offset.reset", autoOffsetReset.rawValue),
            ("isolation.level", readCommitted ? "read_committed" : "read_uncommitted"),
            ("enable.auto.commit", enableAutoCommit ? "true" : "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", reportPartitionEnd ? "true" : "false"),
            ("session.timeout.ms", String(sessionTimeoutMilliseconds)),
            ("heartbeat.interval.ms", String(heartbeatIntervalMilliseconds)),
            ("statistics.interval.ms", String(statisticsIntervalMilliseconds)),
            ("queued.max.messages.kbytes", String(maxPrefetchKilobytes)),
        ] + (groupInstanceID.map { [("group.instance.id", $0)] } ?? []) + kafka.properties(for: .consumer)
    }
}

extension ProducerConfiguration {
    /// Checks every property's name and value without creating a client.
    public func validate() throws(KafkaError) { rd_kafka_conf_destroy(try makeConf(properties)) }
}

extension ConsumerConfiguration {
    /// Checks every property's name and value without creating a client.
    public func validate() throws(KafkaError) { rd_kafka_conf_destroy(try makeConf(properties)) }
}

/// Builds a `rd_kafka_conf_t`; the caller owns it until `rd_kafka_new` succeeds.
func makeConf(_ properties: [(String, String)]) throws(KafkaError) -> OpaquePointer {
    let conf = rd_kafka_conf_new()!
    for (name, value) in properties {
        let (result, text) = withErrorBuffer { rd_kafka_conf_set(conf, name, value, $0, $1) }
        guard result == RD_KAFKA_CONF_OK else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(code: .invalidConfiguration, message: "kafka.\(name): \(text)")
        }
    }
    return conf
}

extension StringProtocol {
    var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
