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
    /// The transactional id; unique per live process. Zombie workers are fenced through the
    /// consumer group generation that each transaction's offsets carry (KIP-447), so the id need not
    /// survive a restart; two live workers sharing one fence each other in turn. The chart sets the
    /// pod name. Default: `p2c-<flow>-<host name>-<8 random hex digits>`, new for every worker.
    public var transactionalID: String?
    /// Static group membership (KIP-345): a member that comes back with the same instance id within
    /// the session timeout takes its partitions back without a rebalance, but a static member does
    /// not leave the group when it stops, so its partitions wait for the session timeout. Unique per
    /// live worker (the chart can set the pod name). Default: nil (dynamic membership).
    public var groupInstanceID: String?
    /// Exactly-once (one transaction per batch) or at-least-once (idempotent, offsets after delivery).
    /// Default: `exactly-once`.
    public var delivery: Delivery = .exactlyOnce
    /// A batch commits after this long. Default: 100 ms.
    public var commitInterval: Duration = .milliseconds(100)
    /// A batch commits after this many input records. Default: 1 000.
    public var commitMaxRecords: Int = 1_000
    /// Also commit the batch's offsets outside the transaction after it commits: needed on brokers
    /// that do not store transactional offsets (librdkafka 2.0.2's mock); harmless elsewhere. Default: false.
    public var commitOffsetsOutsideTransaction: Bool = false
    /// The broker aborts a transaction left open this long: what a killed worker's open transaction
    /// holds back `read_committed` readers of its output partitions, unless a worker with the same
    /// transactional id starts sooner. A batch's transaction lasts about `commitInterval`
    /// plus its commit. Default: 10 s (Kafka Streams' choice for exactly-once).
    public var transactionTimeout: Duration = .seconds(10)
    /// Session timeout of the consumer group member. Default: 45 s.
    public var sessionTimeout: Duration = .seconds(45)
    /// How long a stop (SIGTERM) may take from the request to the end of `run()`: the last commit,
    /// leaving the group and the final flush all end by then, and what cannot finish is given up
    /// (and logged). Keep it under the pod's termination grace period. Default: 8 s.
    public var shutdownTimeout: Duration = .seconds(8)
    /// The address the probes and metrics port listens on (an IPv4 address; 0.0.0.0: every
    /// interface). Default: 0.0.0.0.
    public var listenAddress = "0.0.0.0"
    /// Port of the HTTP responder for `/metrics`, `/healthz` and `/readyz`; 0 picks a free one. Default: 9464.
    public var metricsPort: Int = 9464
    /// `/healthz` fails when the loop has not turned for this long. Default: 120 s.
    public var watchdog: Duration = .seconds(120)
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

    /// The configured transactional id, or a new default one (a fresh random suffix each call).
    public func makeTransactionalID() -> String {
        if let transactionalID { return transactionalID }
        let suffix = String(UInt32.random(in: .min ... .max), radix: 16)
        return
            "p2c-\(flow.rawValue)-\(ProcessInfo.processInfo.hostName)-\(String(repeating: "0", count: 8 - suffix.count))\(suffix)"
    }
}
