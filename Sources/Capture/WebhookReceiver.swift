import Connectors
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Synchronization
import Topology

/// Capture by webhook: an HTTP endpoint receiving `RemoteExecutionContext` posts (Dataverse's
/// webhooks; F&O's data events, which reach an HTTPS endpoint the same way), authenticated by the
/// registration's key before any body is read: as the `x-p2c-webhook-key` header (the
/// registration's `HttpHeader` authentication) or as `?code=<key>` (`WebhookKey`), compared in
/// constant time ("Register a web hook", Microsoft Learn). It answers 200 once the change event is
/// in Kafka (idempotent producer, `acks=all`) or when there is definitely nothing to publish, and
/// 503 otherwise (the record could not be read back, Kafka did not take the event), so that the
/// sender retries. Stateless: run several behind a Service. The record published is the one the
/// side's `ContextReader` reads back by the post's key, the posts taken at once in one read.
public final class WebhookReceiver: Sendable {
    /// The header a registration's `HttpHeader` authentication sends the key in.
    public static let keyHeader = "x-p2c-webhook-key"

    public let metrics: CaptureMetrics
    private let configuration: CaptureConfiguration
    private let topics: [SyncStream: String]
    private let reader: any ContextReader
    private let applyUsers: Set<String>
    private let producer: KafkaProducer
    private let delivered = Mutex<[UInt64: KafkaError?]>([:])
    private let deliveryTimeout: Duration
    private let box: Box
    private let log: Log
    private let server: HTTPServer
    private let records = RecordLocks()
    private let batcher: ReadBatcher
    /// When the recheck loop last turned (ms since `started`), for liveness.
    private let recheckTurn = Atomic<Int>(0)
    private let started = ContinuousClock.now
    /// Records published, to be read again once `recheckAfter` has passed (by record).
    private let rechecks = Mutex<[String: Recheck]>([:])
    private let stopped = Atomic<Bool>(false)
    private let recheckDone = DispatchSemaphore(value: 0)

    /// A record published from a context, and what was published for it.
    private struct Recheck: Sendable {
        var context: JSONObject
        var kind: RecordKind
        var topic: String
        var id: String
        var published: OutgoingRecord
        var due: ContinuousClock.Instant
        var attempts = 0
    }

    /// Routes requests to the receiver once it is built (the server starts inside its init).
    private final class Box: Sendable {
        let receiver = Mutex<WebhookReceiver?>(nil)
        func handle(_ request: HTTPRequest) -> HTTPResponse {
            guard let receiver = receiver.withLock({ $0 }) else { return HTTPResponse(status: 503, text: "starting\n") }
            return receiver.handle(request)
        }

        func turn() { receiver.withLock { $0 }?.turn() }
    }

    /// Starts listening on `port` (0 picks one) of `configuration.listenAddress`. `applyUsers`:
    /// the ids contexts name the apply identities by (Dataverse's `systemuserid`s, F&O's client ids).
    public init(
        configuration: CaptureConfiguration, catalog: TopicCatalog, reader: any ContextReader, applyUsers: Set<UUID>,
        key: String, port: Int, deliveryTimeout: Duration = .seconds(10), log: Log = Log()
    ) throws {
        let metrics = CaptureMetrics()
        self.metrics = metrics
        self.configuration = configuration
        self.reader = reader
        batcher = ReadBatcher(reader: reader)
        self.log = log.with([("side", .string(configuration.side.rawValue)), ("mode", "webhook")])
        self.applyUsers = Set(applyUsers.map { $0.uuidString.lowercased() })
        var topics: [SyncStream: String] = [:]
        for stream in SyncStream.allCases
        where stream.sources.contains(configuration.side)
            && (configuration.streams.isEmpty || configuration.streams.contains(stream))
        {
            topics[stream] = catalog.topic(.changes, side: configuration.side, stream: stream)?.name
        }
        self.topics = topics
        // A receiver answers 5xx until Kafka takes its changes again: reconnect within a second
        // of the cluster's return, not after librdkafka's default backoff of up to 10 s.
        var kafka = configuration.kafka
        if kafka.properties["reconnect.backoff.max.ms"] == nil { kafka.properties["reconnect.backoff.max.ms"] = "1000" }
        var producerConfiguration = ProducerConfiguration(kafka: kafka)
        producerConfiguration.messageTimeoutMilliseconds = Int(deliveryTimeout / .milliseconds(1))
        self.deliveryTimeout = deliveryTimeout
        try producerConfiguration.validate()
        producer = try KafkaProducer(configuration: producerConfiguration)
        metrics.liveness.ready()
        let box = Box()
        self.box = box
        var limits = HTTPServer.Limits()
        limits.maxBodyBytes = configuration.webhookMaxBodyBytes
        limits.maxRequests = configuration.webhookMaxRequests
        let expected = Array(key.utf8)
        server = try HTTPServer(
            port: port, host: configuration.listenAddress, limits: limits,
            admit: { request in
                guard request.method == "POST" else {
                    return HTTPResponse(status: 405, text: "POST a RemoteExecutionContext\n")
                }
                guard Self.offersKey(request, expected) else {
                    metrics.refusedPosts.add()
                    return HTTPResponse(status: 401, text: "unknown webhook key\n")
                }
                return nil
            },
            onTurn: { box.turn() }
        ) { request in box.handle(request) }
        box.receiver.withLock { $0 = self }
        if configuration.recheckAfter > .zero {
            let thread = Thread { [self] in recheckLoop() }
            thread.name = "p2c-recheck"
            thread.start()
        } else {
            recheckDone.signal()
        }
    }

