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
    /// The legal entities loaded. F&O: empty means every company, in one pass per entity set.
    /// Dataverse: the one legal entity the rows belong to (`ce_company`), required.
    public var companies: [String] = []
    /// Records per page (`$top`; "Open Data Protocol (OData)": at most 10,000 a page). Default: 1 000.
    public var pageSize = 1_000
    /// The generation of the maps the workers run: which columns a Dataverse record carries.
    public var generation: MapGeneration = .classic
    /// One load at a time: a second one with the same id fences the first. Default:
    /// `p2c-bootstrap-<side>`.
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
    private let adapter: any SystemAdapter
    private var side: Side { adapter.side }
    private let source: any RecordSource
    private let producer: KafkaProducer
    private let topics: [SyncStream: String]
    private let statePartition: Int32
    private let log: Log
    private let stopRequest = StopRequest()

    public private(set) var steps: [RecordStep]

    /// What `run` reports after each page.
    public struct Progress: Sendable {
        public var done: Int
        public var total: Int
        public var position: BootstrapPosition
    }

    /// The load's key in the state topic: `<side>/bootstrap`.
    public var stateKey: String { "\(side.rawValue)/bootstrap" }

    /// A load of `adapter`'s system through `client`.
    public init(
        configuration: BootstrapConfiguration, adapter: any SystemAdapter, catalog: TopicCatalog,
        client: ServiceClient, log: Log = Log()
    ) throws {
        self.configuration = configuration
        let side = adapter.side
        self.adapter = adapter
        self.log = log.with([("side", .string(side.rawValue)), ("component", "bootstrap")])
        guard let state = catalog[CaptureConfiguration.stateTopic] else {
            throw UsageError("Topics/ declares no \(CaptureConfiguration.stateTopic)")
        }
        statePartition = CaptureMember.partition(of: "\(side.rawValue)/bootstrap", count: state.partitions)
        source = adapter.recordSource(
            client: client, company: configuration.companies.first ?? "", generation: configuration.generation,
            bothWays: false)
        var topics: [SyncStream: String] = [:]
        var steps: [RecordStep] = []
        for stream in SyncStream.allCases
        where stream.sources.contains(side) && (configuration.streams.isEmpty || configuration.streams.contains(stream))
            && (!stream.isParty || configuration.generation == .party)
        {
            guard let topic = catalog.topic(.changes, side: side, stream: stream) else {
                throw UsageError("Topics/ declares no changes topic for \(stream.rawValue)")
            }
            topics[stream] = topic.name
            // Masters and headers before lines.
            let kinds = RecordKind.all.filter { $0.stream == stream }
                .sorted { ($0.role == .line ? 1 : 0) < ($1.role == .line ? 1 : 0) }
            steps += try adapter.steps(of: kinds, companies: configuration.companies)
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
            let cursor = position.cursor ?? (position.skip > 0 ? adapter.cursor(skipping: position.skip) : nil)
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
    private func event(of record: SourceRecord, step: RecordStep) -> OutgoingRecord? {
        guard case .string(let number)? = record.data.value(at: step.kind.keyPath(on: side)), !number.isEmpty,
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
                let pause = CaptureConfiguration.retryBackoff.pause(after: failures)
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
