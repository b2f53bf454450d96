import Connectors
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Synchronization
import Topology

/// Capture by webhook: an HTTP endpoint receiving Dataverse's `RemoteExecutionContext` posts
/// (DV-WH), authenticated by the registration's `WebhookKey` (`?code=<key>`, DV-WHREG), that
/// answers 200 only once the change event is in Kafka (idempotent producer, `acks=all`) and 503
/// otherwise, so that the sender retries. Stateless: run several behind a Service.
///
/// The event is the one change tracking would publish: the row after the change (the post image,
/// or the row read by its id when the post carries no image with its key), lookups as natural
/// keys; a delete is keyed by its pre image (register one with the key columns on Delete steps).
public final class WebhookReceiver: Sendable {
    public let metrics = CaptureMetrics()
    private let configuration: CaptureConfiguration
    private let key: String
    private let kinds: [String: (kind: RecordKind, topic: String)]
    private let records: DataverseRecords
    private let client: ServiceClient
    private let applyUsers: Set<String>
    private let producer: KafkaProducer
    private let delivered = Mutex<[UInt64: KafkaError?]>([:])
    private let deliveryTimeout: Duration
    private let box: Box
    private let shapes = Mutex<[String: DataverseRecords.Shape]>([:])
    private let log: Log
    private let server: HTTPServer

    /// Routes requests to the receiver once it is built (the server starts inside its init).
    private final class Box: Sendable {
        let receiver = Mutex<WebhookReceiver?>(nil)
        func handle(_ request: HTTPRequest) -> HTTPResponse {
            guard let receiver = receiver.withLock({ $0 }) else { return HTTPResponse(status: 503, text: "starting\n") }
            return receiver.handle(request)
        }
    }

    /// Starts listening on `port` (0 picks one).
    public init(
        configuration: CaptureConfiguration, catalog: TopicCatalog, client: ServiceClient, applyUsers: Set<UUID>,
        key: String, port: Int, deliveryTimeout: Duration = .seconds(10), log: Log = Log()
    ) throws {
        self.configuration = configuration
        self.key = key
        self.client = client
        self.log = log.with([("side", .string(configuration.side.rawValue)), ("mode", "webhook")])
        records = DataverseRecords(client: client, schema: DataverseSchema(client: client))
        self.applyUsers = Set(applyUsers.map { $0.uuidString.lowercased() })
        var kinds: [String: (RecordKind, String)] = [:]
        for kind in RecordKind.all
        where kind.stream.sources.contains(configuration.side)
            && (configuration.streams.isEmpty || configuration.streams.contains(kind.stream))
        {
            guard let topic = catalog.topic(.changes, side: configuration.side, stream: kind.stream) else { continue }
            kinds[kind.crmName] = (kind, topic.name)
        }
        self.kinds = kinds
        var producerConfiguration = ProducerConfiguration(kafka: configuration.kafka)
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

    /// What it asked Dataverse: table definitions, lookups, rows posted without their key.
    public var dataverseRequests: [(kind: String, value: Int)] { records.requests }

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
        guard let (kind, topic) = kinds[table] else {
            metrics.ignoredPosts.add()
            return HTTPResponse(status: 200, text: "table not captured\n")
        }
        do {
            guard
                let event = try wait({
                    try await self.event(context, message: message, kind: kind, topic: topic, id: id)
                })
            else {
                metrics.unkeyed.add()
                log.warning(
                    "change without its key (register a pre image with the key columns on Delete steps)",
                    [("table", .string(table)), ("message", .string(message))])
                return HTTPResponse(status: 200, text: "no key\n")
            }
            if let failure = deliver(event) {
                metrics.failures.add()
                log.warning("change not in Kafka; answering 503", [("error", .string(failure.description))])
                return HTTPResponse(status: 503, text: "Kafka did not take the change in time\n")
            }
            metrics.published.add()
            return HTTPResponse(status: 200, text: "published\n")
        } catch {
            metrics.failures.add()
            log.warning("reading the change failed; answering 503", [("error", .string("\(error)"))])
            return HTTPResponse(status: 503, text: "the change could not be read\n")
        }
    }

