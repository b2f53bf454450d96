import Foundation
import Kafka
import ProspectToCash
import Runtime
import Synchronization
import Topology

/// One worker of a flow's fleet: consume → map → produce, with the input offsets committed in the
/// same Kafka transaction as the outputs and dead letters (or after delivery, at-least-once).
///
/// `run()` blocks its thread until `stop()`; run it on a dedicated thread. Records of one partition
/// are processed and produced in order, and outputs keep their key, so a line never overtakes its header.
public final class Worker: @unchecked Sendable {
    // @unchecked: the batch state below is touched only by the thread in `run()`; the rebalance
    // handler runs inside `consumer.poll` on that same thread. `stopping` and `counters` are atomic.
    public let configuration: WorkerConfiguration
    public let counters = WorkerCounters()
    private let mapper: Mapper
    private let consumer: KafkaConsumer
    private let producer: KafkaProducer
    /// Input topic → its route; output topics by stream.
    private let routes: [String: Route]
    private let outputTopics: [SyncStream: String]
    private let log: Log
    private let stopping = Atomic<Bool>(false)

    private var pending: [TopicPartition: Int64] = [:]
    private var pendingRecords = 0
    private var batchStarted = ContinuousClock.now
    private var inTransaction = false
    private var deliveryFailure: KafkaError?
    private var rebalanceFailure: KafkaError?
    private var commitsOutsideTransaction: Bool

    /// Builds the clients and the maps; fails naming the bad setting.
    public init(configuration: WorkerConfiguration, catalog: TopicCatalog, log: Log = Log()) throws {
        self.configuration = configuration
        self.log = log.with([("flow", .string(configuration.flow.rawValue))])
        mapper = try Mapper(configuration: configuration.mapping)
        let routes = catalog.routes(for: configuration.flow).filter {
            configuration.streams.isEmpty || configuration.streams.contains($0.stream)
        }
        guard !routes.isEmpty else {
            throw UsageError(
                "streams: none of \(configuration.streams.map(\.rawValue)) flows \(configuration.flow.rawValue)")
        }
        self.routes = Dictionary(uniqueKeysWithValues: routes.map { ($0.input.name, $0) })
        outputTopics = Dictionary(
            uniqueKeysWithValues: SyncStream.allCases.compactMap { stream in
                catalog.topic(.inbound, side: configuration.flow.target, stream: stream).map { (stream, $0.name) }
            })

        var consumerConfiguration = ConsumerConfiguration(
            kafka: configuration.kafka, groupID: configuration.resolvedGroupID)
        consumerConfiguration.sessionTimeoutMilliseconds = configuration.sessionTimeoutMilliseconds
        consumerConfiguration.heartbeatIntervalMilliseconds = min(3_000, configuration.sessionTimeoutMilliseconds / 3)
        consumer = try KafkaConsumer(configuration: consumerConfiguration)
        commitsOutsideTransaction = configuration.commitOffsetsOutsideTransaction
        let transactional = configuration.delivery == .exactlyOnce
        producer = try KafkaProducer(
            configuration: ProducerConfiguration(
                kafka: configuration.kafka, transactionalID: transactional ? configuration.resolvedTransactionalID : nil
            ))
    }

    /// Asks `run()` to finish its batch, leave the group and return.
    public func stop() { stopping.store(true, ordering: .relaxed) }

