import Capture
import Connectors
import Foundation
import Kafka
import Membership
import Operations
import Runtime
import Synchronization
import Topology

/// `p2c bootstrap --side erp`: the initial load of a side's records into its changes topics.
enum BootstrapCommand {
    static let spec = CommandSpec(
        name: "bootstrap",
        summary: "Load every record of a side's streams into its changes topics (initial load), resumable.",
        options: [
            OptionSpec(
                "side", value: "side",
                help: "erp (Finance and Operations) or crm (Dataverse). Or P2C_SIDE, or \"side\" in the file."),
            OptionSpec("bootstrap-servers", value: "host:port,...", help: "Kafka brokers (or P2C_BOOTSTRAP_SERVERS)."),
            OptionSpec("config", value: "file", help: "JSON configuration file."),
            OptionSpec(
                "streams", value: "a,b", help: "Streams to load; default: every stream the side is a source of."),
            OptionSpec(
                "companies", value: "A,B",
                help: "erp: legal entities to load (default: all, in one pass); crm: the one legal entity of the rows."),
            OptionSpec("page-size", value: "n", help: "Records per page, 1 to 10000.", default: "1000"),
            OptionSpec(
                "from", value: "step:records",
                help: "Start at this position (as progress prints it) instead of where the last run stopped."),
            OptionSpec("restart", help: "Start from the beginning, whatever the last run did."),
            OptionSpec(
                "transactional-id", value: "id",
                help: "One load at a time: a second with the same id fences the first. Default: p2c-bootstrap-<side>."),
            OptionSpec("topics", value: "dir", help: "Folder of topic declarations. Default: $P2C_TOPICS or ./Topics."),
        ],
        discussion: """
            Reads every record of the chosen streams and companies through F&O's OData (P2C_FNO_URL,
            _TENANT_ID, _CLIENT_ID, _CLIENT_SECRET or _CLIENT_SECRET_FILE, _AUTHORITY, or the file's "fno"
            object), masters and headers before lines, in key order, and publishes each as an
            <record>.upserted change event to erp.<stream>.changes, which the erp-to-crm workers map and
            apply writes. --side crm does the same with Dataverse's tables (P2C_DATAVERSE_*, a change
            tracking snapshot read page by page, lookups as natural keys) into crm.<stream>.changes.
            Each page and the position after it commit in one Kafka transaction (the position in
            p2c.capture.state), so a load stopped or killed anywhere resumes where it stopped when run
            again with the same streams and companies; nothing is published twice. Progress (records,
            rate, ETA, position) goes to standard output every second. SIGTERM stops after the page in
            hand; exit 0 once everything is loaded.
            """
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let file = try ConfigurationFile.load(arguments.string("config"), command: spec.name, arguments: arguments)
        let environment = ProcessInfo.processInfo.environment
        var configuration = BootstrapConfiguration()
        let connection: ConnectionSettings
        let system: any SystemAdapter
        do {
            let side = file.side(or: .erp)
            let sideText = side.rawValue
            system = Systems.adapter(for: side)
            configuration.kafka = file.worker.kafka
            configuration.generation = file.mapping.generation
            configuration.streams = file.worker.streams
            configuration.companies =
                (arguments.string("companies") ?? "").split(separator: ",").map {
                    $0.trimmingCharacters(in: .whitespaces).uppercased()
                }.filter { !$0.isEmpty }
            configuration.pageSize = try arguments.integer("page-size", in: 1...10_000)!
            // Rows that carry no company of their own belong to the one named.
            guard system.companyField != nil || configuration.companies.count == 1 else {
                throw UsageError("--side \(sideText) needs --companies with the one legal entity of the rows")
            }
            guard configuration.pageSize <= system.maxPageSize else {
                throw UsageError("--page-size on \(sideText): at most \(system.maxPageSize)")
            }
            if let text = arguments.string("from") {
                guard let position = BootstrapPosition(parsing: text) else {
                    throw UsageError("--from expects <step>:<records>, got '\(text)'")
                }
                guard position.skip == 0 || system.cursor(skipping: position.skip) != nil else {
                    throw UsageError("--from on \(sideText) takes <step>:0 (a step's pages are links, not counts)")
                }
                configuration.from = position
            }
            configuration.restart = arguments.flag("restart")
            configuration.transactionalID = file.worker.transactionalID
            connection = try ConnectionSettings.load(system, file: file.object, environment: environment)
        } catch let error as UsageError {
            throw UsageError(error.message, command: spec.name)
        }
        let catalog = try TopicCatalog.load(arguments, command: spec.name)
        let log = Log([("component", "bootstrap")])
        let client = ServiceClient(settings: connection.settings, http: HTTPClient(log: log), api: system.api)
        try await ConnectionSettings.check(client, settings: connection, log: log, command: spec.name)
        let bootstrap: Bootstrap
        do {
            bootstrap = try Bootstrap(
                configuration: configuration, adapter: system, catalog: catalog, client: client, log: log)
        } catch let error as KafkaError {
            throw UsageError(error.message, command: spec.name)
        } catch let error as UsageError {
            throw UsageError(error.message, command: spec.name)
        }
        let printer = ProgressPrinter(alreadyDone: { bootstrap.published.value })
        let failure = await FleetMember.run(
            log: log, budget: .seconds(10), name: "bootstrap",
            body: {
                let done = try bootstrap.run { printer.show($0) }
                printer.flush()
                if !done { throw StoppedEarly() }
            }, stop: { bootstrap.stop() })
        if let failure {
            if failure.contains("StoppedEarly") {
                FileHandle.standardOutput.write(
                    Data("stopped at \(printer.position ?? "the start"); run again to resume\n".utf8))
                return 0
            }
            log.error("bootstrap failed", [("error", .string(failure))])
            return 1
        }
        FileHandle.standardOutput.write(Data("loaded \(bootstrap.published.value) records\n".utf8))
        return 0
    }