    public var port: Int { server.port }

    /// What it asked the system: table definitions, lookups, rows posted without their key.
    public var requests: [(kind: String, value: Int)] { reader.requests }

    /// Stops taking posts (those in progress get up to 5 s) and rechecking (rechecks not yet due
    /// are dropped; their records' later events, or reconcile, cover them).
    public func stop() {
        server.stop(timeout: .seconds(5))
        stopped.store(true, ordering: .relaxed)
        // Signalled again for a later call: the loop ends once.
        if recheckDone.wait(timeout: .now() + 2) == .success { recheckDone.signal() }
        box.receiver.withLock { $0 = nil }
    }

    /// Whether `request` carries `key`, as the header or as `?code=`, compared in constant time.
    static func offersKey(_ request: HTTPRequest, _ key: [UInt8]) -> Bool {
        let offered =
            request.headers[keyHeader]
            ?? URLComponents(string: request.target)?.queryItems?.first { $0.name == "code" }?.value
        guard let offered else { return false }
        let bytes = Array(offered.utf8)
        var difference = UInt8(truncatingIfNeeded: bytes.count ^ key.count)
        for index in 0..<key.count {
            difference |= key[index] ^ (index < bytes.count ? bytes[index] : 0)
        }
        return difference == 0 && !key.isEmpty
    }

    /// The server's loop turned: the receiver is live while its loop and its rechecks turn.
    private func turn() {
        let now = Int((ContinuousClock.now - started) / .milliseconds(1))
        if configuration.recheckAfter == .zero || now - recheckTurn.load(ordering: .relaxed) < 5_000 {
            metrics.liveness.tick()
        }
    }

    private func handle(_ request: HTTPRequest) -> HTTPResponse {
        guard let context = (try? JSONParser.parse(request.body))?.objectValue,
            let message = context["MessageName"]?.stringValue, let table = context["PrimaryEntityName"]?.stringValue,
            let id = context["PrimaryEntityId"]?.stringValue
        else { return HTTPResponse(status: 400, text: "not a RemoteExecutionContext\n") }
        do {
            guard let kind = try wait({ try await self.reader.kind(named: table) }),
                let topic = topics[kind.stream]
            else {
                metrics.ignoredPosts.add()
                return HTTPResponse(status: 200, text: "table not captured\n")
            }
            // One record's changes are read and published one at a time, so that what is published
            // last is what was read last.
            let record = "\(table)/\(id.lowercased())"
            return try records.serialize(record) {
                switch try event(context, message: message, kind: kind, topic: topic, id: id) {
                case .unkeyed:
                    metrics.unkeyed.add()
                    log.warning(
                        "nothing published: the change has no key (register a pre image with the key columns on Delete steps)",
                        [("table", .string(table)), ("message", .string(message))])
                    return HTTPResponse(status: 200, text: "no key\n")
                case .superseded:
                    metrics.superseded.add()
                    log.info(
                        "nothing published: the record is not as the post says (deleted since, or not deleted)",
                        [("table", .string(table)), ("message", .string(message))])
                    return HTTPResponse(status: 200, text: "nothing to publish\n")
                case .publish(let event):
                    if let failure = deliver(event) {
                        metrics.failures.add()
                        log.warning("change not in Kafka; answering 503", [("error", .string(failure.description))])
                        return HTTPResponse(status: 503, text: "Kafka did not take the change in time\n")
                    }
                    metrics.published.add()
                    log.debug("published", [("table", .string(table)), ("message", .string(message))])
                    if configuration.recheckAfter > .zero {
                        schedule(
                            record,
                            Recheck(context: context, kind: kind, topic: topic, id: id, published: event, due: .now),
                            replacing: true)
                    }
                    return HTTPResponse(status: 200, text: "published\n")
                }
            }
        } catch {
            metrics.failures.add()
            log.warning("reading the change failed; answering 503", [("error", .string("\(error)"))])
            return HTTPResponse(status: 503, text: "the change could not be read\n")
        }
    }

