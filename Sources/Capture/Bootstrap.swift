import Connectors
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Synchronization
import Topology

/// Everything an initial load needs besides the system's credentials.
public struct BootstrapConfiguration: Sendable {
    /// The system read: `erp` (F&O) or `crm` (Dataverse).
    public var side: Side = .erp
    public var kafka = KafkaConfiguration()
    /// The streams loaded; empty means every stream the ERP is a source of.
    public var streams: [SyncStream] = []
    /// ERP: the legal entities loaded; empty means every company, in one pass per entity set.
    /// CRM: the one legal entity the rows belong to (`ce_company`), required.
    public var companies: [String] = []
    /// Records per page (`$top`; "Open Data Protocol (OData)": at most 10,000 a page). Default: 1 000.
    public var pageSize = 1_000
    /// The generation of the maps the workers run: which columns a CRM record carries.
    public var generation: MapGeneration = .classic
    /// One load at a time: a second one with the same id fences the first. Default: `p2c-bootstrap-<side>`.
    public var transactionalID: String?
    /// Start here instead of where the last run stopped.
    public var from: BootstrapPosition?
    /// Start from the beginning, whatever the last run did.
    public var restart = false

    public init() {}
}

/// Where a load stands: the step (an entity set, for one company) and the records of it done.
public struct BootstrapPosition: Sendable, Equatable, CustomStringConvertible {
    public var step: Int
    public var skip: Int
    /// Where the step's next page is, as its source says (F&O: the records done; Dataverse: the
    /// next link); nil at the start of a step.
    public var cursor: String?

    public init(step: Int, skip: Int, cursor: String? = nil) {
        self.step = step
        self.skip = skip
        self.cursor = cursor
    }

    /// `<step>:<records>`, as `--from` takes it and progress prints it.
    public init?(parsing text: String) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let step = Int(parts[0]), let skip = Int(parts[1]), step >= 0, skip >= 0 else {
            return nil
        }
        self.init(step: step, skip: skip)
    }

    public var description: String { "\(step):\(skip)" }
}

/// The initial load of a side (`p2c bootstrap --side erp|crm`): every record of the chosen streams
/// (and companies) read page by page (masters and headers before lines) and published as
/// `<record>.upserted` change events, each page in one Kafka transaction with the load's position
/// in `p2c.capture.state` — so a load killed at any point resumes where its last page ended, and
/// publishes nothing twice and skips nothing. What it reads comes from the side's `BootstrapSource`.
///
/// `run(progress:)` blocks its thread until the load is done or `stop()` is called.
public final class Bootstrap: @unchecked Sendable {
    // @unchecked: the steps are touched only by the thread in `run`; the counters are synchronized.
    public let configuration: BootstrapConfiguration
    /// Records published by this run, and pages.
    public let published = Counter()
    public let pages = Counter()
    private let source: any BootstrapSource
    private let producer: KafkaProducer
    private let topics: [SyncStream: String]
    private let statePartition: Int32
    private let log: Log
    private let stopRequest = StopRequest()

    /// One read: a table or entity set, for one company (nil: all).
    public struct Step: Sendable, CustomStringConvertible {
        public var kind: RecordKind
        public var side: Side
        public var company: String?
        public var total = 0

        public var description: String {
            side == .erp ? "\(kind.erpEntitySet ?? kind.erpName)@\(company ?? "*")" : kind.crmName
        }
    }

    public private(set) var steps: [Step]

    /// What `run` reports after each page.
    public struct Progress: Sendable {
        public var done: Int
        public var total: Int
        public var position: BootstrapPosition
    }

    /// The load's key in the state topic: `<side>/bootstrap`.
    public var stateKey: String { "\(configuration.side.rawValue)/bootstrap" }

