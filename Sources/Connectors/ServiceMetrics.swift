import Runtime

/// What the connectors ask a system besides the writes, for `/metrics`: Dataverse's table
/// definitions, ids of the rows a line's key names, the rows a lookup names; F&O's `$metadata`
/// and existence reads; `$batch` requests of both.
public enum ServiceMetrics {
    /// `p2c_<system>_requests_total{kind=...}` (`dataverse`, `fno`) of the counters given.
    public static func exposition(system: String, labels: String, _ counts: [(kind: String, value: Int)]) -> String {
        Exposition.family(
            "p2c_\(system)_requests_total", type: "counter",
            help: "Requests to the system by kind, besides single writes.",
            samples: counts.map { ("\(labels),kind=\"\($0.kind)\"", Double($0.value)) }) + "\n"
    }
}
