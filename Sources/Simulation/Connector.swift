import Kafka
import ProspectToCash
import Topology

/// A simulated system's connector: it publishes the system's own changes to `<side>.<stream>.changes`
/// and applies what the workers deliver on `<side>.<stream>.inbound`, stamping the change that
/// applying causes with `ce_origin: p2c` and `ce_causationid`, as a real connector would.
///
/// Not thread-safe: a connector is driven from one thread (the scenario's loop).
public final class Connector {
    public let side: Side
    /// The system's records: by record name, then by key (`USMF/C000001`, lines `USMF/C000001#2`).
    public private(set) var records: [String: [String: JSONObject]] = [:]
    /// Line keys by record name and document key, in the order the lines were first written.
    public private(set) var lines: [String: [String: [String]]] = [:]
    /// Own changes published, by stream (echoes of applied sync writes not counted).
    public private(set) var published: [SyncStream: Int] = [:]
    /// Sync events applied, by stream.
    public private(set) var applied: [SyncStream: Int] = [:]
    /// Echoes published (changes caused by applying a sync event).
    public private(set) var echoes = 0
    /// Sync events that arrived again with an id already applied (dropped: a target applies an event id once).
    public private(set) var duplicates = 0
    /// Source change to applied here, in milliseconds.
    public private(set) var latencies = LatencySamples()
    /// Milliseconds since 1970 of the last applied sync event.
    public private(set) var lastAppliedAt: Int64 = 0

    private let producer: KafkaProducer
    private let consumer: KafkaConsumer
    private var appliedIDs = Set<String>()
    private var sequence = 0
    private let idPrefix: String

    /// `properties` are extra librdkafka settings for the consumer.
    public init(
        side: Side, bootstrapServers: String, runID: String, properties: [String: String] = [:]
    ) throws(KafkaError) {
        self.side = side
        idPrefix = "\(side.rawValue)-\(runID)-"
        var kafka = KafkaConfiguration(bootstrapServers: bootstrapServers, clientID: "p2c-sim-\(side.rawValue)")
        producer = try KafkaProducer(configuration: ProducerConfiguration(kafka: kafka))
        kafka.properties = properties
        var consumerConfiguration = ConsumerConfiguration(kafka: kafka, groupID: "p2c-sim-\(side.rawValue)-\(runID)")
        consumerConfiguration.enableAutoCommit = true
        consumerConfiguration.sessionTimeoutMilliseconds = 6_000
        consumerConfiguration.heartbeatIntervalMilliseconds = 1_000
        consumer = try KafkaConsumer(configuration: consumerConfiguration)
        let inbound = SyncStream.allCases.filter { $0.sources.contains(side.other) }.map {
            Role.inbound.topicName(side: side, stream: $0)
        }
        try consumer.subscribe(inbound)
    }

