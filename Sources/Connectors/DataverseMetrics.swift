import Runtime

/// What the connectors ask Dataverse besides the writes, for `/metrics`: table definitions, ids
/// of the rows a line's key names, the rows a lookup names, and `$batch` requests.
public enum DataverseMetrics {
    /// `p2c_dataverse_requests_total{kind=...}` of the counters given.
    public static func exposition(labels: String, _ counts: [(kind: String, value: Int)]) -> String {
        Exposition.family(
            "p2c_dataverse_requests_total", type: "counter",
            help: "Requests to Dataverse by kind: table definitions, id reads, lookup reads, $batch writes.",
            samples: counts.map { ("\(labels),kind=\"\($0.kind)\"", Double($0.value)) }) + "\n"
    }
}
