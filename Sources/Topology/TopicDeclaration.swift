/// One topic as `Topics/` declares it.
public struct TopicDeclaration: Sendable, Equatable {
    /// `<side>.<stream>.<role>`, or for p2c's own state `p2c.<purpose>`.
    public var name: String
    /// The side and stream of a stream's topic; nil for p2c's own state (`p2c.capture.state`).
    public var side: Side?
    public var stream: SyncStream?
    public var role: Role
    public var partitions: Int
    public var replicationFactor: Int
    /// How long records are kept, in milliseconds; -1 keeps them forever.
    public var retentionMs: Int64
    /// `delete`, `compact` or `compact,delete`.
    public var cleanupPolicy: String
    /// How record keys are built, e.g. `<company>/<sales order number>`.
    public var keyScheme: String

    public init(
        name: String,
        side: Side?,
        stream: SyncStream?,
        role: Role,
        partitions: Int,
        replicationFactor: Int,
        retentionMs: Int64,
        cleanupPolicy: String,
        keyScheme: String
    ) {
        self.name = name
        self.side = side
        self.stream = stream
        self.role = role
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.retentionMs = retentionMs
        self.cleanupPolicy = cleanupPolicy
        self.keyScheme = keyScheme
    }

    /// Broker-side topic configuration, as `kafka-topics --config` and Strimzi's KafkaTopic take it.
    public var config: [String: String] {
        ["retention.ms": String(retentionMs), "cleanup.policy": cleanupPolicy]
    }
}

/// One flow's topics for one stream: where it reads, writes, and dead-letters.
public struct Route: Sendable, Equatable {
    public var flow: Flow
    public var stream: SyncStream
    public var input: TopicDeclaration
    public var output: TopicDeclaration
    public var deadLetters: TopicDeclaration
}