    /// Runs until `stop()`; throws on fatal errors (fenced, broker-rejected configuration...).
    public func run() throws {
        consumer.onRebalance { [unowned self] event in self.rebalanced(event) }
        if configuration.delivery == .exactlyOnce {
            try producer.initTransactions()
            // librdkafka 2.0.2's mock acknowledges transactional offsets without storing them.
            if !commitsOutsideTransaction, let cluster = producer.clusterID(), cluster.hasPrefix("mockCluster") {
                commitsOutsideTransaction = true
                log.info(
                    "embedded broker: offsets are also committed outside the transaction",
                    [("cluster", .string(cluster))])
            }
        }
        try consumer.subscribe(Array(routes.keys).sorted())
        log.info("worker started", [("topics", .string(routes.keys.sorted().joined(separator: ",")))])
        while !stopping.load(ordering: .relaxed) {
            if let failure = rebalanceFailure { throw failure }
            switch try consumer.poll(timeout: .milliseconds(50)) {
            case .record(let record)?:
                try process(record)
            case .error(let error)?:
                log.warning("consumer error", [("error", .string(error.description))])
            case .partitionEnd?, nil:
                break
            }
            drainDeliveryReports()
            if pendingRecords >= configuration.commitMaxRecords
                || (pendingRecords > 0
                    && ContinuousClock.now - batchStarted >= .milliseconds(configuration.commitIntervalMilliseconds))
            {
                try commitBatch()
            }
        }
        try commitBatch()
        try consumer.close()
        _ = try? producer.flush(timeout: .seconds(10))
        log.info("worker stopped", counters.logFields)
    }

    // MARK: - One record

    private func process(_ record: KafkaRecord) throws {
        guard let route = routes[record.topic] else { return }
        counters.consumed.add(1, ordering: .relaxed)
        if pendingRecords == 0 { batchStarted = .now }
        try ensureTransaction()
        let outcome: MappingOutcome
        do {
            var event = try CloudEvent(headers: record.headers.map { ($0.name, $0.value) }, value: record.value)
            if event.subject == nil, let key = record.key { event.subject = String(decoding: key, as: UTF8.self) }
            outcome = mapper.map(
                event, flow: configuration.flow, stream: route.stream,
                origin: "\(record.topic)/\(record.partition)/\(record.offset)")
        } catch {
            outcome = .refused(error)
        }
        switch outcome {
        case .mapped(let events):
            for mapped in events {
                guard let topic = outputTopics[mapped.stream] else { continue }
                try producer.send(
                    OutgoingRecord(
                        topic: topic, key: mapped.event.subject.map { Array($0.utf8) }, value: mapped.event.value,
                        headers: mapped.event.headers.map { KafkaHeader($0.name, $0.value) }))
                counters.produced.add(1, ordering: .relaxed)
            }
        case .filtered(let reason):
            if reason.hasPrefix("echo") {
                counters.echoes.add(1, ordering: .relaxed)
            } else {
                counters.filtered.add(1, ordering: .relaxed)
            }
        case .refused(let error):
            try producer.send(DeadLetter.record(for: record, error: error, topic: route.deadLetters.name))
            counters.deadLettered.add(1, ordering: .relaxed)
            log.warning(
                "dead-lettered",
                [
                    ("topic", .string(record.topic)), ("partition", .int(Int64(record.partition))),
                    ("offset", .int(record.offset)), ("code", .string(error.code.rawValue)),
                ])
        }
        pending[TopicPartition(record.topic, record.partition)] = record.offset + 1
        pendingRecords += 1
    }

    // MARK: - Batches

    private func ensureTransaction() throws {
        guard configuration.delivery == .exactlyOnce, !inTransaction else { return }
        try producer.beginTransaction()
        inTransaction = true
    }

    private var pendingOffsets: [TopicPartitionOffset] {
        pending.map { TopicPartitionOffset($0.key, offset: $0.value) }.sorted { $0.description < $1.description }
    }

    /// Commits the open batch: outputs and offsets together (exactly-once), or offsets after every
    /// output is delivered (at-least-once). An abortable failure aborts and rewinds instead.
    private func commitBatch() throws {
        guard pendingRecords > 0 || inTransaction else { return }
        let offsets = pendingOffsets
        do {
            if configuration.delivery == .exactlyOnce {
                if !offsets.isEmpty {
                    try retrying { () throws(KafkaError) in
                        try producer.sendOffsetsToTransaction(offsets, groupMetadata: consumer.groupMetadata())
                    }
                }
                try retrying { () throws(KafkaError) in try producer.commitTransaction() }
                inTransaction = false
                drainDeliveryReports()
                if commitsOutsideTransaction && !offsets.isEmpty { try consumer.commit(offsets) }
            } else {
                let reports = try producer.flush(timeout: .seconds(60))
                if let failed = reports.first(where: { $0.error != nil })?.error ?? deliveryFailure {
                    deliveryFailure = nil
                    throw KafkaError(code: failed.code, message: failed.message, requiresAbort: true)
                }
                try consumer.commit(offsets)
            }
            counters.commits.add(1, ordering: .relaxed)
        } catch let error as KafkaError where error.requiresAbort && !error.isFatal {
            log.warning("batch aborted, rewinding", [("error", .string(error.description))])
            try abortBatch()
            return
        }
        pending.removeAll(keepingCapacity: true)
        pendingRecords = 0
    }

