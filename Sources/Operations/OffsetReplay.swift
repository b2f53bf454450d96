import Foundation
import Kafka

/// What `p2c replay --to-earliest | --to-offset | --to-datetime` does: moves a flow group's
/// committed offsets back, so that its workers map that history again, only while the group has
/// no live member (a live member would overwrite the offsets with its own).
///
/// Where the cluster describes groups, it asks (never joining, so a live fleet is not
/// rebalanced); where it cannot (librdkafka 2.0.2's mock), it joins the group alone and moves the
/// offsets only once it holds every partition of the flow, saying at once when other members hold
/// some.
public struct OffsetReplay: Sendable {
    /// Where the offsets go.
    public enum Target: Sendable, Equatable {
        /// The first record each partition still keeps.
        case earliest
        /// One offset (of the one partition given).
        case offset(Int64)
        /// The first record at or after this time, milliseconds since the epoch.
        case time(Int64)
    }

    public var group: String
    public var kafka: KafkaConfiguration
    /// The partitions moved.
    public var partitions: [TopicPartition]
    /// Every partition of the flow's input topics: a probe that holds them all is alone.
    public var flowPartitions: Set<TopicPartition>
    public var target: Target
    /// How long to wait for live members to leave before refusing.
    public var wait: Duration

    public init(
        group: String, kafka: KafkaConfiguration, partitions: [TopicPartition], flowPartitions: Set<TopicPartition>,
        target: Target, wait: Duration = .zero
    ) {
        self.group = group
        self.kafka = kafka
        self.partitions = partitions
        self.flowPartitions = flowPartitions
        self.target = target
        self.wait = wait
    }

    /// The group's consumer for the move: a short session, so that the group settles fast after
    /// this tool leaves.
    public func consumer() throws -> KafkaConsumer {
        var configuration = ConsumerConfiguration(kafka: kafka, groupID: group)
        // Brokers accept 6 s and up by default.
        configuration.sessionTimeoutMilliseconds = 6_000
        configuration.heartbeatIntervalMilliseconds = 1_000
        // A join the coordinator holds longer than that is sent again: librdkafka 2.0.2's mock
        // holds a join for the previous members' session timeout and meanwhile drops the waiting
        // member when its own session runs out, never answering it.
        configuration.kafka.properties["max.poll.interval.ms"] = "6000"
        return try KafkaConsumer(configuration: configuration)
    }

    /// Each partition's move, from its committed offset to the target's.
    public func moves(with consumer: KafkaConsumer) throws -> [(from: TopicPartitionOffset, to: TopicPartitionOffset)] {
        let current = try consumer.committed(partitions)
        var byTime: [TopicPartition: Int64]?
        if case .time(let time) = target {
            byTime = try Self.offsets(at: time, partitions, kafka: kafka, consumer: consumer)
        }
        return try current.map { position in
            let offset: Int64
            switch target {
            case .offset(let given): offset = given
            case .time: offset = byTime?[position.topicPartition] ?? 0
            case .earliest: offset = try consumer.watermarks(position.topicPartition).low
            }
            return (position, TopicPartitionOffset(position.topicPartition, offset: offset))
        }
    }

    /// Commits `moves` once the group is empty, waiting up to `wait` for its members to leave;
    /// `report` hears what it does, `warn` why it waits or refuses. False when it refused.
    public func apply(
        _ moves: [TopicPartitionOffset], with consumer: KafkaConsumer, report: (String) -> Void,
        warn: (String) -> Void
    ) throws -> Bool {
        let deadline = ContinuousClock.now + wait
        switch try describedGroup(until: deadline, report: report) {
        case .inactive:
            try consumer.commit(moves, timeout: .seconds(30))
        case .members(let members):
            warn(
                "the group \(group) has \(members.count) live member\(members.count == 1 ? "" : "s"): "
                    + members.map(\.description).joined(separator: "; ")
                    + ": scale the flow to zero first, or give them time with --wait <seconds>")
            return false
        case .cannotDescribe:
            guard
                try probe(moves, with: consumer, until: deadline + .seconds(30), report: report, warn: warn)
            else { return false }
        }
        let after = try consumer.committed(partitions)
        guard after.map(\.offset) == moves.map(\.offset) else {
            warn("the cluster kept other offsets: \(after)")
            return false
        }
        return true
    }

    /// What the cluster says of the group's members.
    enum Membership {
        /// No member: offsets can be moved without joining.
        case inactive
        /// Still there at the deadline.
        case members([KafkaAdmin.GroupDescription.Member])
        /// The cluster does not offer DescribeGroups (librdkafka 2.0.2's mock).
        case cannotDescribe
    }

