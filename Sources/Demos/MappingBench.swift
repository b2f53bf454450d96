import Foundation
import Kafka
import ProspectToCash
import Runtime
import Simulation
import Topology

/// `p2c bench`: mapping workers against raw pass-through workers on the same events, alternating.
public struct MappingBench: Sendable {
    /// How the workers deliver.
    public enum Delivery: String, Sendable {
        case exactlyOnce = "exactly-once"
        case atLeastOnce = "at-least-once"
    }

    var events: Int
    var lines: Int
    var repeats: Int
    var rate: Int
    var seconds: Int
    var workerCounts: [Int]
    var deliveries: [Delivery]
    var catalog: TopicCatalog
    var topics: String

    static let input = Role.changes.topicName(side: .crm, stream: .orders)
    /// The embedded broker holds an empty fetch for the whole fetch.wait.max.ms even when records
    /// arrive (a real broker answers at once), so each hop can wait that long: throughput runs use
    /// 10 ms, latency runs 1 ms, for the workers and the reader alike.
    static let latencyFetchWait = 1
    static let output = Role.inbound.topicName(side: .erp, stream: .orders)

    struct Result {
        var eventsPerSecond: Double
        var cpuPerEvent: Double
        var residentMiB: Double
    }

    public init(
        events: Int, lines: Int, repeats: Int, rate: Int, seconds: Int, workerCounts: [Int], deliveries: [Delivery],
        catalog: TopicCatalog, topics: String
    ) {
        self.events = events
        self.lines = lines
        self.repeats = repeats
        self.rate = rate
        self.seconds = seconds
        self.workerCounts = workerCounts
        self.deliveries = deliveries
        self.catalog = catalog
        self.topics = topics
    }

    public func execute() throws -> Int32 {
        let records = sample(count: events)
        let bytes = records.reduce(0) { $0 + ($1.value?.count ?? 0) }
        print(
            "p2c bench: \(records.count) order events per run (a header and \(lines) lines per document, \(bytes / records.count) bytes a value on average), embedded broker, \(ProcessInfo.processInfo.activeProcessorCount) cores, medians of \(repeats) runs a side"
        )
        print("  delivery       workers  pass-through           mapping                ratio mapping/pass-through")
        print("                          events/s  CPU µs/ev    events/s  CPU µs/ev    CPU     events/s  worker RSS")
        var verdicts: [String] = []
        var largestRSS = 0.0
        for delivery in deliveries {
            for workers in workerCounts {
                var raws: [Result] = []
                var mappeds: [Result] = []
                for _ in 0..<repeats {
                    raws.append(try throughput(records, delivery: delivery, workers: workers, passThrough: true))
                    mappeds.append(try throughput(records, delivery: delivery, workers: workers, passThrough: false))
                }
                let raw = Result(median: raws)
                let mapped = Result(median: mappeds)
                let cpuRatio = mapped.cpuPerEvent / raw.cpuPerEvent
                let rateRatio = mapped.eventsPerSecond / raw.eventsPerSecond
                largestRSS = max(largestRSS, mapped.residentMiB)
                print(
                    "  \(delivery.rawValue.padding(toLength: 15, withPad: " ", startingAt: 0))\(String(workers).padding(toLength: 9, withPad: " ", startingAt: 0))"
                        + "\(format(raw.eventsPerSecond, 0, 8))  \(format(raw.cpuPerEvent * 1e6, 1, 9))    \(format(mapped.eventsPerSecond, 0, 8))  \(format(mapped.cpuPerEvent * 1e6, 1, 9))    \(format(cpuRatio, 2, 5))   \(format(rateRatio, 2, 6))    \(format(mapped.residentMiB, 1, 5)) MiB"
                )
                if delivery == .exactlyOnce {
                    verdicts.append(
                        "exactly-once, \(workers) worker(s): CPU per event \(format(cpuRatio, 2, 0))× the pass-through (target ≤ 2×): \(cpuRatio <= 2 ? "met" : "MISSED"); events/s \(format(rateRatio * 100, 0, 0)) % of it (target ≥ 80 %): \(rateRatio >= 0.8 ? "met" : "MISSED")"
                    )
                }
            }
        }
        for delivery in deliveries {
            let (p50, p99, rss) = try latency(delivery: delivery)
            largestRSS = max(largestRSS, rss)
            let target = delivery == .exactlyOnce ? 150 : 30
            print(
                "  end-to-end latency, \(delivery.rawValue), 1 worker at \(rate) events/s for \(seconds) s (fetch.wait.max.ms \(Self.latencyFetchWait)): p50 \(p50) ms, p99 \(p99) ms"
            )
            verdicts.append(
                "\(delivery.rawValue) p99 \(p99) ms (target ≤ \(target) ms): \(p99 <= target ? "met" : "MISSED")")
            if delivery == .exactlyOnce {
                print(
                    "    (the embedded broker lets read_committed see open transactions, so this lacks the wait for the commit, up to commitIntervalMs = 100 ms, that a real cluster adds)"
                )
            }
        }
        verdicts.append(
            "worker resident memory at most \(format(largestRSS, 1, 0)) MiB (target ≤ 64 MiB): \(largestRSS <= 64 ? "met" : "MISSED")"
        )
        print("  targets:")
        for verdict in verdicts { print("    \(verdict)") }
        return 0
    }

