import Foundation
import Kafka
import ProspectToCash
import Runtime
import Synchronization
import Topology

/// What a worker has done and how it is doing: counters per stream, latency histograms, health.
public final class WorkerMetrics: Sendable {
    public let flow: Flow
    /// Per-stream counters, created once for every stream.
    public let streams: [SyncStream: StreamCounters]
    public let commits = Counter()
    public let aborts = Counter()
    /// Exactly-once: records read and mapped while the batch before them was committing.
    public let readWhileCommitting = Counter()
    public let rebalances = Counter()
    /// Decode, map and send of one record.
    public let processing = Histogram(
        name: "p2c_processing_seconds", help: "Time to decode, map and send one record.",
        bounds: [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1])
    /// From the source record's timestamp to the commit of its outputs.
    public let endToEnd = Histogram(
        name: "p2c_end_to_end_latency_seconds", help: "From the source record's timestamp to the commit of its outputs."
    )
    /// Milliseconds since start of the last loop iteration (the watchdog reads it).
    /// The loop's last turn and the group membership, for `/healthz` and `/readyz`.
    public let liveness = Liveness()
    let assignedPartitions = Atomic<Int>(0)
    /// Records not yet read, per input partition, from the last librdkafka statistics.
    private let lag = Mutex<[TopicPartition: Int]>([:])

    public final class StreamCounters: Sendable {
        public let consumed = Counter()
        public let produced = Counter()
        public let deadLettered = Counter()
        public let filtered = Counter()
        public let echoes = Counter()
    }

    init(flow: Flow) {
        self.flow = flow
        streams = Dictionary(uniqueKeysWithValues: SyncStream.allCases.map { ($0, StreamCounters()) })
    }

    /// Whether the worker has joined its group (readiness).
    public var isReady: Bool { liveness.isReady }

    /// Totals over every stream.
    public func total(_ counter: KeyPath<StreamCounters, Counter>) -> Int {
        streams.values.reduce(0) { $0 + $1[keyPath: counter].value }
    }

    /// Reads per-partition lag from librdkafka's statistics JSON: the last stable (or high) offset
    /// minus the worker's position, for partitions it reads.
    func updateLag(statistics json: [UInt8]) {
        guard case .object(let root)? = try? JSONParser.parse(json), case .object(let topics)? = root["topics"] else {
            return
        }
        var result: [TopicPartition: Int] = [:]
        for topic in topics.fields {
            guard case .object(let partitions)? = topic.value.objectValue?["partitions"] else { continue }
            for partition in partitions.fields {
                guard let id = Int32(partition.key), id >= 0, let entry = partition.value.objectValue,
                    let state = entry["fetch_state"]?.stringValue, state != "none"
                else { continue }
                func offset(_ name: String) -> Int { entry[name]?.decimalNumber.flatMap { Int($0.description) } ?? -1 }
                // Where this worker stands: its position, else the committed offset, else the log start.
                let position = [offset("app_offset"), offset("committed_offset"), offset("lo_offset")].first { $0 >= 0 }
                let end = offset("ls_offset") >= 0 ? offset("ls_offset") : offset("hi_offset")
                if let position, end >= 0 { result[TopicPartition(topic.key, id)] = max(0, end - position) }
            }
        }
        lag.withLock { $0 = result }
    }

    /// Lag per partition, as the last statistics gave it.
    public var partitionLag: [TopicPartition: Int] { lag.withLock { $0 } }

    /// Prometheus text exposition.
    public var exposition: String {
        let flowLabel = "flow=\"\(flow.rawValue)\""
        func perStream(_ name: String, _ help: String, _ counter: KeyPath<StreamCounters, Counter>) -> String {
            Exposition.family(
                name, type: "counter", help: help,
                samples: SyncStream.allCases.filter { $0.sources.contains(flow.source) }.map {
                    ("\(flowLabel),stream=\"\($0.rawValue)\"", Double(streams[$0]![keyPath: counter].value))
                })
        }
        return [
            perStream("p2c_events_consumed_total", "Change events read.", \.consumed),
            perStream("p2c_events_produced_total", "Records written for the target system.", \.produced),
            perStream("p2c_events_dead_lettered_total", "Refused events sent to the DLQ.", \.deadLettered),
            perStream(
                "p2c_events_filtered_total", "Events not synced by rule (prospects, free-text invoices...).", \.filtered
            ),
            perStream("p2c_echoes_dropped_total", "Echoes of p2c's own writes dropped.", \.echoes),
            Exposition.family(
                "p2c_transactions_committed_total", type: "counter", help: "Batches committed.",
                samples: [(flowLabel, Double(commits.value))]),
            Exposition.family(
                "p2c_transactions_aborted_total", type: "counter", help: "Batches aborted and redone.",
                samples: [(flowLabel, Double(aborts.value))]),
            Exposition.family(
                "p2c_records_read_while_committing_total", type: "counter",
                help: "Exactly-once: records read and mapped while the batch before them was committing.",
                samples: [(flowLabel, Double(readWhileCommitting.value))]),
            Exposition.family(
                "p2c_rebalances_total", type: "counter", help: "Assignment changes.",
                samples: [(flowLabel, Double(rebalances.value))]),
            Exposition.family(
                "p2c_assigned_partitions", type: "gauge", help: "Partitions assigned to this worker.",
                samples: [(flowLabel, Double(assignedPartitions.load(ordering: .relaxed)))]),
            Exposition.family(
                "p2c_consumer_lag", type: "gauge",
                help: "Records not yet read, per input partition (librdkafka statistics).",
                samples: partitionLag.sorted { $0.key.description < $1.key.description }.map {
                    ("\(flowLabel),topic=\"\($0.key.topic)\",partition=\"\($0.key.partition)\"", Double($0.value))
                }),
            processing.exposition(labels: flowLabel),
            endToEnd.exposition(labels: flowLabel),
        ].joined(separator: "\n") + "\n"
    }

    var logFields: [(String, LogValue)] {
        [
            ("consumed", .int(Int64(total(\.consumed)))), ("produced", .int(Int64(total(\.produced)))),
            ("dead_lettered", .int(Int64(total(\.deadLettered)))), ("filtered", .int(Int64(total(\.filtered)))),
            ("echoes", .int(Int64(total(\.echoes)))), ("commits", .int(Int64(commits.value))),
            ("aborts", .int(Int64(aborts.value))),
        ]
    }
}
