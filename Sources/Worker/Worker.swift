import Foundation
import Kafka
import Membership
import ProspectToCash
import Runtime
import Synchronization
import Topology

/// One worker of a flow's fleet: consume → map → produce, with the input offsets committed in the
/// same Kafka transaction as the outputs and dead letters (or after delivery, at-least-once).
///
/// `run()` blocks its thread until `stop()`; run it on a dedicated thread. Records of one partition
/// are processed and produced in order, and outputs keep their key, so a line never overtakes its header.
public final class Worker: ConsumeLoopMember, @unchecked Sendable {
    // @unchecked: the batch state below is touched only by the thread in `run()`; the rebalance
    // handler runs inside `consumer.poll` on that same thread. `loop.stopRequest` and `metrics` are synchronized.
    public let configuration: WorkerConfiguration
    public let metrics: WorkerMetrics
    /// The producer's transactional id (exactly-once), resolved once for this worker.
    public let transactionalID: String?
    let translator: RecordTranslator
    let consumer: KafkaConsumer
    let producer: KafkaProducer
    /// Input topic → its route.
    let routes: [String: Route]
    let log: Log
    /// Polling, probes, rebalances and the way out, as every fleet member has them.
    let loop: ConsumeLoop
    /// Set once the worker is on its way out (a stop, or a failure): every wait ends by then.
    var shutdownDeadline: ContinuousClock.Instant? { loop.shutdownDeadline }

    var batch = OpenBatch()
    var transaction = Transaction.none
    var deliveryFailure: KafkaError?
    var commitsOutsideTransaction: Bool
    /// Offsets whose commit the group refused during a rebalance, for partitions this worker may
    /// still own: committed with the next batch, or on their own once the rebalance is over.
    /// Without this, a quiet partition that stays here keeps its old committed offset for good.
    var refusedOffsets: [TopicPartition: Int64] = [:]
    var refusedAt = ContinuousClock.now
    /// At-least-once: closed batches whose offsets wait for their outputs' delivery reports (the
    /// loop never blocks on a flush), what has been delivered, and the open batch's last send.
    var sealed: [SealedBatch] = []
    var deliveries = DeliveryWindow()
    var lastSentID: UInt64?
    /// At-least-once: sends allowed in flight (two batches' worth) before the worker stops
    /// reading to let deliveries catch up.
    var maxInFlight: Int { max(2_000, configuration.commitMaxRecords * 2) }
    /// Exactly-once: outputs held back while more input is at hand, then handed to the producer
    /// together (at most `outboxLimit`, when the input runs dry, before a commit). librdkafka adds
    /// a transaction's partitions in rounds of AddPartitionsToTxn, each started 1 ms after the
    /// first partition that waits for it, and 2.0.2 spins its main thread through that millisecond
    /// (fixed in 2.3.1): outputs sent one by one, to partitions joining the transaction one by one,
    /// started a round (and a spin) every millisecond — up to a third of a worker's CPU.
    var outbox: [OutgoingRecord] = []
    static let outboxLimit = 250
    let commitQueue = DispatchQueue(label: "p2c.worker.commit")

    /// Exactly-once: where the producer's transaction stands.
    enum Transaction {
        /// None is open; the next record begins one.
        case none
        /// Open: outputs, dead letters and, at the commit, offsets go into it.
        case open
        /// Its batch is committing on `commitQueue` while the loop reads and maps the next one (whose
        /// outputs wait in the outbox: a producer has one transaction at a time). A commit waits for
        /// the broker to take every record of the transaction, tens of milliseconds a batch, which
        /// the worker otherwise spent idle.
        case committing(CommitInFlight)
    }

    var isTransactionOpen: Bool {
        if case .open = transaction { return true }
        return false
    }

    /// The commit in flight, if any.
    var inFlight: CommitInFlight? {
        if case .committing(let commit) = transaction { return commit }
        return nil
    }

    struct SealedBatch {
        var offsets: [TopicPartitionOffset]
        /// The batch's last send; its offsets are committed once it and every send before it is delivered.
        var lastSentID: UInt64?
        var timestamps: [Int64]
    }

