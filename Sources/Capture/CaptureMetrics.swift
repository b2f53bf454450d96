import Foundation
import Runtime
import Synchronization

/// What a capture member counts, for `/metrics` and its last log line.
public final class CaptureMetrics: Sendable {
    public let published = Counter()
    /// Changes made by an apply identity, published with `ce_origin: p2c`.
    public let echoes = Counter()
    public let pages = Counter()
    /// Snapshots started: a table's first read, or after a refused delta link.
    public let snapshots = Counter()
    /// Delta links the service refused (expired): each followed by a snapshot.
    public let refusedLinks = Counter()
    /// Rows without a number (no key), and deletes of rows never seen.
    public let unkeyed = Counter()
    /// Data events whose record was deleted before they were taken (the delete's event publishes it).
    public let superseded = Counter()
    /// Records read again after `recheckAfter`, and those published again for it.
    public let rechecked = Counter()
    public let republished = Counter()
    public let failures = Counter()
    /// Webhook posts refused for their key, and posts for tables not captured.
    public let refusedPosts = Counter()
    public let ignoredPosts = Counter()
    public let rebalances = Counter()
    public let ownedTables = Atomic<Int>(0)
    /// The loop's last turn and the group membership, for `/healthz` and `/readyz`.
    public let liveness = Liveness()

    var logFields: [(String, LogValue)] {
        [
            ("published", .int(Int64(published.value))), ("echoes", .int(Int64(echoes.value))),
            ("pages", .int(Int64(pages.value))), ("snapshots", .int(Int64(snapshots.value))),
            ("failures", .int(Int64(failures.value))),
        ]
    }

    /// Prometheus text of the capture counters.
    public func exposition(labels: String) -> String {
        var families: [String] = [
            ("p2c_capture_published_total", "Change events published.", published),
            ("p2c_capture_echoes_total", "Changes by an apply identity, published with ce_origin p2c.", echoes),
            ("p2c_capture_pages_total", "Pages of changes read and committed.", pages),
            ("p2c_capture_snapshots_total", "Snapshots started (first read, or a refused delta link).", snapshots),
            (
                "p2c_capture_refused_links_total", "Delta links refused (expired), each followed by a snapshot.",
                refusedLinks
            ),
            ("p2c_capture_unkeyed_total", "Rows without a number, and deletes of rows never seen.", unkeyed),
            (
                "p2c_capture_superseded_total", "Data events whose record was deleted before they were taken.",
                superseded
            ),
            ("p2c_capture_rechecked_total", "Published records read again after the recheck delay.", rechecked),
            (
                "p2c_capture_republished_total", "Records published again: their state changed since a recheck.",
                republished
            ),
            ("p2c_capture_failures_total", "Reads or deliveries that failed (retried, or answered 503).", failures),
            ("p2c_capture_refused_posts_total", "Webhook posts refused for their key.", refusedPosts),
            ("p2c_capture_ignored_posts_total", "Webhook posts for tables not captured.", ignoredPosts),
            ("p2c_capture_rebalances_total", "Capture group rebalances.", rebalances),
        ].map { name, help, counter in
            Exposition.family(name, type: "counter", help: help, samples: [(labels, Double(counter.value))])
        }
        families.append(
            Exposition.family(
                "p2c_capture_tables", type: "gauge", help: "Tables this member polls.",
                samples: [(labels, Double(ownedTables.load(ordering: .relaxed)))]))
        return families.joined(separator: "\n") + "\n"
    }
}