    /// Polls until the group has given this connector its inbound partitions (false after `timeout`).
    public func waitUntilAssigned(timeout: Duration = .seconds(30)) throws(KafkaError) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let event = try consumer.poll(timeout: .milliseconds(100)), case .record(let record) = event {
                _ = try apply(record)
            }
            if !(try consumer.assignment()).isEmpty { return true }
        }
        return false
    }

    // MARK: - The system's own changes

    /// The record `key` of `record`, if the system has it.
    public func record(_ record: String, _ key: String) -> JSONObject? { records[record]?[key] }

    /// Writes `fields` into the system's record (creating it) and publishes the change; returns its id.
    @discardableResult
    public func change(
        _ record: String, key: String, company: String, fields: JSONObject
    ) throws(KafkaError) -> String {
        let merged = merge(record, key: key, fields: fields)
        return try publish(record, .upserted, key: key, company: company, data: merged)
    }

    /// Deletes the system's record and publishes the deletion with the record's key fields.
    @discardableResult
    public func delete(
        _ record: String, key: String, company: String, keyFields: JSONObject
    ) throws(KafkaError)
        -> String
    {
        remove(record, key)
        return try publish(record, .deleted, key: key, company: company, data: keyFields)
    }

    /// Publishes an event the system does not keep: the scenario's deliberately bad input.
    @discardableResult
    public func publishRaw(
        stream: SyncStream, type: String, subject: String?, company: String?, data: JSONObject
    ) throws(KafkaError) -> String {
        let id = nextID()
        let event = CloudEvent(
            id: id, source: side.rawValue, type: type, time: EventTime.format(EventTime.nowMilliseconds()),
            subject: subject, company: company, data: data)
        try send(event, stream: stream, key: subject ?? id)
        published[stream, default: 0] += 1
        return id
    }

    @discardableResult
    private func publish(
        _ record: String, _ action: CloudEvent.Action, key: String, company: String, data: JSONObject,
        origin: String? = nil, causation: String? = nil
    ) throws(KafkaError) -> String {
        guard let kind = Self.kind(record, on: side) else { preconditionFailure("\(record) is not a synced record") }
        let subject = Self.documentKey(key)
        let id = nextID()
        let event = CloudEvent(
            id: id, source: side.rawValue, type: "\(record).\(action.rawValue)",
            time: EventTime.format(EventTime.nowMilliseconds()), subject: subject, company: company, origin: origin,
            causationID: causation, data: data)
        try send(event, stream: kind.stream, key: subject)
        if origin == nil { published[kind.stream, default: 0] += 1 } else { echoes += 1 }
        return id
    }

    private func send(_ event: CloudEvent, stream: SyncStream, key: String) throws(KafkaError) {
        let record = OutgoingRecord(
            topic: Role.changes.topicName(side: side, stream: stream), key: Array(key.utf8), value: event.value,
            headers: event.headers.map { KafkaHeader($0.name, $0.value) })
        // A full local queue makes send wait: librdkafka's queue is the backpressure.
        _ = try producer.send(record)
        _ = producer.poll()
    }

    private func nextID() -> String {
        sequence += 1
        return idPrefix + String(sequence)
    }

    @discardableResult
    private func merge(_ record: String, key: String, fields: JSONObject) -> JSONObject {
        var stored = records[record]?[key] ?? JSONObject()
        for field in fields.fields { stored[field.key] = field.value }
        if records[record, default: [:]].updateValue(stored, forKey: key) == nil, key.contains("#") {
            lines[record, default: [:]][Self.documentKey(key), default: []].append(key)
        }
        return stored
    }

    private func remove(_ record: String, _ key: String) {
        guard records[record]?.removeValue(forKey: key) != nil, key.contains("#") else { return }
        lines[record]?[Self.documentKey(key)]?.removeAll { $0 == key }
    }

    /// The lines of document `documentKey` in record `record`, with their keys.
    public func lines(_ record: String, of documentKey: String) -> [(key: String, fields: JSONObject)] {
        (lines[record]?[documentKey] ?? []).compactMap { key in records[record]?[key].map { (key, $0) } }
    }

    // MARK: - Applying sync events

    /// One sync event applied.
    public struct Applied {
        public var stream: SyncStream
        public var record: String
        public var action: CloudEvent.Action
        /// The document key (`USMF/C000001`) and the record's own key (lines add `#<sequence>`).
        public var documentKey: String
        public var key: String
        public var eventID: String
        public var company: String
    }

    /// Applies up to `limit` sync events that have arrived, waiting at most `timeout` for the first.
    public func applyArrived(limit: Int = 500, timeout: Duration = .milliseconds(2)) throws(KafkaError) -> [Applied] {
        var result: [Applied] = []
        var wait = timeout
        while result.count < limit, let polled = try consumer.poll(timeout: wait) {
            wait = .zero
            guard case .record(let record) = polled else { continue }
            if let applied = try apply(record) { result.append(applied) }
        }
        _ = producer.poll()
        return result
    }

    private func apply(_ kafkaRecord: KafkaRecord) throws(KafkaError) -> Applied? {
        guard
            let event = try? CloudEvent(
                headers: kafkaRecord.headers.map { ($0.name, $0.value) }, value: kafkaRecord.value),
            let (name, action) = event.recordAndAction, let kind = Self.kind(String(name), on: side),
            let subject = event.subject, let company = event.company
        else {
            // A worker never writes this; a real connector would alert. Count it as applied-nothing.
            return nil
        }
        guard appliedIDs.insert(event.id).inserted else {
            duplicates += 1
            return nil
        }
        let now = EventTime.nowMilliseconds()
        if let time = event.time.flatMap(EventTime.parse) { latencies.add(now - time) }
        lastAppliedAt = now
        applied[kind.stream, default: 0] += 1
        let record = String(name)
        var key = subject
        if kind.role == .line, let line = event.data[Self.lineField(on: side)]?.keyText { key += "#" + line }
        switch action {
        case .upserted:
            let merged = merge(record, key: key, fields: event.data)
            try publish(record, .upserted, key: key, company: company, data: merged, origin: "p2c", causation: event.id)
        case .deleted:
            remove(record, key)
            try publish(
                record, .deleted, key: key, company: company, data: event.data, origin: "p2c", causation: event.id)
        }
        return Applied(
            stream: kind.stream, record: record, action: action, documentKey: subject, key: key, eventID: event.id,
            company: company)
    }

    /// Delivers what is queued; true when nothing is left.
    public func flush(timeout: Duration = .seconds(10)) -> Bool {
        _ = try? producer.flush(timeout: timeout)
        return producer.outstanding == 0
    }

    public func close() {
        _ = flush()
        try? consumer.close()
    }

    // MARK: - Keys

    /// The record kind named `record` on `side`.
    public static func kind(_ record: String, on side: Side) -> RecordKind? {
        RecordKind.named(record, on: side)
    }

    /// The field that numbers a document's lines on `side`.
    public static func lineField(on side: Side) -> String { RecordKind.lineNumberField(on: side) }

    /// `USMF/C000001` of `USMF/C000001#2`.
    public static func documentKey(_ key: String) -> String {
        key.firstIndex(of: "#").map { String(key[..<$0]) } ?? key
    }
}
