import Capture
import Connectors
import Foundation
import Kafka
import Operations
import ProspectToCash
import Runtime
import Simulation
import Topology

/// `p2c reconcile`: both systems read through their APIs, every record mapped as a worker maps it
/// and compared field by field with the other side's; `--repair` republishes drifted records as
/// changes for the fleet to write again.
enum ReconcileCommand {
    static let spec = CommandSpec(
        name: "reconcile",
        summary: "Compare Dataverse and F&O record by record through the maps; --repair republishes drift.",
        options: [
            OptionSpec("config", value: "file", help: "JSON configuration file (its mapping, dataverse and fno)."),
            OptionSpec(
                "company", value: "code",
                help: "The legal entity compared: F&O's records of it and the CRM rows (or \"company\" in the file)."),
            OptionSpec("streams", value: "a,b", help: "Streams to compare; default: every stream of the generation."),
            OptionSpec("page-size", value: "n", help: "Records per page read, 1 to 5000.", default: "1000"),
            OptionSpec("show", value: "n", help: "Differences printed field by field, 0 to 10000.", default: "20"),
            OptionSpec(
                "repair",
                help:
                    "Publish each drifted record as a change of its side (missing ones always, differing ones per --prefer)."
            ),
            OptionSpec(
                "prefer", value: "crm|erp",
                help: "With --repair: the side whose values win where both hold a record and they differ."),
            OptionSpec("bootstrap-servers", value: "host:port,...", help: "Kafka brokers, for --repair."),
            OptionSpec("topics", value: "dir", help: "Folder of topic declarations. Default: $P2C_TOPICS or ./Topics."),
        ],
        discussion: """
            Reads every record of the chosen streams of one company through Dataverse's Web API
            (P2C_DATAVERSE_*, or the file's "dataverse") and F&O's OData (P2C_FNO_*, or "fno"), maps
            each side's records with the deployment's mapping configuration, and compares each with
            the other side's record field by field (decimals as decimals). Prints per stream the
            records of each side, how many were compared, missing on the other side, different and
            held back by the rules, then the first differences. Exit 0 only when the systems agree,
            1 when they do not.

            --repair publishes each drifted record to its side's changes topic as an .upserted
            change event: a record the other side lacks always; where both hold a record and they
            differ, the --prefer side's (one-way streams: their source's). The workers map and apply
            writes them as any change; run reconcile again to see the result.
            """
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let file = try ConfigurationFile.load(arguments.string("config"), command: spec.name, arguments: arguments)
        let environment = ProcessInfo.processInfo.environment
        let dataverse: ConnectionSettings
        let fno: ConnectionSettings
        let company: String
        let prefer: Side?
        let repair = arguments.flag("repair")
        do {
            guard let given = file.settings.string("company") else {
                throw UsageError("--company (or \"company\" in the file) is required")
            }
            company = given.uppercased()
            if let text = arguments.string("prefer") {
                guard let side = Side(rawValue: text) else {
                    throw UsageError("--prefer must be crm or erp, got '\(text)'")
                }
                guard repair else { throw UsageError("--prefer goes with --repair") }
                prefer = side
            } else {
                prefer = nil
            }
            dataverse = try ConnectionSettings.load(
                Systems.adapter(for: .crm), file: file.object, environment: environment)
            fno = try ConnectionSettings.load(Systems.adapter(for: .erp), file: file.object, environment: environment)
        } catch let error as UsageError {
            throw UsageError(error.message, command: spec.name)
        }
        let pageSize = try arguments.integer("page-size", in: 1...5_000)!
        let show = try arguments.integer("show", in: 0...10_000)!
        let catalog = try TopicCatalog.load(arguments, command: spec.name)
        let mapping = file.mapping
        let mapper: Mapper
        do {
            mapper = try Mapper(configuration: mapping)
        } catch {
            throw UsageError("mapping: \(error)", command: spec.name)
        }
        let streams = file.worker.streams
        let kinds = RecordKind.kinds(for: mapping.generation).filter { streams.isEmpty || streams.contains($0.stream) }

        let log = Log([("component", "reconcile")])
        let sales = ServiceClient(settings: dataverse.settings, http: HTTPClient(log: log), api: dataverse.system.api)
        let erp = ServiceClient(settings: fno.settings, http: HTTPClient(log: log), api: fno.system.api)
        try await ConnectionSettings.check(sales, settings: dataverse, log: log, command: spec.name)
        try await ConnectionSettings.check(erp, settings: fno, log: log, command: spec.name)
        let started = ContinuousClock.now
        async let crmRecords = SystemRecords.read(
            dataverse.system, client: sales, kinds: kinds, company: company, generation: mapping.generation,
            pageSize: pageSize)
        async let erpRecords = SystemRecords.read(
            fno.system, client: erp, kinds: kinds, company: company, generation: mapping.generation,
            pageSize: pageSize)
        let (crm, fo) = try await (crmRecords, erpRecords)
        let reconciliation = Reconciliation(crm: crm, erp: fo, mapper: mapper)
        print(reconciliation.report(streams: Set(kinds.map(\.stream)), show: show, company: company, started: started))
        guard repair, !reconciliation.drifts.isEmpty else { return reconciliation.isClean ? 0 : 1 }

        let chosen = reconciliation.drifts.filter { drift in
            drift.kind == .missing || drift.record.stream.sources.count == 1 || drift.side == prefer
        }
        let undecided = reconciliation.drifts.count - chosen.count
        let published = try publish(chosen, kafka: file.worker.kafka, catalog: catalog)
        print("repair: published \(published) change events for the fleet to apply")
        if undecided > 0 && prefer == nil {
            print("repair: \(undecided) differing records held by both sides left as they are: choose --prefer crm|erp")
        }
        return 1
    }

    /// Publishes each drift's record as an `.upserted` change of its side; the count published.
    static func publish(
        _ drifts: [Reconciliation.Drift], kafka: KafkaConfiguration, catalog: TopicCatalog
    ) throws -> Int {
        let producer = try KafkaProducer(configuration: ProducerConfiguration(kafka: kafka, transactionalID: nil))
        let run = UUID().uuidString.lowercased()
        var sent = 0
        for drift in drifts {
            guard let topic = catalog.topic(.changes, side: drift.side, stream: drift.record.stream) else { continue }
            let subject = String(drift.key.prefix { $0 != "#" })
            let company = String(subject.prefix { $0 != "/" })
            let name = drift.record.name(on: drift.side)
            _ = try producer.send(
                ChangeEvent.record(
                    topic: topic.name, side: drift.side, record: name, id: "reconcile/\(run)/\(name)/\(drift.key)",
                    subject: subject, company: company, data: drift.data))
            sent += 1
        }
        let reports = try producer.flush(timeout: .seconds(30))
        if let failure = reports.first(where: { $0.error != nil })?.error {
            throw UsageError("repair: a change event was not delivered: \(failure)", command: spec.name)
        }
        return sent
    }
}