    /// What a context comes to: its change event, nothing to publish (the record was deleted
    /// since), or no key to publish it under.
    private enum Taken: Sendable {
        case publish(OutgoingRecord)
        case superseded
        case unkeyed
    }

    private func event(
        _ context: JSONObject, message: String, kind: RecordKind, topic: String, id: String
    ) throws -> Taken {
        let change = try batcher.change(
            of: ContextRead(context: context, kind: kind, deleted: message == "Delete", id: id))
        return taken(change, context: context, kind: kind, topic: topic, id: id)
    }

    /// What `change` comes to. `recheck`: the `ce_id` part of a recheck's event (otherwise the
    /// context's `OperationId`).
    private func taken(
        _ change: ContextChange?, context: JSONObject, kind: RecordKind, topic: String, id: String,
        recheck: String? = nil
    ) -> Taken {
        let side = configuration.side
        guard let change else { return .unkeyed }
        if change.skip { return .superseded }
        let deleted = change.deleted
        let keyPath = kind.keyPath(on: side)
        guard case .string(let number)? = change.record.value(at: keyPath), !number.isEmpty else { return .unkeyed }
        var data = change.record
        if deleted {
            data = JSONObject()
            data.set(path: keyPath, to: .string(number))
            let sequence = RecordKind.lineNumberField(on: side)
            if kind.role == .line, let value = change.record[sequence] { data[sequence] = value }
        }
        let company = change.company ?? configuration.company
        let subject = "\(company)/\(number)"
        let operation =
            recheck ?? context["OperationId"]?.stringValue ?? context["CorrelationId"]?.stringValue
            ?? UUID().uuidString
        let users = ["UserId", "InitiatingUserId", "InitiatingUserApplicationId"].compactMap {
            context[$0]?.stringValue?.lowercased()
        }
        // A recheck's state may be anyone's change: never dropped as an echo (at worst one more
        // round trip through the other system, where apply's write comes back as an echo).
        let echo = recheck == nil && users.contains(where: applyUsers.contains)
        if echo { metrics.echoes.add() }
        let name = kind.name(on: side)
        return .publish(
            ChangeEvent.record(
                topic: topic, side: side, record: name, action: deleted ? "deleted" : "upserted",
                id: "\(side.rawValue)/\(name)/\(id.lowercased())/\(operation)", subject: subject, company: company,
                data: data, echo: echo))
    }

    // MARK: - Rechecks

    /// Several receivers can take one record's events at once and publish what they read in either
    /// order (F&O's data events carry no version, "Data events"). With `recheckAfter`, each record
    /// published is read again that long after: changed since (or gone), its state now is
    /// published again, so a record's last event is its state once its changes have settled.
    ///
    /// A recheck reads its record as the delete's event would (there: the record; gone: deleted,
    /// keyed as the event was), all those due in one `$batch`. One racing this receiver's own post
    /// of the record may publish the older state; each publish is rechecked in turn, a recheck's
    /// too, so the last publish of a record is always followed by a read that finds it current.
    private func recheckLoop() {
        defer { recheckDone.signal() }
        while !stopped.load(ordering: .relaxed) {
            let now = ContinuousClock.now
            recheckTurn.store(Int((now - started) / .milliseconds(1)), ordering: .relaxed)
            let due = rechecks.withLock { rechecks -> [(record: String, recheck: Recheck)] in
                let due = rechecks.filter { $0.value.due <= now }
                for record in due.keys { rechecks[record] = nil }
                return due.map { ($0.key, $0.value) }
            }
            if due.isEmpty {
                Thread.sleep(forTimeInterval: 0.1)
                continue
            }
            recheck(due)
        }
    }