    /// A load of the ERP through F&O's OData (`client`'s API), or of the CRM through the Web API.
    public init(
        configuration: BootstrapConfiguration, catalog: TopicCatalog, client: ServiceClient, log: Log = Log()
    ) throws {
        self.configuration = configuration
        let side = configuration.side
        self.log = log.with([("side", .string(side.rawValue)), ("component", "bootstrap")])
        guard let state = catalog[CaptureConfiguration.stateTopic] else {
            throw UsageError("Topics/ declares no \(CaptureConfiguration.stateTopic)")
        }
        statePartition = CaptureMember.partition(of: "\(side.rawValue)/bootstrap", count: state.partitions)
        if side == .erp {
            source = FinanceOperationsBootstrapSource(client: client)
        } else {
            guard configuration.companies.count == 1 else {
                throw UsageError("--companies must name the one legal entity of the CRM rows")
            }
            source = DataverseBootstrapSource(
                client: client, company: configuration.companies[0], generation: configuration.generation)
        }
        var topics: [SyncStream: String] = [:]
        var steps: [Step] = []
        for stream in SyncStream.allCases
        where stream.sources.contains(side) && (configuration.streams.isEmpty || configuration.streams.contains(stream))
            && (!stream.isParty || configuration.generation == .party)
        {
            guard let topic = catalog.topic(.changes, side: side, stream: stream) else {
                throw UsageError("Topics/ declares no changes topic for \(stream.rawValue)")
            }
            topics[stream] = topic.name
            // Masters and headers before lines; an entity set once (customers: accounts and contacts).
            var sets = Set<String>()
            let kinds = RecordKind.all.filter { $0.stream == stream && (side == .crm || $0.erpEntitySet != nil) }
                .sorted { ($0.role == .line ? 1 : 0) < ($1.role == .line ? 1 : 0) }
            for kind in kinds where sets.insert(side == .erp ? kind.erpEntitySet! : kind.crmName).inserted {
                let companies =
                    side == .erp && !configuration.companies.isEmpty
                    ? configuration.companies.map(Optional.some) : [side == .crm ? configuration.companies[0] : nil]
                for company in companies {
                    steps.append(Step(kind: kind, side: side, company: company))
                }
            }
        }
        guard !steps.isEmpty else {
            throw UsageError(
                "streams: none of \(configuration.streams.map(\.rawValue)) is read from the \(side.rawValue.uppercased())"
            )
        }
        self.steps = steps
        self.topics = topics
        var producerConfiguration = ProducerConfiguration(
            kafka: configuration.kafka,
            transactionalID: configuration.transactionalID ?? "p2c-bootstrap-\(side.rawValue)")
        producerConfiguration.transactionTimeoutMilliseconds = 60_000
        try producerConfiguration.validate()
        producer = try KafkaProducer(configuration: producerConfiguration)
    }

    public func stop() { stopRequest.request() }

    /// The plan's text: a stored position belongs to the same plan only.
    var plan: String { steps.map(\.description).joined(separator: ",") }

    /// Loads until done (true) or stopped (false).
    public func run(progress: (Progress) -> Void = { _ in }) throws -> Bool {
        guard
            try producer.initTransactions(
                until: { stopRequest.isRequested },
                waiting: { failure in
                    self.log.warning("waiting for the cluster", [("error", .string(failure.description))])
                })
        else { return false }
        var position = BootstrapPosition(step: 0, skip: 0)
        if let from = configuration.from {
            position = from
        } else if !configuration.restart, let stored = try storedPosition() {
            position = stored
            log.info("resuming", [("position", .string(position.description))])
        }
        // Totals first: what the progress is measured against.
        for index in steps.indices {
            guard !stopRequest.isRequested else { return false }
            let step = steps[index]
            let total = try retrying("counting \(step)") { [source] in try await source.total(step) }
            guard let total else { return false }
            steps[index].total = total
        }
        let total = steps.reduce(0) { $0 + $1.total }
        log.info(
            "bootstrap started",
            [
                ("steps", .string(plan)), ("records", .int(Int64(total))),
                ("position", .string(position.description)),
            ])
        let size = configuration.pageSize
        while position.step < steps.count {
            guard !stopRequest.isRequested else { return false }
            let step = steps[position.step]
            let cursor = position.cursor ?? (position.skip > 0 && step.side == .erp ? String(position.skip) : nil)
            let page = try retrying("reading \(step) at \(position)") { [source] in
                try await source.page(step, cursor: cursor, size: size)
            }
            guard let page else { return false }
            let next =
                page.next == nil
                ? BootstrapPosition(step: position.step + 1, skip: 0)
                : BootstrapPosition(step: position.step, skip: position.skip + page.records.count, cursor: page.next)
            let events = page.records.compactMap { event(of: $0, step: step) }
            try publish(events, position: next)
            published.add(events.count)
            pages.add()
            position = next
            let done = steps[..<min(position.step, steps.count)].reduce(0) { $0 + $1.total } + position.skip
            // A counted total may fall short (Dataverse counts to 5,000): never less than what is done.
            progress(Progress(done: done, total: max(total, done), position: position))
        }
        log.info("bootstrap done", [("published", .int(Int64(published.value))), ("pages", .int(Int64(pages.value)))])
        return true
    }

