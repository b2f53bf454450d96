import Connectors
import Foundation
import Kafka
import Membership
import ProspectToCash
import Runtime
import Synchronization
import Topology

/// One member of an apply fleet: consumes `<side>.<stream>.inbound` in a consumer group and
/// writes each document's events into the system, in order, many documents at once.
///
/// Offsets are committed only up to the first record not yet written or dead-lettered
/// (at-least-once into idempotent upserts: a record written again writes the same values).
/// A 429 pauses the partitions it concerns for its `Retry-After` (the loop goes on polling, so the
/// member stays in its group) and takes a quarter off the requests in flight, which then grow back
/// one by one.
///
/// `run()` blocks its thread until `stop()`; the writes run on Swift concurrency and report back
/// through an inbox the loop drains.
public final class Applier: ConsumeLoopMember, @unchecked Sendable {
    // @unchecked: the queues, ledgers and limits below are touched only by the thread in `run()`
    // (the rebalance handler runs inside `consumer.poll` on it). `inbox`, `loop.stopRequest` and the
    // metrics are synchronized.
    public let configuration: ApplyConfiguration
    public let metrics: ApplyMetrics
    /// One lane per identity: its sink, its own rounds in flight, limit and pause (the service's
    /// limits are per user).
    var lanes: [Lane]
    let consumer: KafkaConsumer
    let producer: KafkaProducer
    /// Inbound topic → its stream and dead-letter topic.
    let routes: [String: (stream: SyncStream, deadLetters: String)]
    let log: Log
    /// Polling, probes, rebalances and the way out, as every fleet member has them.
    let loop: ConsumeLoop

    var queues: [String: DocumentQueue] = [:]
    /// `$batch` rounds in flight, over every lane.
    var rounds: Int { lanes.reduce(0) { $0 + $1.rounds } }
    /// Documents with records, in the order they got them (scanned for the next round).
    var order: [String] = []
    var ledgers: [TopicPartition: PartitionLedger] = [:]
    var committed: [TopicPartition: Int64] = [:]
    var queued = 0
    var pausedUntil: [TopicPartition: ContinuousClock.Instant] = [:]
    var pausedForMemory = false
    var lastCommit = ContinuousClock.now
    /// When a write last went through: a write failing since before then fails on its own.
    var lastApplied = ContinuousClock.now
    var deadLettersSinceFlush = 0
    var nextRound: UInt64 = 0
    let inbox = Inbox()

    /// Finished rounds, handed from the tasks that wrote them to the loop.
    final class Inbox: Sendable {
        private let state = Mutex<[Finished]>([])
        private let signal = DispatchSemaphore(value: 0)

        func post(_ finished: Finished) {
            state.withLock { $0.append(finished) }
            signal.signal()
        }

        func take() -> [Finished] {
            state.withLock { state in
                defer { state.removeAll() }; return state
            }
        }

        /// Waits up to `timeout` for a post.
        func wait(_ timeout: Duration) { _ = signal.wait(timeout: .now() + timeout.seconds) }
    }

    /// One identity's share: `$batch` rounds in flight at most `limit` (AIMD), none started before
    /// `throttledUntil`.
    struct Lane {
        var sink: any DocumentSink
        var window: ConcurrencyWindow
        var rounds = 0
        var throttledUntil = ContinuousClock.now
    }

    struct Finished: Sendable {
        var lane: Int
        var started: ContinuousClock.Instant
        var documents: [(key: String, round: UInt64, count: Int)]
        var outcomes: [[ApplyOutcome]]
    }

    public init(
        configuration: ApplyConfiguration, catalog: TopicCatalog, sinks: [any DocumentSink], log: Log = Log()
    ) throws {
        precondition(!sinks.isEmpty, "apply needs at least one identity")
        self.configuration = configuration
        lanes = sinks.map { Lane(sink: $0, window: ConcurrencyWindow(maximum: configuration.maxConcurrency)) }
        self.log = log.with([("side", .string(configuration.side.rawValue))])
        metrics = ApplyMetrics(side: configuration.side)
        var routes: [String: (SyncStream, String)] = [:]
        for stream in SyncStream.allCases where configuration.streams.isEmpty || configuration.streams.contains(stream)
        {
            guard let input = catalog.topic(.inbound, side: configuration.side, stream: stream),
                let deadLetters = catalog.topic(.inboundDLQ, side: configuration.side, stream: stream)
            else { continue }
            routes[input.name] = (stream, deadLetters.name)
        }
        guard !routes.isEmpty else {
            throw UsageError(
                "streams: none of \(configuration.streams.map(\.rawValue)) arrives for \(configuration.side.rawValue)")
        }
        self.routes = routes
        let consumerConfiguration = ConsumerConfiguration(
            kafka: configuration.kafka, groupID: configuration.resolvedGroupID,
            sessionTimeoutMilliseconds: configuration.sessionTimeout.inMilliseconds)
        let producerConfiguration = ProducerConfiguration(kafka: configuration.kafka, transactionalID: nil)
        try consumerConfiguration.validate()
        try producerConfiguration.validate()
        consumer = try KafkaConsumer(configuration: consumerConfiguration)
        producer = try KafkaProducer(configuration: producerConfiguration)
        loop = ConsumeLoop(
            consumer: consumer, liveness: metrics.liveness, rebalances: metrics.rebalances,
            shutdownTimeout: configuration.shutdownTimeout,
            sessionTimeout: configuration.sessionTimeout, log: self.log)
    }

