import Apply
import Connectors
import Foundation
import Kafka
import Membership
import Operations
import Runtime
import Topology

/// `p2c apply`: one member of a side's apply fleet: `<side>.<stream>.inbound` → the system's API.
enum ApplyCommand {
    static let spec = CommandSpec(
        name: "apply",
        summary: "Write what arrives on a side's inbound topics into that system (Dataverse or F&O).",
        options: [
            OptionSpec(
                "side", value: "side",
                help: "crm (Dataverse) or erp (Finance and Operations). Or P2C_SIDE, or \"side\" in the file."),
            OptionSpec("bootstrap-servers", value: "host:port,...", help: "Kafka brokers (or P2C_BOOTSTRAP_SERVERS)."),
            OptionSpec("config", value: "file", help: "JSON configuration file."),
            OptionSpec("streams", value: "a,b", help: "Streams to apply; default: every stream arriving for the side."),
            OptionSpec("group", value: "id", help: "Consumer group. Default: p2c-apply-<side>."),
            OptionSpec(
                "max-concurrency", value: "n", help: "$batch requests in flight at most (AIMD below it). Default: 8."),
            OptionSpec(
                "reference-wait-ms", value: "ms",
                help: "How long a write waits for a row it refers to before the DLQ. Default: 600000."),
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
            The Dataverse connection: P2C_DATAVERSE_URL, P2C_DATAVERSE_TENANT_ID, P2C_DATAVERSE_CLIENT_ID,
            P2C_DATAVERSE_CLIENT_SECRET (or P2C_DATAVERSE_CLIENT_SECRET_FILE), P2C_DATAVERSE_AUTHORITY
            (default https://login.microsoftonline.com), or a "dataverse" object in the file with the same
            keys (url, tenantId, clientId, clientSecretFile, authority). The F&O connection (--side erp):
            the same with P2C_FNO_* and an "fno" object. Writes the system refuses go to
            <inbound topic>.dlq with the HTTP status and the system's error code. SIGTERM finishes the
            writes in flight, commits, leaves the group and exits 0.
            """
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let environment = ProcessInfo.processInfo.environment
        guard environment["P2C_REFERENCE_WAIT_MS"] == nil else {
            throw UsageError("P2C_REFERENCE_WAIT_MS is now P2C_APPLY_REFERENCE_WAIT_MS", command: spec.name)
        }
        let file = try ConfigurationFile.load(arguments.string("config"), command: spec.name, arguments: arguments)
        let settings = file.settings
        var configuration = ApplyConfiguration()
        let side = file.side(or: .crm)
        let system = Systems.adapter(for: side)
        configuration.side = side
        file.applyMemberSettings(to: &configuration)
        configuration.maxConcurrency = settings.integer("maxConcurrency") ?? configuration.maxConcurrency
        configuration.batchDocuments = settings.integer("batchDocuments") ?? system.batchDocuments
        configuration.referenceWait = settings.milliseconds("referenceWaitMs") ?? configuration.referenceWait
        configuration.unavailableWait = settings.milliseconds("unavailableWaitMs") ?? configuration.unavailableWait
        let connection: ConnectionSettings
        do {
            connection = try ConnectionSettings.load(system, file: file.object, environment: environment)
        } catch let error as UsageError {
            throw UsageError(error.message, command: spec.name)
        }
        let catalog = try TopicCatalog.load(arguments, command: spec.name)
        let log = Log([("component", "apply")])
        var httpConfiguration = HTTPClient.Configuration()
        // Apply paces itself by the 429s (pauses, AIMD); the client does not wait them out.
        httpConfiguration.retriesThrottled = false
        httpConfiguration.maxConcurrency = configuration.maxConcurrency
        let http = HTTPClient(configuration: httpConfiguration, log: log)
        // One client per identity; each is checked at start. They share the table definitions.
        let clients = connection.identities.map { ServiceClient(settings: $0, http: http, api: system.api) }
        for client in clients {
            try await ConnectionSettings.check(client, settings: connection, log: log, command: spec.name)
        }
        let sinks = system.sinks(clients: clients)
        let applier: Applier
        do {
            applier = try Applier(configuration: configuration, catalog: catalog, sinks: sinks.sinks, log: log)
        } catch let error as KafkaError {
            throw UsageError(error.message, command: spec.name)
        } catch let error as UsageError {
            throw UsageError(error.message, command: spec.name)
        }
        let metrics = applier.metrics
        let probes = FleetMember.Probes(
            port: file.worker.metricsPort, host: file.worker.listenAddress, liveness: metrics.liveness,
            watchdog: file.worker.watchdog
        ) {
            metrics.exposition + http.metrics.exposition(labels: "side=\"\(side.rawValue)\"")
                + ServiceMetrics.exposition(
                    system: system.metricsName, labels: "side=\"\(side.rawValue)\"", sinks.requests())
        }
        return try await FleetMember.serve(
            probes, command: spec.name, name: "apply", log: log, budget: configuration.shutdownTimeout,
            body: { try applier.run() }, stop: { applier.stop() })
    }
}
