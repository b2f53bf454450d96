import Foundation
import Kafka
import Runtime
import Topology

/// `p2c dlq list`: what the dead-letter topics hold.
enum DLQCommand {
    static let spec = CommandSpec(
        name: "dlq",
        summary: "List dead letters per topic: counts by error code, offsets, samples.",
        options: [
            OptionSpec("flow", value: "flow", help: "Only this flow's dead-letter topics. Default: both flows."),
            OptionSpec("bootstrap-servers", value: "host:port,...", help: "The cluster (or P2C_BOOTSTRAP_SERVERS)."),
            OptionSpec("samples", value: "n", help: "Samples shown per error code.", default: "3"),
            OptionSpec("show-payload", help: "Also print each sample's value (payloads stay hidden otherwise)."),
            OptionSpec("topics", value: "dir", help: "Folder of topic declarations. Default: $P2C_TOPICS or ./Topics."),
        ],
        subcommands: ["list"]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let catalog = try TopicCatalog.load(arguments, command: spec.name)
        let flows = try arguments.choice("flow", as: Flow.self).map { [$0] } ?? Flow.allCases
        let samples = try arguments.integer("samples", in: 0...100) ?? 3
        let showPayload = arguments.flag("show-payload")
        guard let kafka = ConfigurationFile.kafka(arguments, clientID: "p2c-dlq") else {
            throw UsageError("list needs --bootstrap-servers (or P2C_BOOTSTRAP_SERVERS)", command: spec.name)
        }
        let topics = flows.flatMap { catalog.routes(for: $0).map(\.deadLetters) }
        var configuration = ConsumerConfiguration(kafka: kafka, groupID: "p2c-dlq-list-\(UUID().uuidString)")
        configuration.reportPartitionEnd = true
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(configuration: configuration)
        } catch {
            throw UsageError(error.message, command: spec.name)
        }
        let letters = try await Blocking.run { try readAll(consumer, topics: topics) }
        for topic in topics {
            let records = letters[topic.name] ?? []
            print("\(topic.name): \(records.count) dead letter\(records.count == 1 ? "" : "s")")
            guard !records.isEmpty else { continue }
            for partition in Set(records.map(\.partition)).sorted() {
                let offsets = records.filter { $0.partition == partition }.map(\.offset)
                print("  partition \(partition): offsets \(offsets.min()!)…\(offsets.max()!)")
            }
            let byCode = Dictionary(grouping: records) { $0.header("p2c_error_code")?.text ?? "(no code)" }
            for (code, group) in byCode.sorted(by: { $0.key < $1.key }) {
                print("  \(code): \(group.count)")
                for record in group.prefix(samples) {
                    let key = record.key.map { String(decoding: $0, as: UTF8.self) } ?? "(no key)"
                    let source = ["p2c_source_topic", "p2c_source_partition", "p2c_source_offset"]
                        .map { record.header($0)?.text ?? "?" }
                    print(
                        "    [\(record.partition):\(record.offset)] key \(key) from \(source[0])[\(source[1])]@\(source[2]): \(record.header("p2c_error_message")?.text ?? "")"
                    )
                    if showPayload {
                        print("      value: \(record.value.map { String(decoding: $0, as: UTF8.self) } ?? "(null)")")
                    }
                }
            }
        }
        return 0
    }

    /// Reads every partition of `topics` from the beginning to its end.
    static func readAll(_ consumer: KafkaConsumer, topics: [TopicDeclaration]) throws -> [String: [KafkaRecord]] {
        var result: [String: [KafkaRecord]] = [:]
        try consumer.readToEnd(
            topics.flatMap { topic in
                (0..<topic.partitions).map {
                    TopicPartitionOffset(topic.name, Int32($0), offset: KafkaOffset.beginning)
                }
            }
        ) { result[$0.topic, default: []].append($0) }
        return result
    }
}
