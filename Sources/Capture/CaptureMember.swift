import Connectors
import Foundation
import Kafka
import Membership
import ProspectToCash
import Runtime
import Synchronization
import Topology

/// One member of a side's capture fleet: polls each of its tables' change feed and publishes
/// the changes to `<side>.<stream>.changes`, in the same Kafka transaction as the table's new link
/// in `p2c.capture.state`, so that a crash neither loses nor repeats a page.
///
/// The tables are divided among the members through the state topic's partitions: a table's
/// state lives in one partition, and the member assigned that partition in the capture group
/// polls the table, after restoring its link and its rows' keys from the partition.
///
/// `run()` blocks its thread until `stop()`.
public final class CaptureMember: ConsumeLoopMember, @unchecked Sendable {
    // @unchecked: `tables` and `owned` are touched only by the thread in `run()` (the rebalance
    // handler runs inside `consumer.poll` on it); `loop.stopRequest` and the metrics are synchronized.
    public let configuration: CaptureConfiguration
    public let metrics = CaptureMetrics()
    public let transactionalID: String
    let feed: any ChangeFeed
    let side: Side
    /// The apply identities' ids in the system: their changes are published with `ce_origin: p2c`.
    let applyUsers: Set<String>
    let consumer: KafkaConsumer
    let producer: KafkaProducer
    let statePartitions: Int
    let log: Log
    /// Polling, probes, rebalances and the way out, as every fleet member has them.
    let loop: ConsumeLoop

    var tables: [TableState]
    var owned = Set<Int32>()

    /// One table: where its state lives, where it stands, and its rows' keys (for deletes, which
    /// carry only the row's id).
    struct TableState {
        var kind: RecordKind
        var topic: String
        var partition: Int32
        var link: String?
        var isDelta = false
        var nextPoll = ContinuousClock.now
        var failures = 0
        var keys: [String: RowKey] = [:]
        /// The version of each row this member last published: a row reported again at the same
        /// version (the first delta after a snapshot starts where the snapshot began) is not
        /// published twice.
        var versions: [String: String] = [:]
    }

    /// What a deleted row's event needs: its subject and key columns.
    struct RowKey {
        var subject: String
        var record: JSONObject
    }

    /// Polls `adapter`'s system through `client`; `applyUsers` are the ids of apply's identities.
    public init(
        configuration: CaptureConfiguration, adapter: any SystemAdapter, catalog: TopicCatalog, client: ServiceClient,
        applyUsers: Set<UUID>, log: Log = Log()
    ) throws {
        self.configuration = configuration
        let side = adapter.side
        self.side = side
        self.log = log.with([("side", .string(side.rawValue))])
        guard
            let feed = adapter.changeFeed(
                client: client, pageSize: configuration.pageSize, generation: configuration.generation)
        else {
            throw UsageError("mode: \(side.rawValue) has no change feed to poll (modes: \(adapter.changeModes))")
        }
        self.feed = feed
        guard !configuration.company.isEmpty else { throw UsageError("company is required (P2C_CAPTURE_COMPANY)") }
        guard let state = catalog[CaptureConfiguration.stateTopic] else {
            throw UsageError("Topics/ declares no \(CaptureConfiguration.stateTopic)")
        }
        statePartitions = state.partitions
        self.applyUsers = Set(applyUsers.map { $0.uuidString.lowercased() })
        // Masters and headers before lines: a round reads a header's changes before its lines'.
        let kinds = RecordKind.kinds(for: configuration.generation).filter { kind in
            kind.stream.sources.contains(side)
                && (configuration.streams.isEmpty || configuration.streams.contains(kind.stream))
        }.sorted { ($0.role == .line ? 1 : 0) < ($1.role == .line ? 1 : 0) }
        tables = try kinds.map { kind in
            guard let topic = catalog.topic(.changes, side: side, stream: kind.stream) else {
                throw UsageError("Topics/ declares no changes topic for \(kind.stream.rawValue)")
            }
            return TableState(
                kind: kind, topic: topic.name,
                partition: Self.partition(of: "\(side.rawValue)/\(kind.name(on: side))", count: state.partitions)
            )
        }
        guard !tables.isEmpty else {
            throw UsageError(
                "streams: none of \(configuration.streams.map(\.rawValue)) is captured from \(side.rawValue)"
            )
        }
        let consumerConfiguration = ConsumerConfiguration(
            kafka: configuration.kafka, groupID: configuration.resolvedGroupID,
            sessionTimeoutMilliseconds: configuration.sessionTimeout.inMilliseconds)
        transactionalID =
            configuration.transactionalID
            ?? "p2c-capture-\(side.rawValue)-\(ProcessInfo.processInfo.hostName)-\(String(UInt32.random(in: .min ... .max), radix: 16))"
        var producerConfiguration = ProducerConfiguration(kafka: configuration.kafka, transactionalID: transactionalID)
        producerConfiguration.transactionTimeoutMilliseconds = 10_000
        try consumerConfiguration.validate()
        try producerConfiguration.validate()
        consumer = try KafkaConsumer(configuration: consumerConfiguration)
        producer = try KafkaProducer(configuration: producerConfiguration)
        loop = ConsumeLoop(
            consumer: consumer, liveness: metrics.liveness, rebalances: metrics.rebalances,
            shutdownTimeout: configuration.shutdownTimeout,
            sessionTimeout: configuration.sessionTimeout, log: self.log)
    }