    /// Builds the clients and the maps; fails naming the bad setting.
    public init(configuration: WorkerConfiguration, catalog: TopicCatalog, log: Log = Log()) throws {
        self.configuration = configuration
        metrics = WorkerMetrics(flow: configuration.flow)
        self.log = log.with([("flow", .string(configuration.flow.rawValue))])
        translator = RecordTranslator(
            mapper: try Mapper(configuration: configuration.mapping), flow: configuration.flow, catalog: catalog)
        let routes = catalog.routes(for: configuration.flow).filter {
            configuration.streams.isEmpty || configuration.streams.contains($0.stream)
        }
        guard !routes.isEmpty else {
            throw UsageError(
                "streams: none of \(configuration.streams.map(\.rawValue)) flows \(configuration.flow.rawValue)")
        }
        self.routes = Dictionary(uniqueKeysWithValues: routes.map { ($0.input.name, $0) })

        var consumerConfiguration = ConsumerConfiguration(
            kafka: configuration.kafka, groupID: configuration.resolvedGroupID,
            sessionTimeoutMilliseconds: configuration.sessionTimeout.inMilliseconds)
        consumerConfiguration.groupInstanceID = configuration.groupInstanceID
        consumerConfiguration.statisticsIntervalMilliseconds = 5_000
        commitsOutsideTransaction = configuration.commitOffsetsOutsideTransaction
        transactionalID = configuration.delivery == .exactlyOnce ? configuration.makeTransactionalID() : nil
        var producerConfiguration = ProducerConfiguration(kafka: configuration.kafka, transactionalID: transactionalID)
        producerConfiguration.transactionTimeoutMilliseconds = configuration.transactionTimeout.inMilliseconds
        // Both checked before either client starts talking to the cluster.
        try consumerConfiguration.validate()
        try producerConfiguration.validate()
        consumer = try KafkaConsumer(configuration: consumerConfiguration)
        producer = try KafkaProducer(configuration: producerConfiguration)
        loop = ConsumeLoop(
            consumer: consumer, liveness: metrics.liveness, rebalances: metrics.rebalances,
            shutdownTimeout: configuration.shutdownTimeout,
            sessionTimeout: configuration.sessionTimeout, log: self.log)
    }

    /// Asks `run()` to finish its batch, leave the group and return, within
    /// `shutdownTimeout` of this call.
    public func stop() {
        loop.stop()
    }

    /// Runs until `stop()`; throws on fatal errors (fenced, broker-rejected configuration...).
    public func run() throws {
        consumer.onStatistics { [metrics] json in metrics.updateLag(statistics: json) }
        if configuration.delivery == .exactlyOnce {
            guard try initTransactionsUntilStopped() else {
                log.info("stopped before the cluster answered")
                return
            }
            // librdkafka 2.0.2's mock acknowledges transactional offsets without storing them.
            if !commitsOutsideTransaction, let cluster = producer.clusterID(), cluster.hasPrefix("mockCluster") {
                commitsOutsideTransaction = true
                log.info(
                    "embedded broker: offsets are also committed outside the transaction",
                    [("cluster", .string(cluster))])
            }
        }
        let outputs = Set(translator.outputTopicNames + routes.values.map(\.deadLetters.name)).sorted()
        do {
            try producer.prepare(topics: outputs, timeout: .seconds(5))
        } catch {
            // Only a head start: sending learns the same later.
            log.warning("output topics' metadata not known yet", [("error", .string(error.description))])
        }
        try consumer.subscribe(Array(routes.keys).sorted())
        var started: [(String, LogValue)] = [
            ("topics", .string(routes.keys.sorted().joined(separator: ","))),
            ("group_id", .string(configuration.resolvedGroupID)),
            ("delivery", .string(configuration.delivery.rawValue)),
        ]
        if let transactionalID { started.append(("transactional_id", .string(transactionalID))) }
        if let instance = configuration.groupInstanceID { started.append(("group_instance_id", .string(instance))) }
        log.info("worker started", started)
        try loop.run(self)
        log.info("worker stopped", metrics.logFields)
    }

    /// Registers the transactional id, honouring a stop meanwhile. False when stopped first.
    func initTransactionsUntilStopped() throws -> Bool {
        try producer.initTransactions(until: { loop.isStopping }) { failure in
            log.warning("waiting for the cluster", [("error", .string(failure.description))])
        }
    }

