import Capture
import Connectors
import Foundation
import Kafka
import Membership
import Operations
import Runtime
import Topology

/// `p2c capture`: one member of a side's capture fleet: the system's changes → `<side>.<stream>.changes`.
enum CaptureCommand {
    static let spec = CommandSpec(
        name: "capture",
        summary:
            "Publish a system's changes (Dataverse change tracking or webhooks, F&O data events) to its changes topics.",
        options: [
            OptionSpec(
                "side", value: "side",
                help: "crm (Dataverse) or erp (Finance and Operations). Or P2C_SIDE, or \"side\" in the file."),
            OptionSpec("bootstrap-servers", value: "host:port,...", help: "Kafka brokers (or P2C_BOOTSTRAP_SERVERS)."),
            OptionSpec("config", value: "file", help: "JSON configuration file."),
            OptionSpec(
                "streams", value: "a,b", help: "Streams to capture; default: every stream the side is a source of."),
            OptionSpec(
                "company", value: "id",
                help:
                    "crm: legal entity of the rows (ce_company). Or P2C_CAPTURE_COMPANY. erp: each record's dataAreaId."
            ),
            OptionSpec(
                "poll-interval-ms", value: "ms", help: "How often an idle table's delta link is read. Default: 5000."),
            OptionSpec("group", value: "id", help: "Capture group. Default: p2c-capture-<side>."),
            OptionSpec(
                "mode", value: "mode",
                help:
                    "poll (change tracking) or webhook (receive RemoteExecutionContext posts). Or P2C_CAPTURE_MODE. Default: poll on crm, webhook (data events) on erp."
            ),
            OptionSpec(
                "webhook-port", value: "port",
                help:
                    "--mode webhook: the port receiving posts (key from P2C_CAPTURE_WEBHOOK_KEY or _KEY_FILE). Default: 8080."
            ),
            OptionSpec(
                "recheck-ms", value: "ms",
                help:
                    "--side erp: read each record published again this long after; publish its state again if it changed (several receivers). Default: 0 (off)."
            ),
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
            The Dataverse connection is apply's (P2C_DATAVERSE_URL, _TENANT_ID, _CLIENT_ID, _CLIENT_SECRET or
            _CLIENT_SECRET_FILE, _AUTHORITY, or the file's "dataverse" object). Changes made by the apply
            identities (P2C_DATAVERSE_APPLY_CLIENT_IDS, or dataverse.applyClientIds) are published with
            ce_origin p2c, so that the workers drop them. Each table's delta link is kept in
            p2c.capture.state, written in the same Kafka transaction as the events it produced; the
            tables are shared among the members of the capture group. --side erp receives F&O's data events
            (--mode webhook only) with the P2C_FNO_* connection; changes by P2C_FNO_APPLY_CLIENT_IDS are
            ce_origin p2c. SIGTERM exits 0.
            """
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let environment = ProcessInfo.processInfo.environment
        let file = try ConfigurationFile.load(arguments.string("config"), command: spec.name, arguments: arguments)
        let settings = file.settings
        var configuration = CaptureConfiguration()
        let side = file.side(or: .crm)
        let system = Systems.adapter(for: side)
        configuration.side = side
        file.applyMemberSettings(to: &configuration)
        configuration.generation = file.mapping.generation
        configuration.listenAddress = file.worker.listenAddress
        configuration.company = settings.string("company") ?? ""
        configuration.pageSize = settings.integer("pageSize") ?? configuration.pageSize
        configuration.recheckAfter = settings.milliseconds("recheckMs") ?? configuration.recheckAfter
        configuration.webhookMaxBodyBytes = settings.integer("webhookMaxBodyBytes") ?? configuration.webhookMaxBodyBytes
        configuration.webhookMaxRequests = settings.integer("webhookMaxRequests") ?? configuration.webhookMaxRequests
        configuration.pollInterval = settings.milliseconds("pollIntervalMs") ?? configuration.pollInterval
        let mode = settings.string("mode") ?? system.changeModes[0]
        let connection: ConnectionSettings
        do {
            // Rows that carry no company of their own are stamped with the deployment's.
            guard !configuration.company.isEmpty || system.companyField != nil else {
                throw UsageError("company is required: --company, P2C_CAPTURE_COMPANY or \"company\" in the file")
            }
            guard configuration.recheckAfter == .zero || system.rechecksPosts else {
                throw UsageError("recheckMs applies to --side erp (F&O's data events, read by their key)")
            }
            guard system.changeModes.contains(mode) else {
                throw UsageError("mode poll is Dataverse change tracking; erp captures F&O's data events (webhook)")
            }
            connection = try ConnectionSettings.load(system, file: file.object, environment: environment)
            if mode == "webhook" { _ = try webhookKey(environment) }
        } catch let error as UsageError {
            throw UsageError(error.message, command: spec.name)
        }
        let catalog = try TopicCatalog.load(arguments, command: spec.name)
        let log = Log([("component", "capture")])
        let http = HTTPClient(log: log)
        let client = ServiceClient(settings: connection.settings, http: http, api: system.api)
        try await ConnectionSettings.check(client, settings: connection, log: log, command: spec.name)
        // The apply identities as the system names them in its changes: their changes are p2c's own.
        let applyUsers: Set<UUID>
        do {
            applyUsers = try await system.applyIdentities(connection.applyClientIDs, client: client) { id in
                log.warning("no application user for an apply client id", [("client_id", .string("\(id)"))])
            }
        } catch {
            throw UsageError("\(system.settingsKey): looking up the apply identities: \(error)", command: spec.name)
        }
        if mode == "webhook" {
            return try await webhook(
                arguments, configuration: configuration, catalog: catalog,
                reader: system.contextReader(
                    client: client, streams: configuration.streams, generation: configuration.generation),
                applyUsers: applyUsers, system: system.metricsName, file: file, http: http, log: log)
        }
        let member: CaptureMember
        do {
            member = try CaptureMember(
                configuration: configuration, adapter: system, catalog: catalog, client: client,
                applyUsers: applyUsers, log: log)
        } catch let error as KafkaError {
            throw UsageError(error.message, command: spec.name)
        } catch let error as UsageError {
            throw UsageError(error.message, command: spec.name)
        }
        let metrics = member.metrics
        let probes = FleetMember.Probes(
            port: file.worker.metricsPort, host: file.worker.listenAddress, liveness: metrics.liveness,
            watchdog: file.worker.watchdog
        ) {
            let side = "side=\"\(system.side.rawValue)\""
            return metrics.exposition(labels: side) + http.metrics.exposition(labels: side)
                + ServiceMetrics.exposition(system: system.metricsName, labels: side, member.requests)
        }
        return try await FleetMember.serve(
            probes, command: spec.name, name: "capture", log: log, budget: configuration.shutdownTimeout,
            body: { try member.run() }, stop: { member.stop() })
    }

    /// `--mode webhook`: the receiver, until SIGTERM.
    static func webhook(
        _ arguments: ParsedArguments, configuration: CaptureConfiguration, catalog: TopicCatalog,
        reader: any ContextReader, applyUsers: Set<UUID>, system: String, file: ConfigurationFile, http: HTTPClient,
        log: Log
    ) async throws -> Int32 {
        let key = try webhookKey(ProcessInfo.processInfo.environment)
        let port = file.settings.integer("webhookPort") ?? 8_080
        let receiver: WebhookReceiver
        do {
            receiver = try WebhookReceiver(
                configuration: configuration, catalog: catalog, reader: reader, applyUsers: applyUsers, key: key,
                port: port, deliveryTimeout: .seconds(5), log: log)
        } catch let error as KafkaError {
            throw UsageError(error.message, command: spec.name)
        } catch {
            throw UsageError("webhook port \(port): \(error)", command: spec.name)
        }
        log.info("webhook receiver listening", [("port", .int(Int64(receiver.port)))])
        let metrics = receiver.metrics
        let probes = FleetMember.Probes(
            port: file.worker.metricsPort, host: file.worker.listenAddress, liveness: metrics.liveness,
            watchdog: file.worker.watchdog
        ) {
            let side = "side=\"\(configuration.side.rawValue)\""
            return metrics.exposition(labels: "\(side),mode=\"webhook\"") + http.metrics.exposition(labels: side)
                + ServiceMetrics.exposition(system: system, labels: side, receiver.requests)
        }
        let stopped = DispatchSemaphore(value: 0)
        let status = try await FleetMember.serve(
            probes, command: spec.name, name: "webhook receiver", log: log, budget: configuration.shutdownTimeout,
            body: { stopped.wait() },
            stop: {
                // Requests in flight finish (each bounded by its delivery timeout) before the server closes.
                receiver.stop()
                stopped.signal()
            })
        if status == 0 {
            log.info("webhook receiver stopped", [("published", .int(Int64(metrics.published.value)))])
        }
        return status
    }

    /// The receiver's key: `P2C_CAPTURE_WEBHOOK_KEY`, or the file `P2C_CAPTURE_WEBHOOK_KEY_FILE` names.
    static func webhookKey(_ environment: [String: String]) throws -> String {
        var key = environment["P2C_CAPTURE_WEBHOOK_KEY"] ?? ""
        if key.isEmpty, let path = environment["P2C_CAPTURE_WEBHOOK_KEY_FILE"] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw UsageError("P2C_CAPTURE_WEBHOOK_KEY_FILE: cannot read \(path)", command: spec.name)
            }
            key = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard !key.isEmpty else {
            throw UsageError(
                "--mode webhook needs P2C_CAPTURE_WEBHOOK_KEY (or _KEY_FILE): the registration's key",
                command: spec.name)
        }
        return key
    }
}