    private struct StoppedEarly: Error {}
}

/// The progress line: a bar, records done of the total, rate, ETA and the position to resume from,
/// at most once a second.
private final class ProgressPrinter: Sendable {
    private let state = Mutex<(last: Bootstrap.Progress?, printed: ContinuousClock.Instant?, base: Int?)>(
        (nil, nil, nil))
    private let started = ContinuousClock.now
    private let alreadyDone: @Sendable () -> Int

    init(alreadyDone: @escaping @Sendable () -> Int) {
        self.alreadyDone = alreadyDone
    }

    var position: String? { state.withLock { $0.last?.position.description } }

    func show(_ progress: Bootstrap.Progress) {
        let line = state.withLock { state -> String? in
            state.last = progress
            // Records done before this run (a resumed load) do not count in its rate.
            if state.base == nil { state.base = progress.done - alreadyDone() }
            guard state.printed.map({ ContinuousClock.now - $0 >= .seconds(1) }) ?? true else { return nil }
            state.printed = .now
            return Self.line(progress, base: state.base!, elapsed: (ContinuousClock.now - started).seconds)
        }
        if let line { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
    }

    func flush() {
        let line = state.withLock { state in
            state.last.map { Self.line($0, base: state.base ?? 0, elapsed: (ContinuousClock.now - started).seconds) }
        }
        if let line { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
    }

    private static func line(_ progress: Bootstrap.Progress, base: Int, elapsed: Double) -> String {
        let rate = Double(progress.done - base) / max(0.001, elapsed)
        let share = progress.total == 0 ? 100 : Double(progress.done) * 100 / Double(progress.total)
        let eta = rate > 0 ? Int(Double(progress.total - progress.done) / rate) : 0
        let filled = min(30, Int(share / 100 * 30))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled)
        return
            "[\(bar)] \(progress.done)/\(progress.total) records (\(String(format: "%.1f", share)) %), \(Int(rate)) records/s, ETA \(eta) s, position \(progress.position)"
    }
}
