import CRdKafka

/// A partition of a topic.
public struct TopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// A position in a partition: the offset of the next record to read.
public struct TopicPartitionOffset: Hashable, Sendable, CustomStringConvertible {
    public var topicPartition: TopicPartition
    /// A real offset, or one of the logical ones in `KafkaOffset`.
    public var offset: Int64

    public init(_ topic: String, _ partition: Int32, offset: Int64) {
        self.topicPartition = TopicPartition(topic, partition)
        self.offset = offset
    }

    public init(_ topicPartition: TopicPartition, offset: Int64) {
        self.topicPartition = topicPartition
        self.offset = offset
    }

    public var topic: String { topicPartition.topic }
    public var partition: Int32 { topicPartition.partition }
    public var description: String { "\(topicPartition)@\(offset)" }
}

/// librdkafka's logical offsets.
public enum KafkaOffset {
    public static let beginning = Int64(RD_KAFKA_OFFSET_BEGINNING)
    public static let end = Int64(RD_KAFKA_OFFSET_END)
    public static let stored = Int64(RD_KAFKA_OFFSET_STORED)
    /// No offset: nothing committed yet, or no position.
    public static let invalid = Int64(RD_KAFKA_OFFSET_INVALID)
}

/// Bridges Swift partition lists to `rd_kafka_topic_partition_list_t`.
enum PartitionList {
    /// Builds a C list from `offsets`, passes it to `body` and destroys it afterwards.
    static func with<T, E: Error>(
        _ offsets: [TopicPartitionOffset],
        _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) throws(E) -> T
    ) throws(E) -> T {
        let list = rd_kafka_topic_partition_list_new(Int32(offsets.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for entry in offsets {
            let element = rd_kafka_topic_partition_list_add(list, entry.topic, entry.partition)!
            element.pointee.offset = entry.offset
        }
        return try body(list)
    }

    /// Builds a C list of partitions (offsets left invalid).
    static func with<T, E: Error>(
        partitions: [TopicPartition],
        _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) throws(E) -> T
    ) throws(E) -> T {
        try with(partitions.map { TopicPartitionOffset($0, offset: KafkaOffset.invalid) }, body)
    }

    /// Copies a C list out; the list stays owned by the caller.
    static func copy(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> [TopicPartitionOffset] {
        let count = Int(list.pointee.cnt)
        guard count > 0, let elements = list.pointee.elems else { return [] }
        return (0..<count).map {
            let element = elements[$0]
            return TopicPartitionOffset(String(cString: element.topic), element.partition, offset: element.offset)
        }
    }

    /// The first per-partition error in a list a call filled in, if any.
    static func firstError(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> KafkaError? {
        let count = Int(list.pointee.cnt)
        guard count > 0, let elements = list.pointee.elems else { return nil }
        for index in 0..<count where elements[index].err != RD_KAFKA_RESP_ERR_NO_ERROR {
            let element = elements[index]
            return KafkaError(element.err, "\(String(cString: element.topic))[\(element.partition)]")
        }
        return nil
    }
}