    /// Describes the group every second until it has no member or `deadline` passes. Describing
    /// never joins the group, so a live fleet is not rebalanced by asking.
    func describedGroup(until deadline: ContinuousClock.Instant, report: (String) -> Void) throws -> Membership {
        let admin = try KafkaAdmin(configuration: kafka)
        var reported = false
        while true {
            let answer = Result { () throws(KafkaError) in try admin.describeGroup(group) }
            if case .failure(let error) = answer, [.unsupportedFeature, .unsupportedVersion].contains(error.code) {
                return .cannotDescribe
            }
            let description = try answer.get()
            if description.isInactive { return .inactive }
            guard ContinuousClock.now < deadline else { return .members(description.members) }
            if !reported {
                report(
                    "waiting for \(description.members.count) member(s) of \(group) to leave (state \(description.state))"
                )
                reported = true
            }
            Thread.sleep(forTimeInterval: 1)
        }
    }

    /// Where the cluster cannot describe groups: joins the group alone and commits `moves` once it
    /// holds every partition of the flow (a live member keeps some). False when it did not by
    /// `deadline`.
    func probe(
        _ moves: [TopicPartitionOffset], with consumer: KafkaConsumer, until deadline: ContinuousClock.Instant,
        report: (String) -> Void, warn: (String) -> Void
    ) throws -> Bool {
        report("the cluster cannot describe groups; joining \(group) alone to check that it is empty")
        let topics = Set(flowPartitions.map(\.topic))
        try consumer.subscribe(topics.sorted())
        var held: Set<TopicPartition> = []
        var settledSince: ContinuousClock.Instant?
        var lastReport: ContinuousClock.Instant?
        while ContinuousClock.now < deadline {
            _ = try consumer.poll(timeout: .milliseconds(100))
            let now = Set(try consumer.assignment().filter { topics.contains($0.topic) })
            if now != held {
                held = now
                settledSince = now.isEmpty ? nil : .now
            }
            if held == flowPartitions, let since = settledSince, ContinuousClock.now - since > .seconds(1) { break }
            // Assigned part of the partitions: other members hold the rest. Said at once, then every
            // 5 s while it waits for them to leave.
            if !held.isEmpty, held != flowPartitions,
                lastReport.map({ ContinuousClock.now - $0 >= .seconds(5) }) ?? true
            {
                let left = Int((deadline - ContinuousClock.now) / .seconds(1))
                warn(
                    "the group \(group) has other members (this tool holds \(held.count) of \(flowPartitions.count) partitions); waiting \(left) s more for them to leave"
                )
                lastReport = .now
            }
        }
        guard held == flowPartitions else {
            warn(
                "the group \(group) has live members (this tool got \(held.count) of \(flowPartitions.count) partitions): scale the flow to zero first, or give them time with --wait <seconds>"
            )
            return false
        }
        try consumer.commit(moves)
        return true
    }

    /// Each partition's first offset at or after `time`: the broker's lookup by time, or where it
    /// answers nothing (librdkafka 2.0.2's mock has no lookup by time), a binary search over the
    /// records' timestamps (which assumes they grow along the partition, as CreateTime does).
    public static func offsets(
        at time: Int64, _ partitions: [TopicPartition], kafka: KafkaConfiguration, consumer: KafkaConsumer
    ) throws -> [TopicPartition: Int64] {
        var result: [TopicPartition: Int64] = [:]
        let answered = (try? consumer.offsets(forTimestamp: time, partitions)) ?? []
        var searcher: KafkaConsumer?
        defer { try? searcher?.close() }
        for partition in partitions {
            let (low, high) = try consumer.watermarks(partition)
            if let found = answered.first(where: { $0.topicPartition == partition }), found.offset >= 0 {
                result[partition] = found.offset
                continue
            }
            if searcher == nil && low < high {
                var configuration = ConsumerConfiguration(
                    kafka: kafka, groupID: "p2c-replay-search-\(UUID().uuidString)")
                configuration.readCommitted = false
                searcher = try KafkaConsumer(configuration: configuration)
            }
            result[partition] = try Self.firstOffset(atOrAfter: time, low: low, high: high) { offset in
                try Self.timestamp(of: TopicPartitionOffset(partition, offset: offset), with: searcher!)
            }
        }
        return result
    }

    /// The smallest offset in `low..<high` whose record's timestamp is at or after `time`, `high`
    /// when none is: a binary search, for timestamps that grow along the partition.
    public static func firstOffset(
        atOrAfter time: Int64, low: Int64, high: Int64, timestamp: (Int64) throws -> Int64
    ) rethrows -> Int64 {
        var lower = low
        var upper = high
        while lower < upper {
            let middle = lower + (upper - lower) / 2
            if try timestamp(middle) >= time { upper = middle } else { lower = middle + 1 }
        }
        return lower
    }

    /// The timestamp of the record at `position` (or of the next one the log still has).
    static func timestamp(of position: TopicPartitionOffset, with consumer: KafkaConsumer) throws -> Int64 {
        try consumer.assign([position])
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if case .record(let record)? = try consumer.poll(timeout: .milliseconds(100)),
                record.topic == position.topic && record.partition == position.partition
            {
                return record.timestamp
            }
        }
        throw KafkaError(code: .timedOut, message: "no record at \(position) within 10 s")
    }
}