    /// Asks `run()` to finish the writes in flight, commit, leave the group and return within
    /// `shutdownTimeout` of this call.
    public func stop() {
        loop.stop()
    }

    public func run() throws {
        try consumer.subscribe(routes.keys.sorted())
        log.info(
            "apply started",
            [
                ("topics", .string(routes.keys.sorted().joined(separator: ","))),
                ("group_id", .string(configuration.resolvedGroupID)),
                ("max_concurrency", .int(Int64(configuration.maxConcurrency))),
            ])
        try loop.run(self)
        log.info("apply stopped", metrics.logFields)
    }

    package func beforePoll() -> Duration? {
        rounds > 0 || queued > 0 ? .milliseconds(5) : .milliseconds(50)
    }

    /// Takes finished rounds in, starts new ones, resumes partitions whose pause is over, commits when due.
    package func afterPoll(idle: Bool) throws {
        try settle(inbox.take())
        dispatch()
        resumePartitions()
        _ = producer.poll()
        if ContinuousClock.now - lastCommit >= configuration.commitInterval {
            commit()
        }
    }

    // MARK: - Reading

    /// Queues `record` behind the earlier records of its document; an event that cannot be read
    /// is dead-lettered at once.
    package func take(_ record: KafkaRecord) throws {
        guard let route = routes[record.topic] else { return }
        metrics.consumed.add()
        let partition = TopicPartition(record.topic, record.partition)
        ledgers[partition, default: PartitionLedger()].read(record.offset)
        let type = String(decoding: record.header(CloudEvent.Header.type)?.value ?? [], as: UTF8.self)
        guard let (table, action) = CloudEvent.recordAndAction(ofType: type) else {
            try deadLetter(
                record, route: route, code: "bad_event",
                message: "ce_type \"\(type)\" is not <table>.upserted or .deleted")
            return
        }
        let deleted = action == .deleted
        guard let value = record.value, let object = (try? JSONParser.parse(value))?.objectValue else {
            try deadLetter(record, route: route, code: "bad_event", message: "the value is not a JSON object")
            return
        }
        // The company: `ce_company`, else the key's `<company>/` prefix.
        let company =
            record.header(CloudEvent.Header.company)?.value.map { String(decoding: $0, as: UTF8.self) }
            ?? record.key.flatMap { key in
                key.firstIndex(of: UInt8(ascii: "/")).map { String(decoding: key[..<$0], as: UTF8.self) }
            }
        let item = ApplyItem(table: String(table), deleted: deleted, record: object, company: company)
        let key = record.topic + "\u{0}" + String(decoding: record.key ?? [], as: UTF8.self)
        if queues[key] == nil {
            queues[key] = DocumentQueue(partition: partition)
        }
        if queues[key]!.records.isEmpty { order.append(key) }
        queues[key]!.records.append(PendingRecord(record: record, item: item))
        queued += 1
        if queued >= configuration.maxQueuedRecords && !pausedForMemory {
            pausedForMemory = true
            try? consumer.pause(Array(ledgers.keys))
        }
    }

    // MARK: - Writing