    /// The state topic's partition of `key`: FNV-1a, the same in every process.
    static func partition(of key: String, count: Int) -> Int32 {
        var hash: UInt32 = 2_166_136_261
        for byte in key.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        return Int32(hash % UInt32(count))
    }

    /// What it asked the system besides the change reads.
    public var requests: [(kind: String, value: Int)] { feed.requests }

    public func stop() {
        loop.stop()
    }

    public func run() throws {
        let registered = try producer.initTransactions(until: { loop.isStopping }) { failure in
            log.warning("waiting for the cluster", [("error", .string(failure.description))])
        }
        guard registered else { return }

        try consumer.subscribe([CaptureConfiguration.stateTopic])
        log.info(
            "capture started",
            [
                ("tables", .string(tables.map { $0.kind.name(on: side) }.joined(separator: ","))),
                ("group_id", .string(configuration.resolvedGroupID)), ("transactional_id", .string(transactionalID)),
                ("poll_interval_ms", .int(Int64(configuration.pollInterval.inMilliseconds))),
            ])
        try loop.run(self)
        log.info("capture stopped", metrics.logFields)
    }

    package func beforePoll() -> Duration? { .milliseconds(20) }

    /// The state topic's records are this fleet's own writes: only the assignment matters.
    package func take(_ record: KafkaRecord) {}

    /// One page of the first table that is due, then back to the group.
    package func afterPoll(idle: Bool) {
        let now = ContinuousClock.now
        guard
            let index = tables.indices.first(where: {
                owned.contains(tables[$0].partition) && tables[$0].nextPoll <= now
            })
        else { return }
        step(index)
    }

    /// The page in hand was committed or given up already.
    package func finish() {}

    // MARK: - One page

