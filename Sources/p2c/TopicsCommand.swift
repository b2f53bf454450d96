import Foundation
import Kafka
import Runtime
import Topology

/// `p2c topics list | plan | apply`: `Topics/` against a cluster.
enum TopicsCommand {
    static let spec = CommandSpec(
        name: "topics",
        summary: "List the Topics/ declarations, plan or apply them on a cluster.",
        options: [
            OptionSpec(
                "bootstrap-servers", value: "host:port,...",
                help: "The cluster (or P2C_BOOTSTRAP_SERVERS); list works without."),
            OptionSpec("topics", value: "dir", help: "Folder of topic declarations. Default: $P2C_TOPICS or ./Topics."),
        ],
        discussion: """
            list   every declared topic, and whether the cluster has it when one is given
            plan   what apply would create, and topics whose partition count differs (never changed)
            apply  creates the missing topics through the Admin API (CreateTopics)
            Any librdkafka property passes through as P2C_KAFKA_<PROPERTY> (SASL, SSL).
            """,
        subcommands: ["list", "plan", "apply"]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let catalog = try TopicCatalog.load(arguments, command: spec.name)
        let subcommand = arguments.subcommand ?? "list"
        guard let kafka = ConfigurationFile.kafka(arguments, clientID: "p2c-topics") else {
            guard subcommand == "list" else {
                throw UsageError(
                    "\(subcommand) needs --bootstrap-servers (or P2C_BOOTSTRAP_SERVERS)", command: spec.name)
            }
            for topic in catalog.topics { print(describe(topic)) }
            return 0
        }
        let admin: KafkaAdmin
        do {
            admin = try KafkaAdmin(configuration: kafka)
        } catch {
            throw UsageError(error.message, command: spec.name)
        }
        let existing = try await Blocking.run { try admin.topics() }
        let plan = TopicPlan(catalog: catalog, existing: existing)
        switch subcommand {
        case "list":
            for topic in catalog.topics {
                let state = existing[topic.name].map { "exists, \($0) partitions" } ?? "missing"
                print(describe(topic) + "  [\(state)]")
            }
            return 0
        case "plan":
            plan.lines.forEach { print($0) }
            print("\(plan.missing.count) to create, \(plan.steps.count - plan.missing.count) in place")
            return 0
        default:
            plan.lines.forEach { print($0) }
            guard !plan.missing.isEmpty else {
                print("nothing to create")
                return 0
            }
            if let cluster = await (try? Blocking.run { admin.clusterID() }) ?? nil, cluster.hasPrefix("mockCluster") {
                FileHandle.standardError.write(
                    Data(
                        "p2c topics: this is the embedded broker (librdkafka's mock), which cannot create topics (no CreateTopics); p2c broker creates every Topics/ topic when it starts\n"
                            .utf8))
                return 1
            }
            let results = try await Blocking.run {
                try admin.create(
                    plan.missing.map {
                        KafkaAdmin.NewTopic(
                            name: $0.name, partitions: $0.partitions, replicationFactor: $0.replicationFactor,
                            config: $0.config)
                    })
            }
            var failed = 0
            for topic in plan.missing {
                if let error = results[topic.name] ?? nil {
                    failed += 1
                    print("failed   \(topic.name)  \(error)")
                } else {
                    print("created  \(topic.name)")
                }
            }
            return failed == 0 ? 0 : 1
        }
    }

    private static func describe(_ topic: TopicDeclaration) -> String {
        "\(topic.name)  \(topic.stream?.rawValue ?? "p2c") \(topic.side?.rawValue ?? "-") \(topic.role.rawValue)  partitions=\(topic.partitions) "
            + "replicas=\(topic.replicationFactor) retention.ms=\(topic.retentionMs) cleanup.policy=\(topic.cleanupPolicy) "
            + "key=\(topic.keyScheme)"
    }
}