    private func recheck(_ due: [(record: String, recheck: Recheck)]) {
        let reads = due.map {
            ContextRead(context: $0.recheck.context, kind: $0.recheck.kind, deleted: true, id: $0.recheck.id)
        }
        let changes: [ContextChange?]
        do {
            changes = try AsyncBridge.wait(cancelled: { self.stopped.load(ordering: .relaxed) }) { [reader] in
                try await reader.records(of: reads)
            }
        } catch {
            metrics.failures.add()
            for (record, recheck) in due { again(record, recheck, error: error) }
            return
        }
        metrics.rechecked.add(due.count)
        func type(_ event: OutgoingRecord) -> String? {
            event.headers.first { $0.name == CloudEvent.Header.type }?.text
        }
        for ((record, recheck), change) in zip(due, changes) {
            let name = "recheck-\(UUID().uuidString.lowercased())"
            guard
                case .publish(let current) = taken(
                    change, context: recheck.context, kind: recheck.kind, topic: recheck.topic, id: recheck.id,
                    recheck: name),
                current.value != recheck.published.value || type(current) != type(recheck.published)
            else { continue }
            if let failure = deliver(current) {
                metrics.failures.add()
                again(record, recheck, error: failure)
                continue
            }
            metrics.published.add()
            metrics.republished.add()
            log.info("published a record's newer state on recheck", [("record", .string(record))])
            var next = recheck
            next.published = current
            next.attempts = 0
            schedule(record, next, replacing: false)
        }
    }

    /// Rechecks `record` after the delay; `replacing` a recheck already waiting for it (a newer
    /// publish of this receiver), else only when none waits.
    private func schedule(_ record: String, _ recheck: Recheck, replacing: Bool) {
        var recheck = recheck
        recheck.due = .now + configuration.recheckAfter
        rechecks.withLock { rechecks in
            if replacing || rechecks[record] == nil { rechecks[record] = recheck }
        }
    }

    /// A recheck that failed goes again after the delay, up to 5 times.
    private func again(_ record: String, _ recheck: Recheck, error: any Error) {
        guard recheck.attempts < 5, !stopped.load(ordering: .relaxed) else {
            log.warning("recheck given up", [("record", .string(record)), ("error", .string("\(error)"))])
            return
        }
        var next = recheck
        next.attempts += 1
        schedule(record, next, replacing: false)
    }

    /// Sends `event` and waits for its delivery report: nil once Kafka has it.
    private func deliver(_ event: OutgoingRecord) -> KafkaError? {
        let id: UInt64
        do {
            id = try producer.send(event)
        } catch {
            return error
        }
        let deadline = ContinuousClock.now + deliveryTimeout + .seconds(2)
        while ContinuousClock.now < deadline {
            for report in producer.poll(timeout: .milliseconds(5)) {
                delivered.withLock { $0[report.id] = report.error }
            }
            if let outcome = delivered.withLock({ $0.removeValue(forKey: id) }) { return outcome }
        }
        return KafkaError(code: .timedOut, message: "no delivery report in time")
    }

    /// One lock per record in use: the requests of one record wait for each other, others do not.
    private final class RecordLocks: Sendable {
        private let locks = Mutex<[String: (lock: NSLock, users: Int)]>([:])

        func serialize<T>(_ record: String, _ body: () throws -> T) rethrows -> T {
            let lock = locks.withLock { locks in
                let entry = locks[record] ?? (NSLock(), 0)
                locks[record] = (entry.lock, entry.users + 1)
                return entry.lock
            }
            lock.lock()
            defer {
                lock.unlock()
                locks.withLock { locks in
                    guard let entry = locks[record] else { return }
                    locks[record] = entry.users > 1 ? (entry.lock, entry.users - 1) : nil
                }
            }
            return try body()
        }
    }

    /// Runs `body` on Swift concurrency and waits for it (the connection's own thread).
    private func wait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        try AsyncBridge.wait(body)
    }
}
