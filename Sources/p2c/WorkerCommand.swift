import Foundation
import Kafka
import Membership
import ProspectToCash
import Runtime
import Synchronization
import Topology
import Worker

/// `p2c worker`: one worker of a flow's fleet.
enum WorkerCommand {
    static let spec = CommandSpec(
        name: "worker",
        summary: "Run one worker of a flow's fleet: consume changes, map them, produce to the other side.",
        options: [
            OptionSpec("flow", value: "flow", help: "crm-to-erp or erp-to-crm (or P2C_FLOW, or \"flow\" in the file)."),
            OptionSpec("bootstrap-servers", value: "host:port,...", help: "Kafka brokers (or P2C_BOOTSTRAP_SERVERS)."),
            OptionSpec("config", value: "file", help: "JSON configuration file."),
            OptionSpec("streams", value: "a,b", help: "Streams to consume; default: every stream of the flow."),
            OptionSpec("delivery", value: "mode", help: "exactly-once or at-least-once.", default: nil),
            OptionSpec("group", value: "id", help: "Consumer group. Default: p2c-<flow>."),
            OptionSpec(
                "transactional-id", value: "id",
                help: "Unique per live worker. Default: p2c-<flow>-<host name>-<random>, new at every start."),
            OptionSpec(
                "group-instance-id", value: "id",
                help: "Static group membership (e.g. the pod name); unique per live worker. Default: none."),
            OptionSpec("topics", value: "dir", help: "Folder of topic declarations. Default: $P2C_TOPICS or ./Topics."),
            OptionSpec(
                "metrics-port", value: "port", help: "Port for /metrics, /healthz, /readyz; 0 picks one. Default: 9464."
            ),
            OptionSpec(
                "listen-address", value: "ipv4",
                help:
                    "Address the ports listen on (or P2C_LISTEN_ADDRESS, listenAddress). Default: 0.0.0.0 (every interface)."
            ),
        ],
        discussion: """
            Settings come from the file, then P2C_* environment variables, then these flags. Any librdkafka
            property passes through as "kafka": {"<property>": "<value>"} or P2C_KAFKA_<PROPERTY>
            (P2C_KAFKA_SASL_PASSWORD is sasl.password). SIGTERM or SIGINT finishes the batch, leaves the
            group and exits 0.
            """
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let file = try ConfigurationFile.load(arguments.string("config"), command: spec.name, arguments: arguments)
        let catalog = try TopicCatalog.load(arguments, command: spec.name)
        let log = Log([("component", "worker")])
        let worker: Worker
        do {
            worker = try Worker(configuration: file.worker, catalog: catalog, log: log)
        } catch let error as KafkaError {
            throw UsageError(error.message, command: spec.name)
        } catch let error as UsageError {
            throw UsageError(error.message, command: spec.name)
        } catch let error as ConfigurationError {
            throw UsageError("mapping.\(error)", command: spec.name)
        }
        let metrics = worker.metrics
        let probes = FleetMember.Probes(
            port: file.worker.metricsPort, host: file.worker.listenAddress, liveness: metrics.liveness,
            watchdog: file.worker.watchdog
        ) { metrics.exposition }
        return try await FleetMember.serve(
            probes, command: spec.name, name: "worker", log: log, budget: file.worker.shutdownTimeout,
            body: { try worker.run() }, stop: { worker.stop() })
    }
}
