import Kafka
import Topology

/// Everything one apply member needs besides the system's credentials.
public struct ApplyConfiguration: Sendable {
    /// The system written to: `crm` (Dataverse) or `erp` (F&O). Default: `crm`.
    public var side: Side = .crm
    /// The streams applied; empty means every stream that arrives for the side. Default: empty.
    public var streams: [SyncStream] = []
    public var kafka = KafkaConfiguration()
    /// The consumer group. Default: `p2c-apply-<side>`.
    public var groupID: String?
    /// Offsets of written records are committed this often. Default: 1 s.
    public var commitInterval: Duration = .seconds(1)
    /// Session timeout of the consumer group member. Default: 45 s.
    public var sessionTimeout: Duration = .seconds(45)
    /// From SIGTERM to the end of `run()`: writes in flight finish or are given up (their records
    /// are redone by the partitions' next owner, as idempotent upserts). Default: 8 s.
    public var shutdownTimeout: Duration = .seconds(8)
    /// `$batch` requests in flight at most; shrinks on 429 and grows back (AIMD). Default: 8.
    public var maxConcurrency: Int = 8
    /// Documents (the events of one key) per `$batch`. Default: 20; `p2c apply` starts from the
    /// system's own (`SystemAdapter.batchDocuments`: 20 on Dataverse, 10 on F&O).
    public var batchDocuments: Int = 20
    /// Events of one document per round. Default: 50.
    public var documentEvents: Int = 50
    /// A write whose reference does not exist yet (a line before its header) is retried this long
    /// before it is dead-lettered. Default: 10 minutes.
    public var referenceWait: Duration = .seconds(600)
    /// A write the service keeps failing (5xx, no answer) while other writes go through is
    /// retried this long before it is dead-lettered with the last answer; while no write goes
    /// through (the service is down) every write waits. Default: 10 minutes.
    public var unavailableWait: Duration = .seconds(600)
    /// How long a dead letter may wait for room in the producer's queue before the member stops
    /// with an error (its record is not committed: the partition's next owner takes it again).
    /// Default: 30 s.
    public var deadLetterTimeout: Duration = .seconds(30)
    /// Records read and not yet written at most; reading pauses beyond. Default: 10 000.
    public var maxQueuedRecords: Int = 10_000

    public init() {}

    public var resolvedGroupID: String { groupID ?? "p2c-apply-\(side.rawValue)" }
}