    /// The change event of a context, nil when its key cannot be known.
    private func event(
        _ context: JSONObject, message: String, kind: RecordKind, topic: String, id: String
    ) async throws -> OutgoingRecord? {
        let shape = try await shape(of: kind)
        let deleted = message == "Delete"
        var row = Self.row(image: deleted ? "PreEntityImages" : "PostEntityImages", of: context)
        if !deleted {
            if row.isEmpty { row = Self.target(of: context) }
            if (try await records.record(of: row, shape: shape)).value(at: kind.crmKey) == nil {
                // No key in what was posted: the row as it is now.
                let answer = try await client.send(
                    "GET", "\(shape.table.entitySet)(\(id))?$select=\(shape.select.joined(separator: ","))")
                guard answer.status == 200, let current = answer.json else { return nil }
                row = current
            }
        }
        let record = try await records.record(of: row, shape: shape)
        guard case .string(let number)? = record.value(at: kind.crmKey), !number.isEmpty else { return nil }
        var data = record
        if deleted {
            data = JSONObject()
            data.set(path: kind.crmKey, to: .string(number))
            if kind.role == .line, let sequence = record["sequencenumber"] { data["sequencenumber"] = sequence }
        }
        let subject = "\(configuration.company)/\(number)"
        let operation =
            context["OperationId"]?.stringValue ?? context["CorrelationId"]?.stringValue ?? UUID().uuidString
        let user = context["UserId"]?.stringValue?.lowercased() ?? ""
        let initiating = context["InitiatingUserId"]?.stringValue?.lowercased() ?? ""
        let echo = applyUsers.contains(user) || applyUsers.contains(initiating)
        if echo { metrics.echoes.add() }
        var headers = [
            KafkaHeader("ce_specversion", "1.0"),
            KafkaHeader("ce_id", "\(configuration.side.rawValue)/\(kind.crmName)/\(id.lowercased())/\(operation)"),
            KafkaHeader("ce_source", configuration.side.rawValue),
            KafkaHeader("ce_type", "\(kind.crmName).\(deleted ? "deleted" : "upserted")"),
            KafkaHeader("ce_time", Date().formatted(.iso8601)), KafkaHeader("ce_subject", subject),
            KafkaHeader("ce_company", configuration.company), KafkaHeader("content-type", "application/json"),
        ]
        if echo { headers.append(KafkaHeader("ce_origin", "p2c")) }
        return OutgoingRecord(topic: topic, key: Array(subject.utf8), value: data.jsonBytes, headers: headers)
    }

    private func shape(of kind: RecordKind) async throws -> DataverseRecords.Shape {
        if let known = shapes.withLock({ $0[kind.crmName] }) { return known }
        let shape = try await records.shape(of: kind)
        shapes.withLock { $0[kind.crmName] = shape }
        return shape
    }

    /// An image's attributes as a Web API row: lookups as `_<name>_value` with the referenced
    /// table's annotation, option sets and money as their values.
    static func row(image: String, of context: JSONObject) -> JSONObject {
        guard case .array(let images)? = context[image], let first = images.first?.objectValue?["value"]?.objectValue
        else { return JSONObject() }
        return row(of: first)
    }

    static func target(of context: JSONObject) -> JSONObject {
        guard case .array(let parameters)? = context["InputParameters"],
            let target = parameters.lazy.compactMap(\.objectValue).first(where: { $0["key"] == "Target" })?["value"]?
                .objectValue
        else { return JSONObject() }
        return row(of: target)
    }

    private static func row(of entity: JSONObject) -> JSONObject {
        var row = JSONObject()
        guard case .array(let attributes)? = entity["Attributes"] else { return row }
        for case .object(let attribute) in attributes {
            guard let name = attribute["key"]?.stringValue, let value = attribute["value"] else { continue }
            if case .object(let object) = value, let type = object["__type"]?.stringValue {
                if type.hasPrefix("EntityReference"), let id = object["Id"]?.stringValue {
                    row["_\(name)_value"] = .string(id.lowercased())
                    if let table = object["LogicalName"]?.stringValue {
                        row["_\(name)_value@Microsoft.Dynamics.CRM.lookuplogicalname"] = .string(table)
                    }
                } else if let inner = object["Value"] {
                    // OptionSetValue, Money.
                    row[name] = inner
                }
                continue
            }
            row[name] = value
        }
        return row
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

    /// Runs `body` on Swift concurrency and waits for it (the connection's own thread).
    private func wait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        try AsyncBridge.wait(body)
    }
}
