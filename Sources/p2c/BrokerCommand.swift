import Demos
import Foundation
import Kafka
import Runtime
import Topology

/// `p2c broker`: the embedded Kafka-protocol cluster with every `Topics/` topic.
enum BrokerCommand {
    static let spec = CommandSpec(
        name: "broker",
        summary: "Run the embedded Kafka-protocol cluster with every Topics/ topic created.",
        options: [
            OptionSpec("brokers", value: "n", help: "Number of brokers, 1 to 3.", default: "1"),
            OptionSpec("topics", value: "dir", help: "Folder of topic declarations. Default: $P2C_TOPICS or ./Topics."),
        ],
        discussion: """
            Prints bootstrap.servers as the first line of standard output, then runs until SIGINT or
            SIGTERM. Any Kafka client can connect to it, e.g. kcat -b "$(head -1 broker.out)" -L.
            """
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let brokers = try arguments.integer("brokers", in: 1...3)!
        let catalog = try TopicCatalog.load(arguments, command: spec.name)
        let log = Log([("component", "broker")])
        let cluster = try EmbeddedCluster(brokers: brokers)
        try cluster.createTopics(catalog)
        // Unbuffered, so a script reading the first line gets it at once.
        FileHandle.standardOutput.write(Data((cluster.bootstrapServers + "\n").utf8))
        log.info(
            "embedded broker ready",
            [
                ("bootstrap.servers", .string(cluster.bootstrapServers)), ("brokers", .int(Int64(brokers))),
                ("topics", .int(Int64(catalog.topics.count))),
                ("partitions", .int(Int64(catalog.topics.reduce(0) { $0 + $1.partitions }))),
            ])
        let signal = await Signals.termination()
        log.info("stopping", [("signal", .int(Int64(signal)))])
        return 0
    }
}

extension TopicCatalog {
    /// The catalog of `--topics` (or the default folder); a bad declaration is a usage error naming it.
    static func load(_ arguments: ParsedArguments, command: String) throws(UsageError) -> TopicCatalog {
        do {
            return try load(directory: arguments.string("topics") ?? defaultDirectory())
        } catch {
            throw UsageError(error.message, command: command)
        }
    }
}
