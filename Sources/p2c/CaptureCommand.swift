import Capture
import Connectors
import Foundation
import Kafka
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

    static let integers: [(key: String, variable: String, flag: String?, range: ClosedRange<Int>)] = [
        ("pollIntervalMs", "P2C_CAPTURE_POLL_INTERVAL_MS", "poll-interval-ms", 100...3_600_000),
        ("pageSize", "P2C_CAPTURE_PAGE_SIZE", nil, 1...5_000),
        ("recheckMs", "P2C_CAPTURE_RECHECK_MS", "recheck-ms", 0...600_000),
        ("webhookMaxBodyBytes", "P2C_CAPTURE_WEBHOOK_MAX_BODY_BYTES", nil, 1_024...16_777_216),
        ("webhookMaxRequests", "P2C_CAPTURE_WEBHOOK_MAX_REQUESTS", nil, 1...256),
    ]

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        var file = try ConfigurationFile.load(arguments.string("config"), command: spec.name)
        let environment = ProcessInfo.processInfo.environment
        var configuration = CaptureConfiguration()
        let connection: ConnectionSettings
        let mode: String
        let system: any SystemAdapter
        do {
            for key in ["bootstrap-servers", "streams", "group", "metrics-port", "listen-address"] {
                if let value = arguments.string(key) { try file.set(key, value) }
            }
            let sideText =
                arguments.string("side") ?? environment["P2C_SIDE"] ?? file.object["side"] as? String ?? "crm"
            guard let parsed = Side(rawValue: sideText) else {
                throw UsageError("side must be crm (Dataverse) or erp (Finance and Operations), got '\(sideText)'")
            }
            system = adapter(for: parsed)
            configuration.side = parsed
            configuration.streams = file.worker.streams
            configuration.generation = file.mapping.generation
            configuration.kafka = file.worker.kafka
            configuration.groupID = file.worker.groupID
            configuration.sessionTimeoutMilliseconds = file.worker.sessionTimeoutMilliseconds
            configuration.shutdownTimeoutMilliseconds = file.worker.shutdownTimeoutMilliseconds
            configuration.company =
                arguments.string("company") ?? environment["P2C_CAPTURE_COMPANY"] ?? file.object["company"] as? String
                ?? ""
            // Rows that carry no company of their own are stamped with the deployment's.
            guard !configuration.company.isEmpty || system.companyField != nil else {
                throw UsageError("company is required: --company, P2C_CAPTURE_COMPANY or \"company\" in the file")
            }
            for (key, number) in try file.integers(integers, arguments: arguments, environment: environment) {
                switch key {
                case "pageSize": configuration.pageSize = number
                case "recheckMs": configuration.recheckMilliseconds = number
                case "webhookMaxBodyBytes": configuration.webhookMaxBodyBytes = number
                case "webhookMaxRequests": configuration.webhookMaxRequests = number
                default: configuration.pollIntervalMilliseconds = number
                }
            }
            configuration.listenAddress = file.worker.listenAddress
            guard configuration.recheckMilliseconds == 0 || system.rechecksPosts else {
                throw UsageError("recheckMs applies to --side erp (F&O's data events, read by their key)")
            }
            mode =
                arguments.string("mode") ?? environment["P2C_CAPTURE_MODE"] ?? file.object["mode"] as? String
                ?? system.changeModes[0]
            guard mode == "poll" || mode == "webhook" else {
                throw UsageError("mode must be poll or webhook, got '\(mode)'")
            }
            guard system.changeModes.contains(mode) else {
                throw UsageError("mode poll is Dataverse change tracking; erp captures F&O's data events (webhook)")
            }
            connection = try ConnectionSettings.load(system, file: file.object, environment: environment)
            if mode == "webhook" { _ = try webhookEndpoint(arguments) }
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
        let watchdog = Duration.seconds(file.worker.watchdogSeconds)
        let probes: HTTPResponder
        do {
            probes = try HTTPResponder.probes(
                port: file.worker.metricsPort, host: file.worker.listenAddress, liveness: metrics.liveness,
                watchdog: watchdog
            ) {
                let side = "side=\"\(system.side.rawValue)\""
                return metrics.exposition(labels: side) + http.metrics.exposition(labels: side)
                    + ServiceMetrics.exposition(system: system.metricsName, labels: side, member.requests)
            }
        } catch {
            throw UsageError("metrics port \(file.worker.metricsPort): \(error)", command: spec.name)
        }
        defer { probes.stop() }
        log.info("http listening", [("port", .int(Int64(probes.port)))])
        let failure = await FleetMember.run(
            log: log, budget: .milliseconds(configuration.shutdownTimeoutMilliseconds), name: "capture member",
            body: { try member.run() }, stop: { member.stop() })
        if let failure {
            log.error("capture failed", [("error", .string(failure))])
            return 1
        }
        return 0
    }

    /// `--mode webhook`: the receiver, until SIGTERM.
    static func webhook(
        _ arguments: ParsedArguments, configuration: CaptureConfiguration, catalog: TopicCatalog,
        reader: any ContextReader, applyUsers: Set<UUID>, system: String, file: ConfigurationFile, http: HTTPClient,
        log: Log
    ) async throws -> Int32 {
        let (key, port) = try webhookEndpoint(arguments)
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
        let probes: HTTPResponder
        do {
            probes = try HTTPResponder.probes(
                port: file.worker.metricsPort, host: file.worker.listenAddress, liveness: metrics.liveness,
                watchdog: .seconds(file.worker.watchdogSeconds)
            ) {
                let side = "side=\"\(configuration.side.rawValue)\""
                return metrics.exposition(labels: "\(side),mode=\"webhook\"") + http.metrics.exposition(labels: side)
                    + ServiceMetrics.exposition(system: system, labels: side, receiver.requests)
            }
        } catch {
            throw UsageError("metrics port \(file.worker.metricsPort): \(error)", command: spec.name)
        }
        defer { probes.stop() }
        let stopped = DispatchSemaphore(value: 0)
        let failure = await FleetMember.run(
            log: log, budget: .milliseconds(configuration.shutdownTimeoutMilliseconds), name: "webhook receiver",
            body: { stopped.wait() },
            stop: {
                // Requests in flight finish (each bounded by its delivery timeout) before the server closes.
                receiver.stop()
                stopped.signal()
            })
        if let failure {
            log.error("capture failed", [("error", .string(failure))])
            return 1
        }
        log.info("webhook receiver stopped", [("published", .int(Int64(metrics.published.value)))])
        return 0
    }

    /// The receiver's key (`P2C_CAPTURE_WEBHOOK_KEY` or `_KEY_FILE`) and port.
    static func webhookEndpoint(_ arguments: ParsedArguments) throws -> (key: String, port: Int) {
        let environment = ProcessInfo.processInfo.environment
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
        var port = 8_080
        if let text = environment["P2C_CAPTURE_WEBHOOK_PORT"] {
            guard let number = Int(text), (0...65_535).contains(number) else {
                throw UsageError(
                    "P2C_CAPTURE_WEBHOOK_PORT must be an integer from 0 to 65535, got '\(text)'", command: spec.name)
            }
            port = number
        }
        return (key, try arguments.integer("webhook-port", in: 0...65_535) ?? port)
    }
}
