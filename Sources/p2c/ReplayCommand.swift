import Foundation
import Kafka
import ProspectToCash
import Runtime
import Topology
import Worker

/// `p2c replay`: moves a flow's committed offsets back, so its workers map that history again.
enum ReplayCommand {
    static let spec = CommandSpec(
        name: "replay",
        summary:
            "Move a flow's committed offsets (the fleet scaled to zero), or map one document's or company's events again.",
        options: [
            OptionSpec("flow", value: "flow", help: "crm-to-erp or erp-to-crm."),
            OptionSpec(
                "stream", value: "stream", help: "Only this stream's changes topic. Default: every stream of the flow."),
            OptionSpec("partition", value: "n", help: "Only this partition."),
            OptionSpec("to-earliest", help: "Move to the first record still kept."),
            OptionSpec(
                "to-offset", value: "partition:offset", help: "Move one partition to an offset (with --stream)."),
            OptionSpec(
                "to-datetime", value: "time",
                help: "Move to the first record at or after this ISO 8601 time (e.g. 2026-11-22T10:00:00Z)."),
            OptionSpec(
                "key", value: "key",
                help: "Targeted: map again just this document's change events (e.g. USMF/C000123); offsets stay."),
            OptionSpec(
                "company", value: "id", help: "Targeted: map again the change events of this company (with --since)."),
            OptionSpec("since", value: "time", help: "Targeted: only events written at or after this ISO 8601 time."),
            OptionSpec(
                "config", value: "file",
                help: "Targeted: the workers' configuration file, for the same maps and settings."),
            OptionSpec("dry-run", help: "Print what would change (offsets, or events to send) and change nothing."),
            OptionSpec(
                "wait", value: "seconds",
                help: "While the group still has members, wait up to this long for them to leave. Default: 0."),
            OptionSpec("group", value: "id", help: "The flow's consumer group. Default: p2c-<flow>."),
            OptionSpec("bootstrap-servers", value: "host:port,...", help: "The cluster (or P2C_BOOTSTRAP_SERVERS)."),
            OptionSpec("topics", value: "dir", help: "Folder of topic declarations. Default: $P2C_TOPICS or ./Topics."),
        ],
        discussion: """
            Replayed events get the same ce_id as the first time, so targets drop what they already have.
            The group must be empty (scale the flow to zero first): replay asks the cluster to describe the
            group, without joining it, and refuses while members remain, naming them (client id, host,
            member id), unless --wait gives them time to leave. Where the cluster cannot describe groups
            (the embedded broker), replay joins the group alone instead, and refuses unless it is given
            every partition.

            Targeted (--key, or --company with --since): reads the flow's change topics, maps the matching
            events with the workers' code and configuration and sends the outputs to the target's inbound
            topics. The workers keep running; offsets, other records and dead letters are not touched.
            """
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        func usage(_ message: String) -> UsageError { UsageError(message, command: spec.name) }
        guard let flow = try arguments.choice("flow", as: Flow.self) else { throw usage("option '--flow' is required") }
        let catalog = try TopicCatalog.load(arguments, command: spec.name)
        let stream = try arguments.choice("stream", as: SyncStream.self)
        let routes = catalog.routes(for: flow).filter { stream == nil || $0.stream == stream }
        guard !routes.isEmpty else { throw usage("stream \(stream!.rawValue) does not flow \(flow.rawValue)") }
        if arguments.string("key") != nil || arguments.string("company") != nil {
            return try await targeted(arguments, flow: flow, catalog: catalog, routes: routes)
        }
        for option in ["since", "config"] where arguments.string(option) != nil {
            throw usage("option '--\(option)' is for a targeted replay (with --key or --company)")
        }
        let onlyPartition = try arguments.integer("partition", in: 0...10_000).map(Int32.init)
        var targetOffset: (partition: Int32, offset: Int64)?
        if let text = arguments.string("to-offset") {
            let parts = text.split(separator: ":")
            guard parts.count == 2, let partition = Int32(parts[0]), let offset = Int64(parts[1]), partition >= 0,
                offset >= 0
            else { throw usage("option '--to-offset' expects partition:offset, got '\(text)'") }
            guard routes.count == 1 else { throw usage("option '--to-offset' needs --stream (one topic)") }
            targetOffset = (partition, offset)
        }
        let targetTime = try arguments.time("to-datetime")
        guard [arguments.flag("to-earliest"), targetOffset != nil, targetTime != nil].filter({ $0 }).count == 1 else {
            throw usage("give exactly one of --to-earliest, --to-offset or --to-datetime")
        }
        guard let kafka = ConfigurationFile.kafka(arguments, clientID: "p2c-replay") else {
            throw usage("option '--bootstrap-servers' is required (or P2C_BOOTSTRAP_SERVERS)")
        }
        let group = arguments.string("group") ?? "p2c-\(flow.rawValue)"
        var configuration = ConsumerConfiguration(
            kafka: kafka, groupID: group)
        // Short, so the group settles fast after this tool leaves (brokers accept 6 s and up by default).
        configuration.sessionTimeoutMilliseconds = 6_000
        configuration.heartbeatIntervalMilliseconds = 1_000
        // A join the coordinator holds longer than that is sent again: librdkafka 2.0.2's mock
        // holds a join for the previous members' session timeout and meanwhile drops the waiting
        // member when its own session runs out, never answering it.
        configuration.kafka.properties["max.poll.interval.ms"] = "6000"
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(configuration: configuration)
        } catch {
            throw usage(error.message)
        }
        var partitions: [TopicPartition] = []
        for route in routes {
            for partition in 0..<Int32(route.input.partitions) where onlyPartition == nil || onlyPartition == partition
            {
                if let targetOffset, targetOffset.partition != partition { continue }
                partitions.append(TopicPartition(route.input.name, partition))
            }
        }
        guard !partitions.isEmpty else { throw usage("no partition matches") }
        let dryRun = arguments.flag("dry-run")
        let wait = Duration.seconds(try arguments.integer("wait", in: 0...86_400) ?? 0)
        let selected = partitions
        let time = targetTime
        let target = targetOffset.map { $0.offset }
        return try await Blocking.run { () -> Int32 in
            let partitions = selected
            let current = try consumer.committed(partitions)
            let byTime = try time.map { try offsets(at: $0, partitions, kafka: kafka, consumer: consumer) }
            var moves: [TopicPartitionOffset] = []
            for position in current {
                let offset =
                    try target ?? byTime?[position.topicPartition] ?? consumer.watermarks(position.topicPartition).low
                moves.append(TopicPartitionOffset(position.topicPartition, offset: offset))
                let before = position.offset >= 0 ? String(position.offset) : "none"
                print("\(position.topicPartition): \(before) → \(offset)")
            }
            if dryRun {
                print("dry run: nothing changed")
                return 0
            }
            let deadline = ContinuousClock.now + wait
            let applied: Bool
            switch try describedGroup(group, kafka: kafka, until: deadline) {
            case .inactive:
                try consumer.commit(moves, timeout: .seconds(30))
                applied = true
            case .members(let members):
                FileHandle.standardError.write(
                    Data(
                        ("p2c replay: the group \(group) has \(members.count) live member\(members.count == 1 ? "" : "s"): "
                            + members.map(\.description).joined(separator: "; ")
                            + ": scale the flow to zero first, or give them time with --wait <seconds>\n").utf8))
                applied = false
            case .cannotDescribe:
                applied = try probe(
                    group: group, consumer: consumer, routes: routes, partitions: partitions, moves: moves,
                    until: deadline + .seconds(30))
            }
            guard applied else {
                try? consumer.close()
                return 1
            }
            let after = try consumer.committed(partitions)
            try consumer.close()
            guard after.map(\.offset) == moves.map(\.offset) else {
                FileHandle.standardError.write(Data("p2c replay: the cluster kept other offsets: \(after)\n".utf8))
                return 1
            }
            print("moved \(moves.count) partition\(moves.count == 1 ? "" : "s") of group \(group)")
            return 0
        }
    }

    /// What the cluster says of the group's members.
    private enum Membership {
        /// No member: offsets can be moved without joining.
        case inactive
        /// Still there at the deadline.
        case members([KafkaAdmin.GroupDescription.Member])
        /// The cluster does not offer DescribeGroups (librdkafka 2.0.2's mock).
        case cannotDescribe
    }

    /// Describes `group` every second until it has no member or `deadline` passes. Describing
    /// never joins the group, so a live fleet is not rebalanced by asking.
    private static func describedGroup(
        _ group: String, kafka: KafkaConfiguration, until deadline: ContinuousClock.Instant
    ) throws -> Membership {
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
                print(
                    "waiting for \(description.members.count) member(s) of \(group) to leave (state \(description.state))"
                )
                reported = true
            }
            Thread.sleep(forTimeInterval: 1)
        }
    }

    /// Where the cluster cannot describe groups: joins the group alone and commits `moves` once it
    /// holds every partition of `routes` (a live member keeps some). False when it did not by `deadline`.
    private static func probe(
        group: String, consumer: KafkaConsumer, routes: [Route], partitions: [TopicPartition],
        moves: [TopicPartitionOffset], until deadline: ContinuousClock.Instant
    ) throws -> Bool {
        print("the cluster cannot describe groups; joining \(group) alone to check that it is empty")
        try consumer.subscribe(Array(Set(partitions.map(\.topic))).sorted())
        let wanted = Set(partitions.map(\.topic))
        var held: Set<TopicPartition> = []
        var allOfThem: Set<TopicPartition> = []
        for route in routes {
            for index in 0..<Int32(route.input.partitions) {
                allOfThem.insert(TopicPartition(route.input.name, index))
            }
        }
        var settledSince: ContinuousClock.Instant?
        var lastReport: ContinuousClock.Instant?
        while ContinuousClock.now < deadline {
            _ = try consumer.poll(timeout: .milliseconds(100))
            let now = Set(try consumer.assignment().filter { wanted.contains($0.topic) })
            if now != held {
                held = now
                settledSince = now.isEmpty ? nil : .now
            }
            if held == allOfThem, let since = settledSince, ContinuousClock.now - since > .seconds(1) { break }
            // Assigned part of the partitions: other members hold the rest. Said at once, then every
            // 5 s while it waits for them to leave.
            if !held.isEmpty, held != allOfThem, lastReport.map({ ContinuousClock.now - $0 >= .seconds(5) }) ?? true {
                let left = Int((deadline - ContinuousClock.now) / .seconds(1))
                FileHandle.standardError.write(
                    Data(
                        "p2c replay: the group \(group) has other members (this tool holds \(held.count) of \(allOfThem.count) partitions); waiting \(left) s more for them to leave\n"
                            .utf8))
                lastReport = .now
            }
        }
        guard held == allOfThem else {
            FileHandle.standardError.write(
                Data(
                    "p2c replay: the group \(group) has live members (this tool got \(held.count) of \(allOfThem.count) partitions): scale the flow to zero first, or give them time with --wait <seconds>\n"
                        .utf8))
            return false
        }
        try consumer.commit(moves)
        return true
    }

    /// `--key K` or `--company C --since T`: maps those events again; offsets stay.
    private static func targeted(
        _ arguments: ParsedArguments, flow: Flow, catalog: TopicCatalog, routes: [Route]
    )
        async throws -> Int32
    {
        func usage(_ message: String) -> UsageError { UsageError(message, command: spec.name) }
        for option in ["to-earliest", "to-offset", "to-datetime", "partition", "group"]
        where arguments.string(option) != nil || arguments.flag(option) {
            throw usage("option '--\(option)' moves offsets; a targeted replay (--key, --company) does not")
        }
        let since = try arguments.time("since")
        if arguments.string("key") == nil && since == nil {
            throw usage("--company needs --since (a company's whole history is a flow replay: --to-earliest)")
        }
        var file = try ConfigurationFile.load(
            arguments.string("config"), command: spec.name)
        file.worker.flow = flow
        guard let kafka = ConfigurationFile.kafka(arguments, clientID: "p2c-replay") else {
            throw usage("option '--bootstrap-servers' is required (or P2C_BOOTSTRAP_SERVERS)")
        }
        var merged = kafka
        merged.properties = file.worker.kafka.properties.merging(kafka.properties) { $1 }
        let mapper: Mapper
        do {
            mapper = try Mapper(configuration: file.mapping)
        } catch {
            throw usage("mapping.\(error)")
        }
        let replay = TargetedReplay(
            routes: routes, kafka: merged, translator: RecordTranslator(mapper: mapper, flow: flow, catalog: catalog),
            key: arguments.string("key"), company: arguments.string("company"), since: since,
            dryRun: arguments.flag("dry-run"))
        return try await Blocking.run { try replay.run() }
    }

    /// The first offset at or after `time` per partition: the broker's own lookup, or, where it
    /// answers nothing (librdkafka 2.0.2's mock has no lookup by time), a binary search over the
    /// records' timestamps (which assumes they grow along the partition, as CreateTime does).
    static func offsets(
        at time: Int64, _ partitions: [TopicPartition], kafka: KafkaConfiguration, consumer: KafkaConsumer
    )
        throws -> [TopicPartition: Int64]
    {
        var result: [TopicPartition: Int64] = [:]
        let answered = (try? consumer.offsets(forTimestamp: time, partitions)) ?? []
        var searcher: KafkaConsumer?
        for partition in partitions {
            let (low, high) = try consumer.watermarks(partition)
            if let found = answered.first(where: { $0.topicPartition == partition }), found.offset >= 0 {
                result[partition] = found.offset
                continue
            }
            guard low < high else {
                result[partition] = high
                continue
            }
            if searcher == nil {
                var configuration = ConsumerConfiguration(
                    kafka: kafka, groupID: "p2c-replay-search-\(UUID().uuidString)")
                configuration.readCommitted = false
                searcher = try KafkaConsumer(configuration: configuration)
            }
            // Smallest offset in [low, high) whose record is at or after `time`; `high` if none.
            var lower = low
            var upper = high
            while lower < upper {
                let middle = lower + (upper - lower) / 2
                let stamp = try timestamp(of: TopicPartitionOffset(partition, offset: middle), with: searcher!)
                if stamp >= time { upper = middle } else { lower = middle + 1 }
            }
            result[partition] = lower
        }
        try searcher?.close()
        return result
    }

    /// The timestamp of the record at `position` (or of the next one the log still has).
    private static func timestamp(of position: TopicPartitionOffset, with consumer: KafkaConsumer) throws -> Int64 {
        try consumer.assign([position])
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if case .record(let record)? = try consumer.poll(timeout: .milliseconds(100)),
                record.topicPartitionKey == position.topicPartition
            {
                return record.timestamp
            }
        }
        throw KafkaError(code: .timedOut, message: "no record at \(position) within 10 s")
    }
}

extension KafkaRecord {
    fileprivate var topicPartitionKey: TopicPartition { TopicPartition(topic, partition) }
}
