import Foundation
import Runtime
import Synchronization
import Topology

/// What an apply member counts, for `/metrics` and its last log line.
public final class ApplyMetrics: Sendable {
    public let side: Side
    public let consumed = Counter()
    public let applied = Counter()
    public let deadLettered = Counter()
    /// Rounds answered 429, 5xx or not at all, and records waiting for a reference.
    public let throttled = Counter()
    public let retried = Counter()
    public let waiting = Counter()
    public let commits = Counter()
    public let rebalances = Counter()
    /// `$batch` requests allowed in flight now (AIMD).
    public let concurrency = Atomic<Int>(0)
    /// The loop's last turn and the group membership, for `/healthz` and `/readyz`.
    public let liveness = Liveness()

    init(side: Side) { self.side = side }

    var logFields: [(String, LogValue)] {
        [
            ("consumed", .int(Int64(consumed.value))), ("applied", .int(Int64(applied.value))),
            ("dead_lettered", .int(Int64(deadLettered.value))), ("throttled", .int(Int64(throttled.value))),
            ("retried", .int(Int64(retried.value))),
        ]
    }

    /// Prometheus text for the apply counters (the HTTP client adds its own).
    public var exposition: String {
        let labels = "side=\"\(side.rawValue)\""
        var families: [String] = [
            ("p2c_apply_consumed_total", "Inbound records read.", consumed),
            ("p2c_apply_written_total", "Records written into the system.", applied),
            ("p2c_apply_dead_lettered_total", "Records the system refused, sent to the inbound DLQ.", deadLettered),
            ("p2c_apply_throttled_total", "Writes answered 429.", throttled),
            ("p2c_apply_retried_total", "Writes answered 5xx or not at all, sent again.", retried),
            ("p2c_apply_reference_waits_total", "Writes whose reference did not exist yet.", waiting),
            ("p2c_apply_commits_total", "Offset commits.", commits),
            ("p2c_apply_rebalances_total", "Consumer group rebalances.", rebalances),
        ].map { name, help, counter in
            Exposition.family(name, type: "counter", help: help, samples: [(labels, Double(counter.value))])
        }
        families.append(
            Exposition.family(
                "p2c_apply_concurrency", type: "gauge", help: "Batch requests allowed in flight (AIMD).",
                samples: [(labels, Double(concurrency.load(ordering: .relaxed)))]))
        return families.joined(separator: "\n") + "\n"
    }
}