    /// Drops the open batch and moves every assigned partition back to its committed offset.
    private func abortBatch() throws {
        if configuration.delivery == .exactlyOnce && inTransaction {
            try producer.abortTransaction()
            inTransaction = false
        }
        pending.removeAll(keepingCapacity: true)
        pendingRecords = 0
        counters.aborts.add(1, ordering: .relaxed)
        let assigned = try consumer.assignment()
        guard !assigned.isEmpty else { return }
        let committed = try consumer.committed(assigned).map { position in
            position.offset >= 0
                ? position : TopicPartitionOffset(position.topicPartition, offset: KafkaOffset.beginning)
        }
        try consumer.seek(committed)
    }

    private func retrying(_ body: () throws(KafkaError) -> Void) throws(KafkaError) {
        var attempt = 0
        while true {
            do {
                try body()
                return
            } catch  where error.isRetriable && !error.requiresAbort && attempt < 5 {
                attempt += 1
                log.warning("retrying", [("attempt", .int(Int64(attempt))), ("error", .string(error.description))])
            }
        }
    }

    private func drainDeliveryReports() {
        for report in producer.poll() where report.error != nil {
            deliveryFailure = deliveryFailure ?? report.error
        }
    }

    /// Inside poll: revoked partitions get their work committed first; lost ones are aborted.
    private func rebalanced(_ event: RebalanceEvent) {
        counters.rebalances.add(1, ordering: .relaxed)
        do {
            switch event {
            case .assigned(let partitions):
                log.info("assigned", [("partitions", .int(Int64(partitions.count)))])
            case .revoked(let partitions):
                log.info("revoked", [("partitions", .int(Int64(partitions.count)))])
                try commitBatch()
            case .lost(let partitions):
                log.warning("lost", [("partitions", .int(Int64(partitions.count)))])
                if configuration.delivery == .exactlyOnce && inTransaction {
                    try producer.abortTransaction()
                    inTransaction = false
                }
                pending.removeAll()
                pendingRecords = 0
            }
        } catch let error as KafkaError {
            rebalanceFailure = error
        } catch {
            rebalanceFailure = KafkaError(code: .fatal, message: "\(error)", isFatal: true)
        }
    }
}

/// What a worker has done, for logs and metrics.
public final class WorkerCounters: Sendable {
    public let consumed = Atomic<Int>(0)
    public let produced = Atomic<Int>(0)
    public let deadLettered = Atomic<Int>(0)
    public let filtered = Atomic<Int>(0)
    public let echoes = Atomic<Int>(0)
    public let commits = Atomic<Int>(0)
    public let aborts = Atomic<Int>(0)
    public let rebalances = Atomic<Int>(0)

    var logFields: [(String, LogValue)] {
        [
            ("consumed", .int(Int64(consumed.load(ordering: .relaxed)))),
            ("produced", .int(Int64(produced.load(ordering: .relaxed)))),
            ("dead_lettered", .int(Int64(deadLettered.load(ordering: .relaxed)))),
            ("filtered", .int(Int64(filtered.load(ordering: .relaxed)))),
            ("echoes", .int(Int64(echoes.load(ordering: .relaxed)))),
            ("commits", .int(Int64(commits.load(ordering: .relaxed)))),
            ("aborts", .int(Int64(aborts.load(ordering: .relaxed)))),
        ]
    }
}