    /// The change event of one record: keyed `<company>/<number>`, its id stable while the record
    /// does not change (its version in it).
    private func event(of record: BootstrapRecord, step: Step) -> OutgoingRecord? {
        let side = step.side
        let path = side == .erp ? [step.kind.erpKey] : step.kind.crmKey
        guard case .string(let number)? = record.data.value(at: path), !number.isEmpty,
            let topic = topics[step.kind.stream]
        else { return nil }
        let name = step.kind.name(on: side)
        return ChangeEvent.record(
            topic: topic, side: side, record: name, id: "\(side.rawValue)/\(name)/\(record.id)",
            subject: "\(record.company)/\(number)", company: record.company, data: record.data)
    }

    /// A page's events and the position after it, in one transaction.
    private func publish(_ events: [OutgoingRecord], position: BootstrapPosition) throws {
        try producer.beginTransaction()
        do {
            try producer.deliver(events)
            var state: JSONObject = [
                "plan": .string(plan), "step": .number(String(position.step)),
                "skip": .number(String(position.skip)),
            ]
            if let cursor = position.cursor { state["cursor"] = .string(cursor) }
            _ = try producer.send(
                OutgoingRecord(
                    topic: CaptureConfiguration.stateTopic, partition: statePartition, key: Array(stateKey.utf8),
                    value: state.jsonBytes, headers: []))
            try producer.commitTransaction(timeout: .seconds(60))
        } catch {
            try? producer.abortTransaction(timeout: .seconds(10))
            throw error
        }
    }

    /// Where the last run of the same plan stopped, from the state topic.
    private func storedPosition() throws -> BootstrapPosition? {
        var configuration = ConsumerConfiguration(kafka: self.configuration.kafka, groupID: "p2c-bootstrap-restore")
        configuration.reportPartitionEnd = true
        let consumer = try KafkaConsumer(configuration: configuration)
        defer { try? consumer.close() }
        var stored: JSONObject?
        try consumer.readToEnd(
            [TopicPartitionOffset(CaptureConfiguration.stateTopic, statePartition, offset: KafkaOffset.beginning)]
        ) { record in
            guard record.key == Array(self.stateKey.utf8) else { return }
            stored = record.value.flatMap { try? JSONParser.parse($0) }?.objectValue
        }
        guard let stored else { return nil }
        guard stored["plan"]?.stringValue == plan else {
            log.warning("the last load had another plan; starting from the beginning")
            return nil
        }
        guard let step = stored["step"].flatMap({ Int($0.stringValue ?? $0.jsonText) }),
            let skip = stored["skip"].flatMap({ Int($0.stringValue ?? $0.jsonText) })
        else { return nil }
        return BootstrapPosition(step: step, skip: skip, cursor: stored["cursor"]?.stringValue)
    }

    /// Runs `body` until it succeeds, pausing after failures (the HTTP client retried already);
    /// nil once stopped.
    private func retrying<T: Sendable>(_ what: String, _ body: @escaping @Sendable () async throws -> T) throws -> T? {
        var failures = 0
        while !stopRequest.isRequested {
            do {
                return try AsyncBridge.wait(cancelled: { self.stopRequest.isRequested }, body)
            } catch is CancellationError {
                return nil
            } catch let error as ServiceError where (400..<500).contains(error.status) && error.status != 429 {
                throw error
            } catch {
                failures += 1
                let pause = Duration.milliseconds(min(30_000, 250 << min(failures, 7)))
                log.warning(
                    "\(what) failed; retrying",
                    [("error", .string("\(error)")), ("retry_ms", .int(Int64(pause / .milliseconds(1))))])
                let deadline = ContinuousClock.now + pause
                while !stopRequest.isRequested && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
            }
        }
        return nil
    }
}

/// One record of a load: its event data (the maps' names), its company, and an id stable while
/// the record does not change.
public struct BootstrapRecord: Sendable {
    public var data: JSONObject
    public var company: String
    public var id: String
}

