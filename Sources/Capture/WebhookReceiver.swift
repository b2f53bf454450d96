import Connectors
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Synchronization
import Topology

/// Capture by webhook: an HTTP endpoint receiving `RemoteExecutionContext` posts (Dataverse's
/// webhooks, DV-WH; F&O's data events, FO-DE), authenticated by the registration's key
/// (`?code=<key>`, DV-WHREG), that answers 200 only once the change event is in Kafka (idempotent
/// producer, `acks=all`) and 503 otherwise, so that the sender retries. Stateless: run several
/// behind a Service. What a context holds becomes an event's record through the side's
/// `ContextReader`.
public final class WebhookReceiver: Sendable {
    public let metrics = CaptureMetrics()
    private let configuration: CaptureConfiguration
    private let key: String
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

    /// Routes requests to the receiver once it is built (the server starts inside its init).
    private final class Box: Sendable {
        let receiver = Mutex<WebhookReceiver?>(nil)
        func handle(_ request: HTTPRequest) -> HTTPResponse {
            guard let receiver = receiver.withLock({ $0 }) else { return HTTPResponse(status: 503, text: "starting\n") }
            return receiver.handle(request)
        }
    }

    /// Starts listening on `port` (0 picks one). `applyUsers`: the ids contexts name the apply
    /// identities by (Dataverse's `systemuserid`s, F&O's client ids).
    public init(
        configuration: CaptureConfiguration, catalog: TopicCatalog, reader: any ContextReader, applyUsers: Set<UUID>,
        key: String, port: Int, deliveryTimeout: Duration = .seconds(10), log: Log = Log()
    ) throws {
        self.configuration = configuration
        self.key = key
        self.reader = reader
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
        server = try HTTPServer(port: port) { request in box.handle(request) }
        box.receiver.withLock { $0 = self }
    }

    public var port: Int { server.port }

    /// What it asked the system: table definitions, lookups, rows posted without their key.
    public var requests: [(kind: String, value: Int)] { reader.requests }

    public func stop() {
        server.stop(timeout: .seconds(5))
        box.receiver.withLock { $0 = nil }
    }

    private func handle(_ request: HTTPRequest) -> HTTPResponse {
        metrics.liveness.tick()
        guard request.method == "POST" else {
            return HTTPResponse(status: 405, text: "POST a RemoteExecutionContext\n")
        }
        let code = URLComponents(string: request.target)?.queryItems?.first { $0.name == "code" }?.value
        guard code == key else {
            metrics.refusedPosts.add()
            return HTTPResponse(status: 401, text: "unknown webhook key\n")
        }
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
            return try records.serialize("\(table)/\(id.lowercased())") {
                switch try wait({ try await self.event(context, message: message, kind: kind, topic: topic, id: id) }) {
                case .unkeyed:
                    metrics.unkeyed.add()
                    log.warning(
                        "change without its key (register a pre image with the key columns on Delete steps)",
                        [("table", .string(table)), ("message", .string(message))])
                    return HTTPResponse(status: 200, text: "no key\n")
                case .superseded:
                    metrics.superseded.add()
                    return HTTPResponse(status: 200, text: "record deleted since\n")
                case .publish(let event):
                    if let failure = deliver(event) {
                        metrics.failures.add()
                        log.warning("change not in Kafka; answering 503", [("error", .string(failure.description))])
                        return HTTPResponse(status: 503, text: "Kafka did not take the change in time\n")
                    }
                    metrics.published.add()
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
    ) async throws -> Taken {
        let side = configuration.side
        guard let change = try await reader.record(of: context, kind: kind, deleted: message == "Delete", id: id)
        else {
            return .unkeyed
        }
        if change.skip { return .superseded }
        let deleted = change.deleted
        let keyPath = side == .crm ? kind.crmKey : [kind.erpKey]
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
            context["OperationId"]?.stringValue ?? context["CorrelationId"]?.stringValue ?? UUID().uuidString
        let users = ["UserId", "InitiatingUserId", "InitiatingUserApplicationId"].compactMap {
            context[$0]?.stringValue?.lowercased()
        }
        let echo = users.contains(where: applyUsers.contains)
        if echo { metrics.echoes.add() }
        let name = kind.name(on: side)
        return .publish(
            ChangeEvent.record(
                topic: topic, side: side, record: name, action: deleted ? "deleted" : "upserted",
                id: "\(side.rawValue)/\(name)/\(id.lowercased())/\(operation)", subject: subject, company: company,
                data: data, echo: echo))
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
