import Foundation
import Kafka
import Operations
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
        var partitions: [TopicPartition] = []
        for route in routes {
            for partition in 0..<Int32(route.input.partitions) where onlyPartition == nil || onlyPartition == partition
            {
                if let targetOffset, targetOffset.partition != partition { continue }
                partitions.append(TopicPartition(route.input.name, partition))
            }
        }
        guard !partitions.isEmpty else { throw usage("no partition matches") }
        let target: OffsetReplay.Target =
            if let targetOffset { .offset(targetOffset.offset) } else if let targetTime { .time(targetTime) } else {
                .earliest
            }
        let flowPartitions = Set(
            routes.flatMap { route in (0..<Int32(route.input.partitions)).map { TopicPartition(route.input.name, $0) } }
        )
        let replay = OffsetReplay(
            group: group, kafka: kafka, partitions: partitions, flowPartitions: flowPartitions, target: target,
            wait: .seconds(try arguments.integer("wait", in: 0...86_400) ?? 0))
        let consumer: KafkaConsumer
        do {
            consumer = try replay.consumer()
        } catch {
            throw usage((error as? KafkaError)?.message ?? "\(error)")
        }
        let dryRun = arguments.flag("dry-run")
        return try await Blocking.run { () -> Int32 in
            let moves = try replay.moves(with: consumer)
            for (from, to) in moves {
                print("\(from.topicPartition): \(from.offset >= 0 ? String(from.offset) : "none") → \(to.offset)")
            }
            if dryRun {
                print("dry run: nothing changed")
                return 0
            }
            let applied = try replay.apply(
                moves.map(\.to), with: consumer, report: { print($0) },
                warn: { FileHandle.standardError.write(Data("p2c replay: \($0)\n".utf8)) })
            try? consumer.close()
            guard applied else { return 1 }
            print("moved \(moves.count) partition\(moves.count == 1 ? "" : "s") of group \(group)")
            return 0
        }
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
        return try await Blocking.run {
            let delivered = try replay.run(
                report: { print($0) }, warn: { FileHandle.standardError.write(Data("p2c replay: \($0)\n".utf8)) })
            return delivered ? 0 : 1
        }
    }
}