/// Where a load reads a side's records.
public protocol BootstrapSource: Sendable {
    /// How many records `step` holds (for progress).
    func total(_ step: Bootstrap.Step) async throws -> Int
    /// One page of `step` from `cursor` (nil: its start): its records, and the cursor after them
    /// (nil: the step is done).
    func page(
        _ step: Bootstrap.Step, cursor: String?, size: Int
    ) async throws -> (
        records: [BootstrapRecord], next: String?
    )
}

/// F&O's entity sets in key order, `$skip`/`$top` pages: the cursor is the records done.
struct FinanceOperationsBootstrapSource: BootstrapSource {
    let schema: FinanceOperationsSchema
    let reader: FinanceOperationsReader

    init(client: ServiceClient) {
        schema = FinanceOperationsSchema(client: client)
        reader = FinanceOperationsReader(client: client)
    }

    func total(_ step: Bootstrap.Step) async throws -> Int {
        let entity = try await schema.entity(of: step.kind)
        return try await reader.page(entity, company: step.company, select: [], skip: 0, top: 0, count: true).total ?? 0
    }

    func page(
        _ step: Bootstrap.Step, cursor: String?, size: Int
    ) async throws -> (
        records: [BootstrapRecord], next: String?
    ) {
        let entity = try await schema.entity(of: step.kind)
        let known = FinanceOperationsRecords.fields[entity.set] ?? []
        let select = Set(
            entity.keys.map(\.name)
                + entity.properties.values.filter { known.contains($0.name.uppercased()) }.map(\.name))
        let skip = cursor.flatMap { Int($0) } ?? 0
        let page = try await reader.page(entity, company: step.company, select: select.sorted(), skip: skip, top: size)
        let records = page.records.compactMap { record -> BootstrapRecord? in
            let (data, company) = FinanceOperationsRecords.record(
                record.fields.map { (name: $0.key, value: $0.value) }, entitySet: entity.set)
            guard let company else { return nil }
            let key = entity.keys.map { key in record[key.name].map { $0.stringValue ?? $0.jsonText } ?? "" }
                .joined(separator: "/")
            return BootstrapRecord(
                data: data, company: company, id: "\(key)/\(record["@odata.etag"]?.stringValue ?? "")")
        }
        return (records, page.records.isEmpty ? nil : String(skip + page.records.count))
    }
}

/// Dataverse's tables: a change-tracking snapshot read page by page ("Use change tracking to synchronize data with
/// external systems", "Page results using OData"), lookups as natural keys ("Query schema definitions"); the cursor
/// is the next link. Totals by `$count` (the service counts up to 5,000, so a bigger table's progress is an
/// estimate until it is read).
struct DataverseBootstrapSource: BootstrapSource {
    let client: ServiceClient
    let records: DataverseRecords
    let company: String

    init(client: ServiceClient, company: String, generation: MapGeneration, bothWays: Bool = false) {
        self.client = client
        records = DataverseRecords(
            client: client, schema: DataverseSchema(client: client), generation: generation, bothWays: bothWays)
        self.company = company
    }

    func total(_ step: Bootstrap.Step) async throws -> Int {
        let shape = try await records.shape(of: step.kind)
        let answer = try await client.get(
            "\(shape.table.entitySet)?$select=\(shape.table.primaryID)&$count=true&$top=1")
        return answer["@odata.count"].flatMap { Int($0.stringValue ?? $0.jsonText) } ?? 0
    }

    func page(
        _ step: Bootstrap.Step, cursor: String?, size: Int
    ) async throws -> (
        records: [BootstrapRecord], next: String?
    ) {
        let shape = try await records.shape(of: step.kind)
        var reader = DataverseChangeReader(client: client)
        reader.pageSize = min(size, 5_000)
        let page = try await reader.page(cursor, entitySet: shape.table.entitySet, select: shape.select)
        var result: [BootstrapRecord] = []
        for case .row(let row) in page.changes {
            let data = try await records.record(of: row, shape: shape)
            guard let id = row[shape.table.primaryID]?.stringValue else { continue }
            let version = row["versionnumber"].map { $0.stringValue ?? $0.jsonText } ?? ""
            result.append(BootstrapRecord(data: data, company: company, id: "\(id)/\(version)"))
        }
        if case .page(let next) = page.next { return (result, next) }
        return (result, nil)
    }
}
