import Foundation
import Kafka
import ProspectToCash
import Topology

/// Everything one worker needs; every property has a default, a JSON key and an environment override.
public struct WorkerConfiguration: Sendable {
    /// Which way this worker syncs. Default: `crm-to-erp`.
    public var flow: Flow = .crmToERP
    /// The streams it consumes; empty means every stream that flows this way. Default: empty.
    public var streams: [SyncStream] = []
    /// Brokers, client id and pass-through `kafka.<property>` settings. Default: `localhost:9092`.
    public var kafka = KafkaConfiguration()
    /// The flow's consumer group. Default: `p2c-<flow>`.
    public var groupID: String?
    /// The transactional id, stable and unique per process (a pod name). Default: `p2c-<flow>-<host name>`.
    public var transactionalID: String?
    /// Exactly-once (one transaction per batch) or at-least-once (idempotent, offsets after delivery).
    /// Default: `exactly-once`.
    public var delivery: Delivery = .exactlyOnce
    /// A batch commits after this long. Default: 100 ms.
    public var commitIntervalMilliseconds: Int = 100
    /// A batch commits after this many input records. Default: 1 000.
    public var commitMaxRecords: Int = 1_000
    /// Also commit the batch's offsets outside the transaction after it commits: needed on brokers
    /// that do not store transactional offsets (librdkafka 2.0.2's mock); harmless elsewhere. Default: false.
    public var commitOffsetsOutsideTransaction: Bool = false
    /// Session timeout of the consumer group member. Default: 45 000 ms.
    public var sessionTimeoutMilliseconds: Int = 45_000
    /// Port of the HTTP responder for `/metrics`, `/healthz` and `/readyz`; 0 picks a free one. Default: 9464.
    public var metricsPort: Int = 9464
    /// `/healthz` fails when the loop has not turned for this long. Default: 120 s.
    public var watchdogSeconds: Int = 120
    /// The benchmark's baseline: copy each record to the flow's output topic as it is (same key,
    /// value and headers), with no decode, map or encode. Not for production. Default: false.
    public var passThrough: Bool = false
    /// Mapping rules and overrides. Default: `MappingConfiguration()`.
    public var mapping = MappingConfiguration()

    public enum Delivery: String, Sendable, CaseIterable {
        case exactlyOnce = "exactly-once"
        case atLeastOnce = "at-least-once"
    }

    public init() {}

    public var resolvedGroupID: String { groupID ?? "p2c-\(flow.rawValue)" }

    public var resolvedTransactionalID: String {
        transactionalID ?? "p2c-\(flow.rawValue)-\(ProcessInfo.processInfo.hostName)"
    }
}
