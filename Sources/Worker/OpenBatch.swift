import Kafka

/// The input records read since the last commit: the next offset of each partition they came
/// from, how many, since when, and their source timestamps (for end-to-end latency).
struct OpenBatch {
    private var positions: [TopicPartition: Int64] = [:]
    private(set) var count = 0
    private var started = ContinuousClock.now
    private(set) var timestamps: [Int64] = []

    var isEmpty: Bool { count == 0 }

    /// Counts `record` in; the batch's clock starts with its first record.
    mutating func add(_ record: KafkaRecord) {
        if count == 0 { started = .now }
        positions[TopicPartition(record.topic, record.partition)] = record.offset + 1
        count += 1
        if record.timestamp > 0 { timestamps.append(record.timestamp) }
    }

    /// Whether the batch should commit: `maxRecords` read, or open for `interval`.
    func isDue(maxRecords: Int, interval: Duration) -> Bool {
        count >= maxRecords || (count > 0 && ContinuousClock.now - started >= interval)
    }

    /// The offsets to commit (the next record to read in each partition), in a stable order.
    var offsets: [TopicPartitionOffset] {
        positions.map { TopicPartitionOffset($0.key, offset: $0.value) }.sorted { $0.description < $1.description }
    }

    /// The batch's offsets and timestamps, leaving the batch empty.
    mutating func take() -> (offsets: [TopicPartitionOffset], timestamps: [Int64]) {
        defer { reset() }
        return (offsets, timestamps)
    }

    /// Forgets the batch (a commit took it, or an abort drops it).
    mutating func reset() {
        positions.removeAll(keepingCapacity: true)
        count = 0
        timestamps.removeAll(keepingCapacity: true)
    }
}
