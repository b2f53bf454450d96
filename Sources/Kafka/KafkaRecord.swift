/// A record read from Kafka, copied out of librdkafka's memory.
public struct KafkaRecord: Sendable, Equatable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [KafkaHeader]
    /// Milliseconds since the epoch (CreateTime or LogAppendTime), or -1 when the record has none.
    public var timestamp: Int64

    public init(
        topic: String,
        partition: Int32,
        offset: Int64,
        key: [UInt8]?,
        value: [UInt8]?,
        headers: [KafkaHeader],
        timestamp: Int64
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    /// The first header named `name`.
    public func header(_ name: String) -> KafkaHeader? {
        headers.first { $0.name == name }
    }

    /// Where the next record after this one is: what to store or commit once this one is done.
    public var nextOffset: TopicPartitionOffset {
        TopicPartitionOffset(topic, partition, offset: offset + 1)
    }
}

/// A Kafka record header; its value may be null.
public struct KafkaHeader: Sendable, Equatable {
    public var name: String
    public var value: [UInt8]?

    public init(_ name: String, _ value: [UInt8]?) {
        self.name = name
        self.value = value
    }

    /// A header with a UTF-8 text value.
    public init(_ name: String, _ text: String) {
        self.name = name
        self.value = Array(text.utf8)
    }

    /// The value as UTF-8 text, or nil.
    public var text: String? { value.map { String(decoding: $0, as: UTF8.self) } }
}

/// A record to send: where it goes and what it carries.
public struct OutgoingRecord: Sendable, Equatable {
    public var topic: String
    /// An explicit partition; nil lets the murmur2 partitioner choose from the key.
    public var partition: Int32?
    public var key: [UInt8]?
    public var value: [UInt8]?
    public var headers: [KafkaHeader]
    /// Milliseconds since the epoch; nil means now.
    public var timestamp: Int64?

    public init(
        topic: String,
        partition: Int32? = nil,
        key: [UInt8]?,
        value: [UInt8]?,
        headers: [KafkaHeader] = [],
        timestamp: Int64? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }
}
