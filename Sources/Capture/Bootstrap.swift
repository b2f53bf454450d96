import Connectors
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Synchronization
import Topology

/// Everything an initial load needs besides the system's credentials.
public struct BootstrapConfiguration: Sendable {
    public var kafka = KafkaConfiguration()
    /// The streams loaded; empty means every stream the ERP is a source of.
    public var streams: [SyncStream] = []
    /// The legal entities loaded; empty means every company, in one pass per entity set.
    public var companies: [String] = []
    /// Records per page (`$top`; FO-ODATA: at most 10,000 a page). Default: 1 000.
    public var pageSize = 1_000
    /// One load at a time: a second one with the same id fences the first. Default: `p2c-bootstrap-erp`.
    public var transactionalID = "p2c-bootstrap-erp"
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

    public init(step: Int, skip: Int) {
        self.step = step
        self.skip = skip
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

/// The initial load of the ERP side (`p2c bootstrap --side erp`): every record of the chosen
/// streams and companies read page by page (masters and headers before lines) and published as
/// `<record>.upserted` change events, each page in one Kafka transaction with the load's position
/// in `p2c.capture.state` — so a load killed at any point resumes where its last page ended, and
/// publishes nothing twice and skips nothing.
///
/// `run(progress:)` blocks its thread until the load is done or `stop()` is called.
public final class Bootstrap: @unchecked Sendable {
    // @unchecked: the steps are touched only by the thread in `run`; the counters are synchronized.
    public let configuration: BootstrapConfiguration
    /// Records published by this run, and pages.
    public let published = Counter()
    public let pages = Counter()
    private let schema: FinanceOperationsSchema
    private let reader: FinanceOperationsReader
    private let producer: KafkaProducer
    private let topics: [SyncStream: String]
    private let statePartition: Int32
    private let log: Log
    private let stopRequest = StopRequest()

    /// One read: an entity set, for one company (nil: all).
    public struct Step: Sendable, CustomStringConvertible {
        public var kind: RecordKind
        public var company: String?
        public var total = 0

        public var description: String { "\(kind.erpEntitySet ?? kind.erpName)@\(company ?? "*")" }
    }

    public private(set) var steps: [Step]

    /// What `run` reports after each page.
    public struct Progress: Sendable {
        public var done: Int
        public var total: Int
        public var position: BootstrapPosition
    }

    public static let stateKey = "erp/bootstrap"

    public init(
        configuration: BootstrapConfiguration, catalog: TopicCatalog, client: ServiceClient, log: Log = Log()
    ) throws {
        self.configuration = configuration
        self.log = log.with([("side", "erp"), ("component", "bootstrap")])
        guard let state = catalog[CaptureConfiguration.stateTopic] else {
            throw UsageError("Topics/ declares no \(CaptureConfiguration.stateTopic)")
        }
        statePartition = CaptureMember.partition(of: Self.stateKey, count: state.partitions)
        schema = FinanceOperationsSchema(client: client)
        reader = FinanceOperationsReader(client: client)
        var topics: [SyncStream: String] = [:]
        var steps: [Step] = []
        for stream in SyncStream.allCases
        where stream.sources.contains(.erp) && (configuration.streams.isEmpty || configuration.streams.contains(stream))
        {
            guard let topic = catalog.topic(.changes, side: .erp, stream: stream) else {
                throw UsageError("Topics/ declares no changes topic for \(stream.rawValue)")
            }
            topics[stream] = topic.name
            // Masters and headers before lines; an entity set once (customers: accounts and contacts).
            var sets = Set<String>()
            let kinds = RecordKind.all.filter { $0.stream == stream && $0.erpEntitySet != nil }
                .sorted { ($0.role == .line ? 1 : 0) < ($1.role == .line ? 1 : 0) }
            for kind in kinds where sets.insert(kind.erpEntitySet!).inserted {
                for company in configuration.companies.isEmpty ? [nil] : configuration.companies.map(Optional.some) {
                    steps.append(Step(kind: kind, company: company))
                }
            }
        }
        guard !steps.isEmpty else {
            throw UsageError("streams: none of \(configuration.streams.map(\.rawValue)) is read from the ERP")
        }
        self.steps = steps
        self.topics = topics
        var producerConfiguration = ProducerConfiguration(
            kafka: configuration.kafka, transactionalID: configuration.transactionalID)
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
            let total = try retrying("counting \(step)") { [schema, reader] in
                let entity = try await schema.entity(of: step.kind)
                return try await reader.page(entity, company: step.company, select: [], skip: 0, top: 0, count: true)
                    .total ?? 0
            }
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
        while position.step < steps.count {
            guard !stopRequest.isRequested else { return false }
            let step = steps[position.step]
            let skip = position.skip
            let top = configuration.pageSize
            let page = try retrying("reading \(step) from \(skip)") { [schema, reader] in
                let entity = try await schema.entity(of: step.kind)
                let select =
                    entity.keys.map(\.name)
                    + entity.properties.values.filter {
                        FinanceOperationsRecords.fields[entity.set]?.contains($0.name.uppercased()) ?? false
                    }.map(\.name).sorted()
                let page = try await reader.page(
                    entity, company: step.company, select: Array(Set(select)).sorted(), skip: skip, top: top)
                return (entity, page.records)
            }
            guard let (entity, records) = page else { return false }
            let next =
                records.isEmpty
                ? BootstrapPosition(step: position.step + 1, skip: 0)
                : BootstrapPosition(step: position.step, skip: skip + records.count)
            let events = records.compactMap { event(of: $0, step: step, entity: entity) }
            try publish(events, position: next)
            published.add(events.count)
            pages.add()
            position = next
            let done = steps[..<min(position.step, steps.count)].reduce(0) { $0 + $1.total } + position.skip
            progress(Progress(done: min(done, total), total: total, position: position))
        }
        log.info("bootstrap done", [("published", .int(Int64(published.value))), ("pages", .int(Int64(pages.value)))])
        return true
    }

    /// The change event of one record: keyed `<company>/<number>`, its id stable while the record
    /// does not change (its ETag in it).
    private func event(of record: JSONObject, step: Step, entity: FinanceOperationsSchema.Entity) -> OutgoingRecord? {
        let (data, company) = FinanceOperationsRecords.record(
            record.fields.map { (name: $0.key, value: $0.value) }, entitySet: entity.set)
        guard let company, case .string(let number)? = data[step.kind.erpKey], !number.isEmpty,
            let topic = topics[step.kind.stream]
        else { return nil }
        let keyText = entity.keys.map { key in record[key.name].map { $0.stringValue ?? $0.jsonText } ?? "" }
            .joined(separator: "/")
        let version = record["@odata.etag"]?.stringValue ?? ""
        let subject = "\(company)/\(number)"
        return OutgoingRecord(
            topic: topic, key: Array(subject.utf8), value: data.jsonBytes,
            headers: [
                KafkaHeader("ce_specversion", "1.0"),
                KafkaHeader("ce_id", "erp/\(step.kind.erpName)/\(keyText)/\(version)"), KafkaHeader("ce_source", "erp"),
                KafkaHeader("ce_type", "\(step.kind.erpName).upserted"),
                KafkaHeader("ce_time", Date().formatted(.iso8601)), KafkaHeader("ce_subject", subject),
                KafkaHeader("ce_company", company), KafkaHeader("content-type", "application/json"),
            ])
    }

    /// A page's events and the position after it, in one transaction.
    private func publish(_ events: [OutgoingRecord], position: BootstrapPosition) throws {
        try producer.beginTransaction()
        do {
            for event in events { _ = try producer.send(event) }
            _ = try producer.send(
                OutgoingRecord(
                    topic: CaptureConfiguration.stateTopic, partition: statePartition, key: Array(Self.stateKey.utf8),
                    value: JSONObject([
                        "plan": .string(plan), "step": .number(String(position.step)),
                        "skip": .number(String(position.skip)),
                    ]).jsonBytes, headers: []))
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
            guard record.key == Array(Self.stateKey.utf8) else { return }
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
        return BootstrapPosition(step: step, skip: skip)
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
