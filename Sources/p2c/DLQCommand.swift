import Foundation
import Kafka
import Membership
import Operations
import Runtime
import Topology
import Worker

/// `p2c dlq list`: what the dead-letter topics hold; `p2c dlq redrive`: put letters back on their source topic.
enum DLQCommand {
    static let spec = CommandSpec(
        name: "dlq",
        summary: "List dead letters (counts by error code, offsets, samples), or re-drive them to their source topic.",
        options: [
            OptionSpec(
                "flow", value: "flow",
                help:
                    "Only this flow's dead-letter topics: its workers' (<changes>.dlq) and apply's on its target (<inbound>.dlq). Default: both flows."
            ),
            OptionSpec("bootstrap-servers", value: "host:port,...", help: "The cluster (or P2C_BOOTSTRAP_SERVERS)."),
            OptionSpec("samples", value: "n", help: "Samples shown per error code.", default: "3"),
            OptionSpec("show-payload", help: "Also print each sample's value (payloads stay hidden otherwise)."),
            OptionSpec("code", value: "code", help: "Only letters with this error code."),
            OptionSpec(
                "since", value: "time", help: "Only letters dead-lettered at or after this ISO 8601 time."),
            OptionSpec(
                "stream", value: "stream", help: "Only this stream's dead-letter topics. Default: every stream."),
            OptionSpec("key", value: "key", help: "Only the letters of this record key (<company>/<number>)."),
            OptionSpec("batch", value: "n", help: "redrive: letters per transaction (default 500)."),
            OptionSpec("dry-run", help: "redrive: show what would be re-driven and change nothing."),
            OptionSpec("topics", value: "dir", help: "Folder of topic declarations. Default: $P2C_TOPICS or ./Topics."),
        ],
        discussion: """
            list shows the letters not yet re-driven, the workers' and apply's. redrive re-publishes each
            selected letter's key, value and headers to its source topic and partition (a worker's to its
            changes topic, apply's to its inbound topic, where apply writes it again), marked
            p2c_redrive_count, p2c_redrive_origin and p2c_redriven_from, and marks the letter done in the
            same transaction; a letter that fails
            again comes back as a new letter. A redrive stopped midway can simply be run again. The
            workers map a re-driven event with the ids of its first time, so targets drop repeats.
            """,
        subcommands: ["list", "redrive"]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let catalog = try TopicCatalog.load(arguments, command: spec.name)
        let flows = try arguments.choice("flow", as: Flow.self).map { [$0] } ?? Flow.allCases
        let samples = try arguments.integer("samples", in: 0...100) ?? 3
        let showPayload = arguments.flag("show-payload")
        let since = try arguments.time("since")
        let batch = try arguments.integer("batch", in: 1...100_000) ?? 500
        let subcommand = arguments.subcommand ?? "list"
        if subcommand == "list" {
            for option in ["batch"] where arguments.string(option) != nil {
                throw UsageError("option '--\(option)' is for redrive", command: spec.name)
            }
        }
        guard let kafka = ConfigurationFile.kafka(arguments, clientID: "p2c-dlq") else {
            throw UsageError(
                "\(subcommand) needs --bootstrap-servers (or P2C_BOOTSTRAP_SERVERS)", command: spec.name)
        }
        // The workers' letters (`<changes>.dlq`) and apply's, the writes the target refused (`<inbound>.dlq`).
        let stream = try arguments.choice("stream", as: SyncStream.self)
        let topics = flows.flatMap { flow in
            catalog.routes(for: flow).filter { stream == nil || $0.stream == stream }.flatMap { route in
                [route.deadLetters]
                    + [catalog.topic(.inboundDLQ, side: flow.target, stream: route.stream)].compactMap { $0 }
            }
        }
        if subcommand == "redrive" {
            let redrive = DeadLetterRedrive(
                topics: topics, kafka: kafka, code: arguments.string("code"), key: arguments.string("key"),
                since: since, batch: batch, dryRun: arguments.flag("dry-run"))
            _ = try await Blocking.run {
                try redrive.run { line in
                    print(line)
                    fflush(nil)
                }
            }
            return 0
        }
        var configuration = ConsumerConfiguration(kafka: kafka, groupID: "p2c-dlq-list-\(UUID().uuidString)")
        configuration.reportPartitionEnd = true
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(configuration: configuration)
        } catch {
            throw UsageError(error.message, command: spec.name)
        }
        let contents = try await Blocking.run { try DeadLetterRedrive.read(consumer, topics: topics) }
        let code = arguments.string("code")
        let key = arguments.string("key")
        let letters = Dictionary(
            grouping: contents.pending.filter { DeadLetterRedrive.selects($0, code: code, key: key, since: since) },
            by: \.topic)
        for topic in topics {
            let records = letters[topic.name] ?? []
            let redriven = contents.redriven.filter { $0.topicPartition.topic == topic.name }.count
            print(
                "\(topic.name): \(records.count) dead letter\(records.count == 1 ? "" : "s")"
                    + (redriven > 0 ? " (\(redriven) re-driven before, not shown)" : ""))
            guard !records.isEmpty else { continue }
            for partition in Set(records.map(\.partition)).sorted() {
                let offsets = records.filter { $0.partition == partition }.map(\.offset)
                print("  partition \(partition): offsets \(offsets.min()!)…\(offsets.max()!)")
            }
            let byCode = Dictionary(grouping: records) { $0.header(DeadLetter.codeHeader)?.text ?? "(no code)" }
            for (code, group) in byCode.sorted(by: { $0.key < $1.key }) {
                print("  \(code): \(group.count)")
                for record in group.prefix(samples) {
                    let key = record.key.map { String(decoding: $0, as: UTF8.self) } ?? "(no key)"
                    let source = [
                        DeadLetter.sourceTopicHeader, DeadLetter.sourcePartitionHeader, DeadLetter.sourceOffsetHeader,
                    ]
                    .map { record.header($0)?.text ?? "?" }
                    print(
                        "    [\(record.partition):\(record.offset)] key \(key) from \(source[0])[\(source[1])]@\(source[2]): \(record.header(DeadLetter.messageHeader)?.text ?? "")"
                    )
                    if showPayload {
                        print("      value: \(record.value.map { String(decoding: $0, as: UTF8.self) } ?? "(null)")")
                    }
                }
            }
        }
        return 0
    }
}