    /// Starts rounds while fewer than `limit` are in flight: each takes up to `batchDocuments`
    /// documents that are not in flight and not waiting.
    func dispatch() {
        let now = ContinuousClock.now
        guard !loop.isStopping else { return }
        var scanned = 0
        while scanned < order.count {
            // The lane with room and no pause that has the fewest rounds in flight.
            guard
                let lane = lanes.indices.filter({
                    lanes[$0].rounds < lanes[$0].window.limit && now >= lanes[$0].throttledUntil
                })
                .min(by: { lanes[$0].rounds < lanes[$1].rounds })
            else { break }
            var documents: [(key: String, round: UInt64, count: Int)] = []
            var items: [[ApplyItem]] = []
            while scanned < order.count && documents.count < configuration.batchDocuments {
                let key = order[scanned]
                scanned += 1
                guard var queue = queues[key], queue.inFlight == 0, !queue.records.isEmpty, queue.notBefore <= now,
                    pausedUntil[queue.partition] == nil
                else { continue }
                nextRound += 1
                queue.round = nextRound
                queue.inFlight = min(queue.records.count, configuration.documentEvents)
                queues[key] = queue
                documents.append((key, queue.round, queue.inFlight))
                items.append(
                    queue.records.prefix(queue.inFlight).map { pending in
                        var item = pending.item
                        item.waiting = pending.waitingSince != nil
                        return item
                    })
            }
            guard !documents.isEmpty else { break }
            lanes[lane].rounds += 1
            let round = documents
            let sink = lanes[lane].sink
            Task { [inbox] in
                let outcomes = await sink.apply(items)
                inbox.post(Finished(lane: lane, started: now, documents: round, outcomes: outcomes))
            }
        }
        // Documents left without records drop out of the scan.
        if order.count > 256 && order.count > queues.count * 2 {
            order = order.filter { queues[$0].map { !$0.records.isEmpty } ?? false }
        }
    }

    /// Takes finished rounds in: written and refused records are done, the rest wait for a later round.
    func settle(_ finished: [Finished]) throws {
        for round in finished {
            lanes[round.lane].rounds -= 1
            var throttled = false
            var failed = false
            for (document, outcomes) in zip(round.documents, round.outcomes) {
                guard var queue = queues[document.key], queue.round == document.round, queue.inFlight > 0 else {
                    continue
                }
                var kept: [PendingRecord] = []
                var blocked = false
                for (position, outcome) in outcomes.enumerated() {
                    var pending = queue.records[position]
                    let route = routes[pending.record.topic]!
                    switch outcome {
                    case .refused(let code, let message, let request):
                        var text = message
                        if let request { text += " (\(request))" }
                        try deadLetter(pending.record, route: route, code: code, message: text)
                        continue
                    case .applied:
                        // The sink applies a write only where its document's order allows.
                        metrics.applied.add()
                        lastApplied = .now
                        done(pending.record)
                        continue
                    case .throttled(let pause) where !blocked:
                        throttled = true
                        metrics.throttled.add()
                        lanes[round.lane].throttledUntil = max(lanes[round.lane].throttledUntil, .now + pause)
                        // Another identity not paused takes the document at once; when every one
                        // is paused, so are the document and its partition.
                        let now = ContinuousClock.now
                        if let soonest = lanes.map(\.throttledUntil).min(), soonest > now {
                            queue.delay(by: soonest - now)
                            pausePartition(queue.partition, for: soonest - now)
                        }
                    case .unavailable(let reason) where !blocked:
                        // One document failing while others are written goes to the dead letters
                        // after `unavailableWait`; while nothing is written (the service is down)
                        // everything waits.
                        let since = pending.failingSince ?? .now
                        let wait = configuration.unavailableWait
                        if ContinuousClock.now - since >= wait && lastApplied > since {
                            try deadLetter(
                                pending.record, route: route, code: "unavailable",
                                message:
                                    "\(reason) (failing for \(configuration.unavailableWait.inMilliseconds) ms while other writes went through)"
                            )
                            continue
                        }
                        pending.failingSince = since
                        failed = true
                        metrics.retried.add()
                        queue.delay()
                        // Logged from the fourth failed round in a row (a 2 s pause) on.
                        if queue.failures >= 4 {
                            log.warning("write failed, retrying", [("error", .string(reason))])
                        }
                    case .referenceMissing(let reason):
                        // Each waiting write counts its own wait.
                        let since = pending.waitingSince ?? .now
                        if ContinuousClock.now - since >= configuration.referenceWait {
                            try deadLetter(
                                pending.record, route: route, code: "reference_missing",
                                message: "\(reason), after waiting \(configuration.referenceWait.inMilliseconds) ms")
                            continue
                        }
                        if pending.waitingSince == nil {
                            log.debug("waiting for a reference", [("reason", .string(reason))])
                        }
                        pending.waitingSince = since
                        metrics.waiting.add()
                        if !blocked { queue.delay() }
                    default:
                        break
                    }
                    blocked = true
                    kept.append(pending)
                }
                if !blocked { queue.failures = 0 }
                queue.records.replaceSubrange(0..<outcomes.count, with: kept)
                queued -= outcomes.count - kept.count
                queue.inFlight = 0
                if queue.records.isEmpty {
                    queues[document.key] = nil
                } else {
                    queues[document.key] = queue
                }
            }
            adjustLimit(lane: round.lane, throttled: throttled, failed: failed, started: round.started)
        }
        if pausedForMemory && queued < configuration.maxQueuedRecords / 2 {
            pausedForMemory = false
            let resumable = ledgers.keys.filter { pausedUntil[$0] == nil }
            try? consumer.resume(Array(resumable))
        }
    }