    /// Reads the table's next page and publishes it with the table's new state, in one transaction.
    func step(_ index: Int) {
        var table = tables[index]
        let name = table.kind.name(on: side)
        do {
            let page: ChangePage
            do {
                page = try wait { [feed, table] in try await feed.page(of: table.kind, from: table.link) }
            } catch let refused as ChangeLinkRefused {
                log.warning(
                    "delta link refused; taking a new snapshot",
                    [("table", .string(name)), ("error", .string(refused.description))])
                metrics.refusedLinks.add()
                table.link = nil
                table.isDelta = false
                tables[index] = table
                return
            }
            if table.link == nil {
                metrics.snapshots.add()
                log.info("snapshot", [("table", .string(name))])
            }
            var outgoing: [OutgoingRecord] = []
            var keyChanges: [(id: String, key: RowKey?)] = []
            let keyPath = table.kind.keyPath(on: side)
            let lineField = RecordKind.lineNumberField(on: side)
            for change in page.changes {
                switch change {
                case .row(let row):
                    guard case .string(let number)? = row.record.value(at: keyPath), !number.isEmpty else {
                        metrics.unkeyed.add()
                        continue
                    }
                    let subject = "\(configuration.company)/\(number)"
                    var keyRecord = JSONObject()
                    keyRecord.set(path: keyPath, to: .string(number))
                    if table.kind.role == .line, let sequence = row.record[lineField] {
                        keyRecord[lineField] = sequence
                    }
                    if !row.version.isEmpty && table.versions[row.id] == row.version { continue }
                    let echo = row.modifiedBy.map(applyUsers.contains) ?? false
                    if echo { metrics.echoes.add() }
                    outgoing.append(
                        event(
                            table, id: "\(row.id)/\(row.version)", action: "upserted", subject: subject,
                            record: row.record, echo: echo, time: row.time))
                    keyChanges.append((row.id, RowKey(subject: subject, record: keyRecord)))
                case .deleted(let id):
                    // The row's key as this table's state knows it; a row created and deleted
                    // before the table was first read has none.
                    guard let key = keyChanges.last(where: { $0.id == id })?.key ?? table.keys[id] else {
                        metrics.unkeyed.add()
                        continue
                    }
                    outgoing.append(
                        event(
                            table, id: "\(id)/deleted", action: "deleted", subject: key.subject, record: key.record,
                            echo: false))
                    keyChanges.append((id, nil))
                }
            }
            let (link, isDelta): (String, Bool) =
                switch page.next {
                case .page(let next): (next, false)
                case .delta(let delta): (delta, true)
                }
            try publish(outgoing, table: table, link: link, isDelta: isDelta, keyChanges: keyChanges)
            for change in keyChanges { table.keys[change.id] = change.key }
            if table.versions.count > 100_000 { table.versions.removeAll(keepingCapacity: true) }
            for case .row(let row) in page.changes {
                table.versions[row.id] = row.version.isEmpty ? nil : row.version
            }
            metrics.published.add(outgoing.count)
            metrics.pages.add()
            table.link = link
            table.isDelta = isDelta
            table.failures = 0
            // The rest of a snapshot or of a round at once; after a round, the next soon if this
            // one had changes, else after the interval.
            let interval = configuration.pollInterval
            table.nextPoll =
                !isDelta ? .now : .now + (page.changes.isEmpty ? interval : min(interval, .milliseconds(200)))
        } catch is CancellationError {
            return
        } catch {
            table.failures += 1
            let pause = CaptureConfiguration.retryBackoff.pause(after: table.failures)
            table.nextPoll = .now + pause
            metrics.failures.add()
            log.warning(
                "reading changes failed; retrying",
                [
                    ("table", .string(name)), ("error", .string("\(error)")),
                    ("retry_ms", .int(Int64(pause / .milliseconds(1)))),
                ])
        }
        tables[index] = table
    }

    /// One change event: a binary-mode CloudEvent, keyed by its subject.
    func event(
        _ table: TableState, id: String, action: String, subject: String, record: JSONObject, echo: Bool,
        time: String? = nil
    ) -> OutgoingRecord {
        // The time: when the row changed, as the service stamped it.
        let name = table.kind.name(on: side)
        return ChangeEvent.record(
            topic: table.topic, side: side, record: name, action: action, id: "\(side.rawValue)/\(name)/\(id)",
            subject: subject,
            company: configuration.company, data: record, time: time, echo: echo)
    }

    /// Publishes a page's events, the table's link and its rows' key changes in one transaction.
    func publish(
        _ events: [OutgoingRecord], table: TableState, link: String, isDelta: Bool,
        keyChanges: [(id: String, key: RowKey?)]
    ) throws {
        let prefix = "\(side.rawValue)/\(table.kind.name(on: side))"
        try producer.beginTransaction()
        do {
            try producer.deliver(events)
            for change in keyChanges {
                let value: [UInt8]? = change.key.map { key in
                    JSONObject(["subject": .string(key.subject), "record": .object(key.record)]).jsonBytes
                }
                _ = try producer.send(
                    OutgoingRecord(
                        topic: CaptureConfiguration.stateTopic, partition: table.partition,
                        key: Array("\(prefix)/\(change.id)".utf8), value: value, headers: []))
            }
            _ = try producer.send(
                OutgoingRecord(
                    topic: CaptureConfiguration.stateTopic, partition: table.partition, key: Array(prefix.utf8),
                    value: JSONObject(["link": .string(link), "delta": .bool(isDelta)]).jsonBytes, headers: []))
            try producer.commitTransaction(timeout: .seconds(30))
        } catch {
            try? producer.abortTransaction(timeout: .seconds(10))
            throw error
        }
    }

    /// Runs `body` on Swift concurrency and waits for it; a stop cancels it.
    func wait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        try AsyncBridge.wait(cancelled: { [loop] in loop.isStopping }, body)
    }
}