    /// How long the next poll may wait, after the work due before it: nil while at-least-once
    /// deliveries catch up (no more input until then: memory stays bounded).
    package func beforePoll() throws -> Duration? {
        if configuration.delivery == .atLeastOnce && producer.outstanding > maxInFlight {
            record(producer.poll(timeout: .milliseconds(1)))
            if !sealed.isEmpty { try commitDelivered() }
            return nil
        }
        if let commit = inFlight, commit.isDone {
            try finishCommitInFlight()
            if !outbox.isEmpty { try ensureTransaction() }
        }
        // With outputs held back, only look: an empty queue sends them at once. While a commit
        // is in flight, look every millisecond for its end.
        return inFlight != nil ? .milliseconds(1) : outbox.isEmpty ? .milliseconds(50) : .zero
    }

    package func take(_ record: KafkaRecord) throws {
        do {
            try process(record)
        } catch let error as KafkaError {
            try abortBatch(refusedSend: error)
        }
    }

    package func afterPoll(idle: Bool) throws {
        if isTransactionOpen && !outbox.isEmpty && (idle || outbox.count >= Self.outboxLimit) {
            try sendOutbox()
        }
        // The commit in flight serves the producer's callbacks meanwhile.
        if inFlight == nil { drainDeliveryReports() }
        if configuration.delivery == .atLeastOnce && !sealed.isEmpty { try commitDelivered() }
        if batch.isEmpty && !refusedOffsets.isEmpty && ContinuousClock.now - refusedAt >= .milliseconds(500) {
            try commitDuringRebalanceIfNeeded([])
        }
        if batch.isDue(
            maxRecords: configuration.commitMaxRecords,
            interval: configuration.commitInterval)
        {
            try commitBatch()
        }
    }

    // MARK: - One record

    func process(_ record: KafkaRecord) throws {
        guard let route = routes[record.topic] else { return }
        let started = ContinuousClock.now
        let counters = metrics.streams[route.stream]!
        counters.consumed.add()
        if inFlight != nil { metrics.readWhileCommitting.add() }
        try ensureTransaction()
        if configuration.passThrough {
            try send(
                OutgoingRecord(topic: route.output.name, key: record.key, value: record.value, headers: record.headers))
            counters.produced.add()
            finish(record, started: started)
            return
        }
        let outcome = translator.outcome(of: record, stream: route.stream)
        switch outcome {
        case .mapped(let events):
            for mapped in events {
                guard let output = translator.record(for: mapped) else { continue }
                try send(output)
                // Usually the input's stream: no lookup (hashing a stream hashes its name).
                (mapped.stream == route.stream ? counters : metrics.streams[mapped.stream])?.produced.add()
            }
        case .filtered:
            if outcome.isEcho {
                counters.echoes.add()
            } else {
                counters.filtered.add()
            }
        case .refused(let error):
            try send(DeadLetter.record(for: record, error: error, topic: route.deadLetters.name))
            counters.deadLettered.add()
            log.warning(
                "dead-lettered",
                [
                    ("topic", .string(record.topic)), ("partition", .int(Int64(record.partition))),
                    ("offset", .int(record.offset)), ("code", .string(error.code.rawValue)),
                ])
        }
        finish(record, started: started)
    }

    /// Sends one output or dead letter (exactly-once: into the outbox), keeping its id for
    /// at-least-once commits.
    func send(_ record: OutgoingRecord) throws {
        if configuration.delivery == .exactlyOnce {
            outbox.append(record)
            return
        }
        let id = try producer.send(record)
        if configuration.delivery == .atLeastOnce {
            deliveries.sent(id)
            lastSentID = id
        }
    }

    /// Hands the outbox to the producer, in order; a send refused aborts the batch. False when it aborted.
    @discardableResult
    func sendOutbox() throws -> Bool {
        do {
            for record in outbox { try producer.send(record) }
        } catch {
            try abortBatch(refusedSend: error)
            return false
        }
        outbox.removeAll(keepingCapacity: true)
        return true
    }

    /// A send refused inside a transaction (it turned abortable) or a full failure of the queue:
    /// aborts the batch to redo it from the committed offsets. A fatal error ends the worker.
    func abortBatch(refusedSend error: KafkaError) throws {
        guard !error.isFatal && producer.fatalError == nil else { throw error }
        log.warning("send failed, aborting the batch", [("error", .string(error.description))])
        try abortBatch()
    }

    /// Counts `record` into the open batch.
    func finish(_ record: KafkaRecord, started: ContinuousClock.Instant) {
        batch.add(record)
        let elapsed = ContinuousClock.now - started
        metrics.processing.observe(seconds: elapsed.seconds)
    }

}