    /// The lane's window after a round: narrower after a 429, wider after enough rounds that went
    /// through (`ConcurrencyWindow`).
    func adjustLimit(lane index: Int, throttled: Bool, failed: Bool, started: ContinuousClock.Instant) {
        if throttled {
            lanes[index].window.throttled(startedAt: started, shared: lanes.count > 1)
        } else if !failed {
            lanes[index].window.succeeded()
        }
        metrics.concurrency.store(lanes.reduce(0) { $0 + $1.window.limit }, ordering: .relaxed)
    }

    func pausePartition(_ partition: TopicPartition, for pause: Duration) {
        let until = ContinuousClock.now + pause
        if let already = pausedUntil[partition], already >= until { return }
        if pausedUntil[partition] == nil, !pausedForMemory { try? consumer.pause([partition]) }
        pausedUntil[partition] = until
    }

    func resumePartitions() {
        guard !pausedUntil.isEmpty else { return }
        let now = ContinuousClock.now
        let due = pausedUntil.filter { $0.value <= now }.map(\.key)
        guard !due.isEmpty else { return }
        for partition in due { pausedUntil[partition] = nil }
        if !pausedForMemory { try? consumer.resume(due) }
    }

    /// Sends `record` to its dead-letter topic with the reason; it counts as done once sent (the
    /// producer is idempotent and flushed before the next commit). A producer queue that stays
    /// full for `deadLetterTimeout`, or a refusal, ends the member with an error: the record's
    /// offset is not committed, so the partition's next owner takes it again.
    func deadLetter(
        _ record: KafkaRecord, route: (stream: SyncStream, deadLetters: String), code: String, message: String
    ) throws {
        let letter = DeadLetter.record(for: record, code: code, message: message, topic: route.deadLetters)
        let deadline = ContinuousClock.now + configuration.deadLetterTimeout
        while true {
            do {
                _ = try producer.send(letter)
                break
            } catch  where error.code == .queueFull && ContinuousClock.now < deadline {
                // A full queue: deliver some and try again.
                _ = producer.poll(timeout: .milliseconds(100))
            } catch {
                throw ApplyFailure.deadLetterNotWritten(topic: route.deadLetters, reason: "\(error)")
            }
        }
        deadLettersSinceFlush += 1
        metrics.deadLettered.add()
        log.warning(
            "dead-lettered",
            [
                ("topic", .string(record.topic)), ("partition", .int(Int64(record.partition))),
                ("offset", .int(record.offset)), ("code", .string(code)), ("message", .string(message)),
            ])
        done(record)
    }

    func done(_ record: KafkaRecord) {
        ledgers[TopicPartition(record.topic, record.partition)]?.finish(record.offset)
    }

    // MARK: - Offsets

    /// Commits each partition's offset after its longest done prefix, once the dead letters among
    /// them are delivered.
    func commit(timeout: Duration = .seconds(10)) {
        lastCommit = .now
        if deadLettersSinceFlush > 0 {
            do {
                let reports = try producer.flush(timeout: timeout)
                if let failure = reports.first(where: { $0.error != nil })?.error {
                    log.warning("dead letter not delivered; offsets kept", [("error", .string(failure.description))])
                    return
                }
                deadLettersSinceFlush = 0
            } catch {
                log.warning("dead letters not delivered in time; offsets kept", [("error", .string(error.description))])
                return
            }
        }
        var offsets: [TopicPartitionOffset] = []
        for (partition, ledger) in ledgers {
            guard let next = ledger.committable, next > committed[partition] ?? -1 else { continue }
            offsets.append(TopicPartitionOffset(partition, offset: next))
        }
        guard !offsets.isEmpty else { return }
        do {
            try consumer.commit(offsets, timeout: timeout)
            for offset in offsets { committed[offset.topicPartition] = offset.offset }
            metrics.commits.add()
        } catch {
            log.warning("offsets not committed; retrying later", [("error", .string(error.description))])
        }
    }
}

/// Why an apply member stopped.
public enum ApplyFailure: Error, CustomStringConvertible {
    /// A dead letter could not be handed to the producer in time.
    case deadLetterNotWritten(topic: String, reason: String)

    public var description: String {
        switch self {
        case .deadLetterNotWritten(let topic, let reason): "a dead letter for \(topic) could not be sent: \(reason)"
        }
    }
}