    /// The same order documents as the map benchmark: every column the maps send, realistic sizes.
    private func sample(count: Int) -> [OutgoingRecord] {
        var result: [OutgoingRecord] = []
        var number = 0
        while result.count < count {
            number += 1
            for record in SampleOrders.document(number: number, lines: lines) where result.count < count {
                let subject = record.headers.first { $0.name == CloudEvent.Header.subject }?.value ?? []
                result.append(
                    OutgoingRecord(
                        topic: Self.input, key: subject, value: record.value,
                        headers: record.headers.map { KafkaHeader($0.name, $0.value) }))
            }
        }
        return result
    }

    private func cluster() throws -> EmbeddedCluster {
        let cluster = try EmbeddedCluster(brokers: 1)
        for topic in catalog.topics where topic.stream == .orders {
            try cluster.createTopic(
                topic.name, partitions: topic.partitions, replicationFactor: topic.replicationFactor)
        }
        return cluster
    }

    private func produce(_ records: [OutgoingRecord], to bootstrap: String) throws {
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrap, clientID: "p2c-bench")))
        for record in records { try producer.send(record) }
        _ = try producer.flush(timeout: .seconds(60))
    }

    /// One throughput run: a fresh broker with the events, `workers` processes, until all are out.
    private func throughput(
        _ records: [OutgoingRecord], delivery: Delivery, workers: Int, passThrough: Bool
    ) throws -> Result {
        let cluster = try cluster()
        try produce(records, to: cluster.bootstrapServers)
        var startCPU: [Double] = []
        let fleet = try startWorkers(
            workers, bootstrap: cluster.bootstrapServers, delivery: delivery, passThrough: passThrough
        ) { startCPU = $0.members.map { cpuSeconds($0.process.processIdentifier) } }
        defer { fleet.stopAll() }
        let probe = try OutputProbe(
            bootstrap: cluster.bootstrapServers, topic: Self.output, partitions: partitions(Self.output))
        let total = Int64(records.count)
        var done = false
        let deadline = EventTime.nowMilliseconds() + 300_000
        while EventTime.nowMilliseconds() < deadline {
            if probe.count() >= total {
                done = true
                break
            }
            usleep(50_000)
        }
        guard done else {
            throw BenchError("the workers did not publish all \(records.count) events within 300 s")
        }
        let cpu = zip(fleet.members, startCPU).reduce(0.0) { $0 + cpuSeconds($1.0.process.processIdentifier) - $1.1 }
        let rss = fleet.members.map { residentMiB($0.process.processIdentifier) }.max() ?? 0
        fleet.stopAll()
        // The rate is the steady one, from the outputs' own timestamps (set by the workers'
        // producers as they send): from the time a tenth of them were out to nine tenths (the
        // first and last moments of a short run are ramp-up and stragglers). Polling a count
        // instead measured the poll's own steps, tens of ms against a window of a few hundred.
        let times = try outputTimestamps(bootstrap: cluster.bootstrapServers).sorted()
        guard times.count >= records.count else {
            throw BenchError("read back \(times.count) of the \(records.count) outputs")
        }
        let first = times[times.count / 10]
        let last = times[times.count * 9 / 10]
        return Result(
            eventsPerSecond: Double(times.count * 9 / 10 - times.count / 10) / (Double(max(1, last - first)) / 1000),
            cpuPerEvent: cpu / Double(records.count), residentMiB: rss)
    }

    /// The timestamps of every record on the output topic.
    private func outputTimestamps(bootstrap: String) throws -> [Int64] {
        var configuration = ConsumerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: bootstrap, clientID: "p2c-bench-reader"),
            groupID: "p2c-bench-reader")
        configuration.reportPartitionEnd = true
        let reader = try KafkaConsumer(configuration: configuration)
        defer { try? reader.close() }
        var times: [Int64] = []
        try reader.readToEnd(
            (0..<Int32(partitions(Self.output))).map {
                TopicPartitionOffset(Self.output, $0, offset: KafkaOffset.beginning)
            }
        ) { times.append($0.timestamp) }
        return times
    }

    /// One latency run: a mapping worker fed at a fixed rate; p50, p99 in ms and its RSS.
    private func latency(delivery: Delivery) throws -> (Int64, Int64, Double) {
        let cluster = try cluster()
        let fleet = try startWorkers(
            1, bootstrap: cluster.bootstrapServers, delivery: delivery, passThrough: false,
            fetchWait: Self.latencyFetchWait)
        defer { fleet.stopAll() }
        let bootstrap = cluster.bootstrapServers
        var configuration = ConsumerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: bootstrap, clientID: "p2c-bench-reader"),
            groupID: "p2c-bench-reader")
        configuration.readCommitted = true
        configuration.kafka.properties = ["fetch.wait.max.ms": String(Self.latencyFetchWait)]
        let reader = try KafkaConsumer(configuration: configuration)
        defer { try? reader.close() }
        try reader.assign(
            (0..<Int32(partitions(Self.output))).map {
                TopicPartitionOffset(Self.output, $0, offset: KafkaOffset.beginning)
            })
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrap, clientID: "p2c-bench")))
        let records = sample(count: rate * seconds)
        // Warm up the path (producer id and metadata, the worker's first transaction, the reader's
        // first fetch) with one event that is not timed.
        var warmUp = records[0]
        warmUp.headers = warmUp.headers.map {
            $0.name == CloudEvent.Header.id ? KafkaHeader(CloudEvent.Header.id, "warm-up") : $0
        }
        try producer.send(warmUp)
        _ = try producer.flush(timeout: .seconds(10))
        let warmUpDeadline = EventTime.nowMilliseconds() + 30_000
        warming: while EventTime.nowMilliseconds() < warmUpDeadline {
            if case .record? = try reader.poll(timeout: .milliseconds(100)) { break warming }
        }
        var samples = LatencySamples()
        let start = EventTime.nowMilliseconds()
        var sent = 0
        let deadline = start + Int64(seconds) * 1000 + 30_000
        while samples.count < records.count && EventTime.nowMilliseconds() < deadline {
            let now = EventTime.nowMilliseconds()
            // Send what the fixed rate owes by now, each stamped with the time it is sent.
            while sent < records.count && Int64(sent) * 1000 < (now - start) * Int64(rate) {
                var record = records[sent]
                let time = Array(EventTime.format(EventTime.nowMilliseconds()).utf8)
                record.headers = record.headers.map { $0.name == "ce_time" ? KafkaHeader("ce_time", time) : $0 }
                try producer.send(record)
                sent += 1
            }
            _ = producer.poll()
            while let event = try reader.poll(timeout: .milliseconds(1)) {
                guard case .record(let record) = event,
                    let time = record.header("ce_time")?.text.flatMap(EventTime.parse)
                else { continue }
                samples.add(EventTime.nowMilliseconds() - time)
            }
        }
        _ = try? producer.flush(timeout: .seconds(5))
        let rss = residentMiB(fleet.members[0].process.processIdentifier)
        guard samples.count == records.count else {
            throw BenchError("latency run: read \(samples.count) of \(records.count) events")
        }
        return (samples.percentile(0.5) ?? 0, samples.percentile(0.99) ?? 0, rss)
    }

    private func partitions(_ topic: String) -> Int { catalog[topic]?.partitions ?? 1 }

    private func startWorkers(
        _ count: Int, bootstrap: String, delivery: Delivery, passThrough: Bool, fetchWait: Int = 10,
        joined: (Fleet) -> Void = { _ in }
    ) throws -> Fleet {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "p2c-bench-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let file = folder.appendingPathComponent("worker.json")
        try Data(
            """
            {"flow": "crm-to-erp", "streams": ["orders"], "delivery": "\(delivery.rawValue)", "passThrough": \(passThrough),
             "sessionTimeoutMs": 6000, "kafka": {"fetch.wait.max.ms": "\(fetchWait)"}, "mapping": \(Scenario.mappingConfiguration(.classic))}
            """.utf8
        ).write(to: file)
        let fleet = Fleet(bootstrap: bootstrap, configuration: file.path, topics: topics, logs: folder, name: "bench")
        for _ in 0..<count { try fleet.start(.crmToERP) }
        guard fleet.waitUntilReady(seconds: 60, stopped: { false }) else {
            fleet.stopAll()
            throw BenchError("workers not ready within 60 s; logs in \(folder.path)")
        }
        // CPU counts from here: once the group hands out partitions, a small run may be over
        // before the next look.
        joined(fleet)
        // Ready means joined; measure only once the group has handed out every input partition.
        let deadline = EventTime.nowMilliseconds() + 60_000
        while EventTime.nowMilliseconds() < deadline {
            let assigned = fleet.members.map { fleet.assignedPartitions($0) ?? 0 }.reduce(0, +)
            if assigned >= partitions(Self.input) { return fleet }
            usleep(50_000)
        }
        fleet.stopAll()
        throw BenchError("the workers' group did not settle within 60 s; logs in \(folder.path)")
    }

    /// CPU seconds of a process: its threads' run time in nanoseconds (/proc/<pid>/task/*/schedstat),
    /// as /proc/<pid>/stat's clock ticks (10 ms) are too coarse for a run of a few hundred events.
    private func cpuSeconds(_ pid: Int32) -> Double {
        let tasks = "/proc/\(pid)/task"
        guard let threads = try? FileManager.default.contentsOfDirectory(atPath: tasks) else { return 0 }
        var nanoseconds = 0.0
        for thread in threads {
            guard let text = try? String(contentsOfFile: "\(tasks)/\(thread)/schedstat", encoding: .utf8),
                let first = text.split(separator: " ").first, let value = Double(first)
            else { continue }
            nanoseconds += value
        }
        return nanoseconds / 1e9
    }

    /// Resident memory of a process in MiB (/proc/<pid>/status VmRSS).
    private func residentMiB(_ pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
        else { return 0 }
        return kilobytes / 1024
    }

    private func format(_ value: Double, _ decimals: Int, _ width: Int) -> String {
        String(format: "%\(width).\(decimals)f", value)
    }
}

extension MappingBench.Result {
    /// The medians of several runs' figures (the largest resident memory).
    fileprivate init(median runs: [MappingBench.Result]) {
        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.count % 2 == 1
                ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        self.init(
            eventsPerSecond: median(runs.map(\.eventsPerSecond)), cpuPerEvent: median(runs.map(\.cpuPerEvent)),
            residentMiB: runs.map(\.residentMiB).max() ?? 0)
    }
}

/// Counts what has been written to a topic (sum of high watermarks).
private struct OutputProbe {
    let consumer: KafkaConsumer
    let partitions: [TopicPartition]

    init(bootstrap: String, topic: String, partitions: Int) throws {
        consumer = try KafkaConsumer(
            configuration: ConsumerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrap, clientID: "p2c-bench-probe"),
                groupID: "p2c-bench-probe"))
        self.partitions = (0..<Int32(partitions)).map { TopicPartition(topic, $0) }
    }

    func count() -> Int64 {
        partitions.reduce(0) { total, partition in
            total + ((try? consumer.watermarks(partition, timeout: .seconds(2)).high) ?? 0)
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
