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
    // handler runs inside `consumer.poll` on that same thread. `stopping` and `metrics` are atomic.
    public let configuration: WorkerConfiguration
    public let metrics: WorkerMetrics
    /// The producer's transactional id (exactly-once), resolved once for this worker.
    public let transactionalID: String?
    private let translator: RecordTranslator
    private let consumer: KafkaConsumer
    private let producer: KafkaProducer
    /// Input topic → its route.
    private let routes: [String: Route]
    private let log: Log
    private let stopping = Atomic<Bool>(false)
    /// When `stop()` was first called: the shutdown deadline counts from there.
    private let stopRequested = Mutex<ContinuousClock.Instant?>(nil)
    /// Set once the worker is on its way out (a stop, or a failure): every wait ends by then.
    private var shutdownDeadline: ContinuousClock.Instant?

    private var batch = OpenBatch()
    private var transaction = Transaction.none
    private var deliveryFailure: KafkaError?
    private var rebalanceFailure: KafkaError?
    private var commitsOutsideTransaction: Bool
    /// Offsets whose commit the group refused during a rebalance, for partitions this worker may
    /// still own: committed with the next batch, or on their own once the rebalance is over.
    /// Without this, a quiet partition that stays here keeps its old committed offset for good.
    private var refusedOffsets: [TopicPartition: Int64] = [:]
    private var refusedAt = ContinuousClock.now
    /// At-least-once: closed batches whose offsets wait for their outputs' delivery reports (the
    /// loop never blocks on a flush), what has been delivered, and the open batch's last send.
    private var sealed: [SealedBatch] = []
    private var deliveries = DeliveryWindow()
    private var lastSentID: UInt64?
    /// At-least-once: sends allowed in flight (two batches' worth) before the worker stops
    /// reading to let deliveries catch up.
    private var maxInFlight: Int { max(2_000, configuration.commitMaxRecords * 2) }
    /// Exactly-once: outputs held back while more input is at hand, then handed to the producer
    /// together (at most `outboxLimit`, when the input runs dry, before a commit). librdkafka adds
    /// a transaction's partitions in rounds of AddPartitionsToTxn, each started 1 ms after the
    /// first partition that waits for it, and 2.0.2 spins its main thread through that millisecond
    /// (fixed in 2.3.1): outputs sent one by one, to partitions joining the transaction one by one,
    /// started a round (and a spin) every millisecond — up to a third of a worker's CPU.
    private var outbox: [OutgoingRecord] = []
    private static let outboxLimit = 250
    private let commitQueue = DispatchQueue(label: "p2c.worker.commit")

    /// Exactly-once: where the producer's transaction stands.
    private enum Transaction {
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

    private var isTransactionOpen: Bool {
        if case .open = transaction { return true }
        return false
    }

    /// The commit in flight, if any.
    private var inFlight: CommitInFlight? {
        if case .committing(let commit) = transaction { return commit }
        return nil
    }

    private struct SealedBatch {
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
            kafka: configuration.kafka, groupID: configuration.resolvedGroupID)
        consumerConfiguration.sessionTimeoutMilliseconds = configuration.sessionTimeoutMilliseconds
        consumerConfiguration.groupInstanceID = configuration.groupInstanceID
        consumerConfiguration.heartbeatIntervalMilliseconds = min(3_000, configuration.sessionTimeoutMilliseconds / 3)
        consumerConfiguration.statisticsIntervalMilliseconds = 5_000
        commitsOutsideTransaction = configuration.commitOffsetsOutsideTransaction
        transactionalID = configuration.delivery == .exactlyOnce ? configuration.makeTransactionalID() : nil
        var producerConfiguration = ProducerConfiguration(kafka: configuration.kafka, transactionalID: transactionalID)
        producerConfiguration.transactionTimeoutMilliseconds = configuration.transactionTimeoutMilliseconds
        // Both checked before either client starts talking to the cluster.
        try consumerConfiguration.validate()
        try producerConfiguration.validate()
        consumer = try KafkaConsumer(configuration: consumerConfiguration)
        producer = try KafkaProducer(configuration: producerConfiguration)
    }

    /// Asks `run()` to finish its batch, leave the group and return, within
    /// `shutdownTimeoutMilliseconds` of this call.
    public func stop() {
        stopRequested.withLock { $0 = $0 ?? .now }
        stopping.store(true, ordering: .relaxed)
    }

    /// `normal`, or what is left until the shutdown deadline once the worker is on its way out.
    private func timeout(_ normal: Duration) -> Duration {
        guard let deadline = shutdownDeadline else { return normal }
        return max(.zero, min(normal, deadline - .now))
    }

    /// Starts the shutdown clock (from the stop request when there was one).
    private func beginShutdown() {
        guard shutdownDeadline == nil else { return }
        let budget = Duration.milliseconds(configuration.shutdownTimeoutMilliseconds)
        shutdownDeadline = (stopRequested.withLock { $0 } ?? .now) + budget
    }

    /// Runs until `stop()`; throws on fatal errors (fenced, broker-rejected configuration...).
    public func run() throws {
        // Weak: a consumer closed by its deinit after the worker is gone must not call back into it.
        consumer.onRebalance { [weak self] event in self?.rebalanced(event) }
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
        do {
            try loop()
        } catch {
            log.error("worker failing", [("error", .string("\(error)"))])
            // Leave the group at once so that the partitions move to the rest of the fleet.
            beginShutdown()
            if let commit = inFlight, commit.wait(until: shutdownDeadline) != nil { transaction = .none }
            if isTransactionOpen { try? producer.abortTransaction(timeout: timeout(.seconds(5))) }
            leaveGroup()
            throw error
        }
        shutDown()
        log.info("worker stopped", metrics.logFields)
    }

    /// The way out after a stop: the last commit, leaving the group and the final flush, each
    /// bounded by the shutdown deadline. What cannot finish by then is given up and logged, never
    /// waited for: its records are redone by the partitions' next owner, with the same output ids.
    private func shutDown() {
        beginShutdown()
        do {
            try commitBatch(draining: true)
        } catch {
            log.warning(
                "last batch not committed; the partitions' next owner redoes it",
                [("records", .int(Int64(batch.count))), ("error", .string("\(error)"))])
            if configuration.delivery == .exactlyOnce && isTransactionOpen {
                try? producer.abortTransaction(timeout: timeout(.seconds(5)))
            }
        }
        leaveGroup()
        if configuration.delivery == .atLeastOnce, producer.outstanding > 0 {
            _ = try? producer.flush(timeout: timeout(.seconds(10)))
        }
    }

    /// Leaves the group by the shutdown deadline, or logs that it gave up: the group then moves
    /// this member's partitions only once its session times out.
    private func leaveGroup() {
        do {
            if try !consumer.close(timeout: timeout(.seconds(30))) {
                log.warning(
                    "gave up leaving the group at the shutdown deadline; its partitions move when the session times out",
                    [("session_timeout_ms", .int(Int64(configuration.sessionTimeoutMilliseconds)))])
            }
        } catch {
            log.warning("leaving the group failed", [("error", .string(error.description))])
        }
        if let failure = rebalanceFailure {
            log.warning("work on revoked partitions given up", [("error", .string("\(failure)"))])
        }
    }

    /// Registers the transactional id in short steps, so that a stop request is honoured while the
    /// cluster is unreachable (a timed-out call resumes when called again). False when stopped first.
    private func initTransactionsUntilStopped() throws -> Bool {
        while !stopping.load(ordering: .relaxed) {
            let failure: KafkaError?
            do {
                try producer.initTransactions(timeout: .seconds(2))
                failure = nil
            } catch {
                failure = error
            }
            guard let failure else { return true }
            guard failure.isRetriable || failure.code == .timedOut else { throw failure }
            log.warning("waiting for the cluster", [("error", .string(failure.description))])
        }
        return false
    }

    private func loop() throws {
        while !stopping.load(ordering: .relaxed) {
            metrics.tick()
            if !metrics.isReady && !consumer.memberID.isEmpty { metrics.joined.store(true, ordering: .relaxed) }
            if let failure = rebalanceFailure { throw failure }
            if configuration.delivery == .atLeastOnce && producer.outstanding > maxInFlight {
                // Backpressure: no more input until deliveries catch up (memory stays bounded).
                record(producer.poll(timeout: .milliseconds(1)))
                if !sealed.isEmpty { try commitDelivered() }
                continue
            }
            if let commit = inFlight, commit.isDone {
                try finishCommitInFlight()
                if !outbox.isEmpty { try ensureTransaction() }
            }
            // With outputs held back, only look: an empty queue sends them at once. While a commit
            // is in flight, look every millisecond for its end.
            let event = try consumer.poll(
                timeout: inFlight != nil ? .milliseconds(1) : outbox.isEmpty ? .milliseconds(50) : .zero)
            switch event {
            case .record(let record)?:
                do {
                    try process(record)
                } catch let error as KafkaError {
                    try abortBatch(refusedSend: error)
                }
            case .error(let error)?:
                log.warning("consumer error", [("error", .string(error.description))])
            case .partitionEnd?, nil:
                break
            }
            if isTransactionOpen && !outbox.isEmpty && (event == nil || outbox.count >= Self.outboxLimit) {
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
                interval: .milliseconds(configuration.commitIntervalMilliseconds))
            {
                try commitBatch()
            }
        }
    }

    // MARK: - One record

    private func process(_ record: KafkaRecord) throws {
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
    private func send(_ record: OutgoingRecord) throws {
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
    private func sendOutbox() throws -> Bool {
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
    private func abortBatch(refusedSend error: KafkaError) throws {
        guard !error.isFatal && producer.fatalError == nil else { throw error }
        log.warning("send failed, aborting the batch", [("error", .string(error.description))])
        try abortBatch()
    }

    /// Counts `record` into the open batch.
    private func finish(_ record: KafkaRecord, started: ContinuousClock.Instant) {
        batch.add(record)
        let elapsed = ContinuousClock.now - started
        metrics.processing.observe(
            seconds: Double(elapsed.components.attoseconds) / 1e18 + Double(elapsed.components.seconds))
    }

    // MARK: - Batches

    private func ensureTransaction() throws {
        guard configuration.delivery == .exactlyOnce, case .none = transaction else { return }
        try producer.beginTransaction()
        transaction = .open
    }

    /// Commits the open batch: outputs and offsets together (exactly-once). At-least-once closes
    /// it instead: its offsets are committed once its outputs are delivered (`commitDelivered`),
    /// or at once after waiting for every delivery when `draining` (a revoke, the shutdown). An
    /// abortable failure aborts and rewinds instead.
    private func commitBatch(draining: Bool = false) throws {
        if configuration.delivery == .atLeastOnce {
            if !batch.isEmpty {
                let (offsets, timestamps) = batch.take()
                sealed.append(SealedBatch(offsets: offsets, lastSentID: lastSentID, timestamps: timestamps))
                lastSentID = nil
            }
            if draining && !sealed.isEmpty {
                switch Result(catching: { () throws(KafkaError) in try producer.flush(timeout: timeout(.seconds(60))) })
                {
                case .success(let reports): record(reports)
                case .failure(let error) where error.isFatal: throw error
                case .failure(let error): deliveryFailure = deliveryFailure ?? error
                }
            }
            if sealed.isEmpty {
                if !refusedOffsets.isEmpty { try commitDuringRebalanceIfNeeded([]) }
                return
            }
            try commitDelivered()
            return
        }
        // One commit at a time: the one before ends (and its outcome is handled) first.
        try finishCommitInFlight()
        guard !batch.isEmpty || isTransactionOpen else {
            if !refusedOffsets.isEmpty { try commitDuringRebalanceIfNeeded([]) }
            return
        }
        // Outputs read while the commit before was in flight wait for this transaction.
        try ensureTransaction()
        guard try sendOutbox() else { return }
        let (offsets, timestamps) = batch.take()
        let commit = CommitInFlight(offsets: offsets, timestamps: timestamps)
        let metadata = commit.offsets.isEmpty ? nil : consumer.groupMetadata()
        commitQueue.async { [producer, log, shutdownDeadline] in
            func timeout() -> Duration { shutdownDeadline.map { max(.zero, $0 - .now) } ?? .seconds(60) }
            commit.finish(
                Result { () throws(KafkaError) in
                    if let metadata {
                        try Self.retrying(log: log, deadline: shutdownDeadline) { () throws(KafkaError) in
                            try producer.sendOffsetsToTransaction(
                                commit.offsets, groupMetadata: metadata, timeout: timeout())
                        }
                    }
                    try Self.retrying(log: log, deadline: shutdownDeadline) { () throws(KafkaError) in
                        try producer.commitTransaction(timeout: timeout())
                    }
                })
        }
        transaction = .committing(commit)
        // A revoke, a lost assignment or the shutdown needs the batch committed before it goes on.
        if draining { try finishCommitInFlight() }
    }

    /// Waits for the commit in flight, if any, and takes its outcome in: the batch counts as
    /// committed, or is aborted and rewound (with what was read meanwhile) when the commit failed
    /// abortably. A fatal failure ends the worker.
    private func finishCommitInFlight() throws {
        guard let commit = inFlight else { return }
        guard let outcome = commit.wait(until: shutdownDeadline) else {
            throw KafkaError(
                code: .timedOut, message: "the batch's transaction was still committing at the shutdown deadline")
        }
        transaction = .none
        switch outcome {
        case .success:
            drainDeliveryReports()
            if commitsOutsideTransaction && !commit.offsets.isEmpty {
                try commitDuringRebalanceIfNeeded(commit.offsets)
            }
            committed(timestamps: commit.timestamps)
        case .failure(let error):
            guard error.requiresAbort && !error.isFatal else { throw error }
            log.warning("batch aborted, rewinding", [("error", .string(error.description))])
            // The transaction to abort is the one that failed to commit.
            transaction = .open
            try abortBatch()
        }
    }

    /// At-least-once: commits the offsets of the closed batches whose outputs are all delivered,
    /// oldest first; a failed delivery aborts and rewinds to the committed offsets instead.
    private func commitDelivered() throws {
        if let failed = deliveryFailure {
            deliveryFailure = nil
            log.warning("delivery failed, rewinding", [("error", .string(failed.description))])
            try abortBatch()
            return
        }
        var done = 0
        var offsets: [TopicPartition: Int64] = [:]
        var timestamps: [Int64] = []
        for batch in sealed {
            if let last = batch.lastSentID, !deliveries.isDelivered(through: last) { break }
            for offset in batch.offsets { offsets[offset.topicPartition] = offset.offset }
            timestamps.append(contentsOf: batch.timestamps)
            done += 1
        }
        guard done > 0 else { return }
        sealed.removeFirst(done)
        try commitDuringRebalanceIfNeeded(offsets.map { TopicPartitionOffset($0.key, offset: $0.value) })
        committed(timestamps: timestamps)
    }

    /// Counts a commit and the end-to-end latency of its records.
    private func committed(timestamps: [Int64]) {
        metrics.commits.add()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for timestamp in timestamps {
            metrics.endToEnd.observe(seconds: Double(max(0, now - timestamp)) / 1000)
        }
    }

    /// Commits consumer offsets, with any refused earlier. A group in the middle of a rebalance
    /// refuses them (stale generation): they are kept and sent again after the rebalance for the
    /// partitions still here; a partition that moves is redone by its next owner from its
    /// committed offset, with the same output ids, which at-least-once allows and the
    /// transaction path only needs on the mock.
    private func commitDuringRebalanceIfNeeded(_ offsets: [TopicPartitionOffset]) throws(KafkaError) {
        var all = refusedOffsets
        for offset in offsets { all[offset.topicPartition] = max(all[offset.topicPartition] ?? 0, offset.offset) }
        guard !all.isEmpty else { return }
        do {
            try consumer.commit(
                all.map { TopicPartitionOffset($0.key, offset: $0.value) }, timeout: timeout(.seconds(30)))
            if !refusedOffsets.isEmpty {
                log.info("offsets refused during a rebalance now committed", [("partitions", .int(Int64(all.count)))])
            }
            refusedOffsets.removeAll()
        } catch  where Self.rebalanceCodes.contains(error.code) {
            if refusedOffsets.isEmpty {
                log.warning(
                    "offsets not committed during a rebalance; retrying after it",
                    [("error", .string(error.description))])
            }
            refusedOffsets = all
            refusedAt = .now
        }
    }

    /// Refusals that keep the offsets for later: a rebalance, or no answer in time.
    private static let rebalanceCodes: Set<KafkaError.Code> = [
        .illegalGeneration, .unknownMemberID, .rebalanceInProgress, .timedOut,
    ]

    /// Drops the open batch and moves every assigned partition back to its committed offset.
    private func abortBatch() throws {
        // A commit in flight ends first; if it fails, its own abort rewinds everything.
        if inFlight != nil {
            try finishCommitInFlight()
            guard !batch.isEmpty || isTransactionOpen || !outbox.isEmpty else { return }
        }
        if configuration.delivery == .exactlyOnce && isTransactionOpen {
            // An abort that fails retriably, or asks to be aborted again, is simply called again.
            try retrying(alsoWhenAbortRequired: true) { () throws(KafkaError) in
                try producer.abortTransaction(timeout: timeout(.seconds(60)))
            }
            transaction = .none
        }
        batch.reset()
        outbox.removeAll(keepingCapacity: true)
        // At-least-once: closed batches are redone too (what was delivered of them is sent again),
        // and what is still in flight no longer counts.
        sealed.removeAll()
        lastSentID = nil
        deliveries.abandon()
        deliveryFailure = nil
        metrics.aborts.add()
        let assigned = try consumer.assignment()
        guard !assigned.isEmpty else { return }
        // A partition whose last commit was refused restarts after its delivered work.
        let committed = try consumer.committed(assigned, timeout: timeout(.seconds(10))).map { position in
            if let done = refusedOffsets[position.topicPartition] {
                return TopicPartitionOffset(position.topicPartition, offset: done)
            }
            return position.offset >= 0
                ? position : TopicPartitionOffset(position.topicPartition, offset: KafkaOffset.beginning)
        }
        try consumer.seek(committed, timeout: timeout(.seconds(10)))
    }

    /// Calls `body` again while it fails retriably (or, with `alsoWhenAbortRequired`, asks for
    /// another abort), with a short growing pause, up to ten times.
    private func retrying(alsoWhenAbortRequired: Bool = false, _ body: () throws(KafkaError) -> Void) throws(KafkaError)
    {
        try Self.retrying(log: log, deadline: shutdownDeadline, alsoWhenAbortRequired: alsoWhenAbortRequired, body)
    }

    /// Retries stop at `deadline` (the shutdown's), if any.
    private static func retrying(
        log: Log, deadline: ContinuousClock.Instant?, alsoWhenAbortRequired: Bool = false,
        _ body: () throws(KafkaError) -> Void
    ) throws(KafkaError) {
        var attempt = 0
        while true {
            do {
                try body()
                return
            } catch
                where !error.isFatal && attempt < 10
                && (error.isRetriable && !error.requiresAbort || alsoWhenAbortRequired && error.requiresAbort)
                && deadline.map({ ContinuousClock.now < $0 }) ?? true
            {
                attempt += 1
                log.warning("retrying", [("attempt", .int(Int64(attempt))), ("error", .string(error.description))])
                var pause = Duration.milliseconds(100 * attempt)
                if let deadline { pause = min(pause, max(.zero, deadline - .now)) }
                Thread.sleep(
                    forTimeInterval: Double(pause.components.seconds) + Double(pause.components.attoseconds) / 1e18)
            }
        }
    }

    private func drainDeliveryReports() { record(producer.poll()) }

    /// Takes delivery reports in: failures to abort on, deliveries for at-least-once commits.
    private func record(_ reports: [DeliveryReport]) {
        for report in reports {
            if configuration.delivery == .atLeastOnce && !deliveries.counts(report.id) { continue }
            if let error = report.error {
                deliveryFailure = deliveryFailure ?? error
            } else if configuration.delivery == .atLeastOnce {
                deliveries.delivered(report.id)
            }
        }
    }

    /// Inside poll: revoked partitions get their work committed first; lost ones are aborted.
    private func rebalanced(_ event: RebalanceEvent) {
        metrics.rebalances.add()
        metrics.joined.store(true, ordering: .relaxed)
        defer { metrics.assignedPartitions.store((try? consumer.assignment().count) ?? 0, ordering: .relaxed) }
        do {
            switch event {
            case .assigned(let partitions):
                log.info("assigned", [("partitions", .int(Int64(partitions.count)))])
            case .revoked(let partitions):
                log.info("revoked", [("partitions", .int(Int64(partitions.count)))])
                try commitBatch(draining: true)
                // Their next owner starts from what the group holds.
                for partition in partitions { refusedOffsets[partition] = nil }
            case .lost(let partitions):
                log.warning("lost", [("partitions", .int(Int64(partitions.count)))])
                // What was committing may have made it; what did not is redone by the next owner.
                if let commit = inFlight, let outcome = commit.wait(until: shutdownDeadline) {
                    transaction = .none
                    if case .failure = outcome, configuration.delivery == .exactlyOnce {
                        try? producer.abortTransaction(timeout: timeout(.seconds(60)))
                    }
                }
                outbox.removeAll(keepingCapacity: true)
                if configuration.delivery == .exactlyOnce && isTransactionOpen {
                    try producer.abortTransaction(timeout: timeout(.seconds(60)))
                    transaction = .none
                }
                batch.reset()
                refusedOffsets.removeAll()
                sealed.removeAll()
                lastSentID = nil
            }
        } catch let error as KafkaError {
            rebalanceFailure = error
        } catch {
            rebalanceFailure = KafkaError(code: .fatal, message: "\(error)", isFatal: true)
        }
    }
}
