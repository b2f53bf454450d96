import Foundation
import Kafka

/// One embedded cluster (three brokers) for the whole test process; tests use unique topics and groups.
enum TestCluster {
    static let shared: EmbeddedCluster = {
        do {
            return try EmbeddedCluster(brokers: 3)
        } catch {
            fatalError("embedded cluster: \(error)")
        }
    }()

    static var kafka: KafkaConfiguration {
        KafkaConfiguration(bootstrapServers: shared.bootstrapServers, clientID: "p2c-tests")
    }

    /// A new topic with a unique name.
    static func topic(_ prefix: String, partitions: Int) throws -> String {
        let name = unique(prefix)
        try shared.createTopic(name, partitions: partitions, replicationFactor: 3)
        return name
    }

    static func unique(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    /// A cluster of its own, for tests that inject errors (injected errors hit whichever request comes next).
    static func isolated(topics: [String: Int]) throws -> EmbeddedCluster {
        let cluster = try EmbeddedCluster(brokers: 1)
        for (topic, partitions) in topics { try cluster.createTopic(topic, partitions: partitions) }
        return cluster
    }

    static func producer(
        on cluster: EmbeddedCluster = shared,
        transactionalID: String? = nil,
        tune: (inout ProducerConfiguration) -> Void = { _ in }
    ) throws -> KafkaProducer {
        var configuration = ProducerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: "p2c-tests"),
            transactionalID: transactionalID)
        tune(&configuration)
        return try KafkaProducer(configuration: configuration)
    }

    static func consumer(
        group: String, readCommitted: Bool = true, reportPartitionEnd: Bool = false,
        tune: (inout ConsumerConfiguration) -> Void = { _ in }
    ) throws -> KafkaConsumer {
        var configuration = ConsumerConfiguration(kafka: kafka, groupID: group)
        configuration.readCommitted = readCommitted
        configuration.reportPartitionEnd = reportPartitionEnd
        // The embedded cluster notices a departed member only after session.timeout.ms - 1 s.
        configuration.sessionTimeoutMilliseconds = 6_000
        configuration.heartbeatIntervalMilliseconds = 1_000
        tune(&configuration)
        return try KafkaConsumer(configuration: configuration)
    }
}

extension KafkaConsumer {
    /// Polls until `count` records arrived or `limit` passed (a guard against hangs, not an assertion).
    func records(count: Int, limit: Duration = .seconds(30)) throws -> [KafkaRecord] {
        var result: [KafkaRecord] = []
        let deadline = ContinuousClock.now + limit
        while result.count < count, ContinuousClock.now < deadline {
            if case .record(let record) = try poll(timeout: .milliseconds(100)) { result.append(record) }
        }
        return result
    }

    /// Everything readable in `partitions` partitions: polls until each has reported its end (needs
    /// `reportPartitionEnd`), so the result does not depend on timing.
    func recordsToEnd(partitions: Int, limit: Duration = .seconds(60)) throws -> [KafkaRecord] {
        var result: [KafkaRecord] = []
        var ended: Set<Int32> = []
        let deadline = ContinuousClock.now + limit
        while ended.count < partitions, ContinuousClock.now < deadline {
            switch try poll(timeout: .milliseconds(100)) {
            case .record(let record)?:
                result.append(record)
                ended.remove(record.partition)
            case .partitionEnd(let position)?:
                ended.insert(position.partition)
            default:
                break
            }
        }
        return result
    }

    /// Polls for `duration`, returning whatever arrives: to show nothing more comes.
    func records(for duration: Duration) throws -> [KafkaRecord] {
        var result: [KafkaRecord] = []
        let deadline = ContinuousClock.now + duration
        while ContinuousClock.now < deadline {
            if case .record(let record) = try poll(timeout: .milliseconds(100)) { result.append(record) }
        }
        return result
    }
}

extension KafkaProducer {
    /// Sends every record and waits for all delivery reports.
    func sendAll(_ records: [OutgoingRecord]) throws -> [DeliveryReport] {
        var reports: [DeliveryReport] = []
        for record in records {
            try send(record)
            reports += poll()
        }
        return reports + (try flush(timeout: .seconds(30)))
    }
}

/// Java's murmur2 (Utils.murmur2), written independently to check where keys land.
func javaMurmur2(_ data: [UInt8]) -> UInt32 {
    let m: UInt32 = 0x5bd1_e995
    var h: UInt32 = 0x9747_b28c ^ UInt32(data.count)
    let tail = data.count & ~3
    var index = 0
    while index < tail {
        var k =
            UInt32(data[index]) | UInt32(data[index + 1]) << 8 | UInt32(data[index + 2]) << 16
            | UInt32(data[index + 3]) << 24
        k = k &* m
        k ^= k >> 24
        k = k &* m
        h = h &* m
        h ^= k
        index += 4
    }
    let rest = data.count & 3
    if rest >= 3 { h ^= UInt32(data[tail + 2]) << 16 }
    if rest >= 2 { h ^= UInt32(data[tail + 1]) << 8 }
    if rest >= 1 {
        h ^= UInt32(data[tail])
        h = h &* m
    }
    h ^= h >> 13
    h = h &* m
    h ^= h >> 15
    return h
}

/// The partition Java's default partitioner picks for `key`.
func javaPartition(_ key: String, partitions: Int) -> Int32 {
    Int32(Int(javaMurmur2(Array(key.utf8)) & 0x7fff_ffff) % partitions)
}
