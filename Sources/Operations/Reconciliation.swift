import Kafka
import ProspectToCash
import Topology

/// Compares the two systems record by record through the maps: every record that flows from a
/// side is mapped as the workers would map it, and the other side must hold the same values.
public struct Reconciliation: Sendable {
    /// Per stream: records on each side, records compared, held back by a rule (prospects,
    /// free-text invoices, won quotes), fields compared.
    public struct Counts: Sendable {
        public var crmRecords = 0
        public var erpRecords = 0
        public var compared = 0
        public var filtered = 0
        public var fields = 0
        /// Records whose mapped counterpart the other side lacks.
        public var missing = 0
        /// Records whose counterpart holds other values.
        public var different = 0
        public init() {}
    }

    /// A record the other side does not hold as the maps say: missing there, or different.
    public struct Drift: Sendable {
        public enum Kind: String, Sendable { case missing, different }
        public var kind: Kind
        /// The side whose record was mapped and compared.
        public var side: Side
        public var record: RecordKind
        /// `<company>/<number>` (a line's with `#<sequence>`).
        public var key: String
        public var data: JSONObject
    }

    /// Every drift, in the order the mismatches list them.
    public var drifts: [Drift] = []

    public var counts: [SyncStream: Counts] = [:]
    public var mismatches: [String] = []

    /// Records by record name, then key (`USMF/C000001`, lines `USMF/C000001#2`), as the demo's connectors hold them.
    public typealias Records = [String: [String: JSONObject]]

    public init(crm: Records, erp: Records, mapper: Mapper) {
        let kinds = RecordKind.kinds(for: mapper.configuration.generation)
        var counted = Set<String>()
        for kind in kinds {
            for side in Side.allCases where counted.insert("\(side.rawValue) \(kind.name(on: side))").inserted {
                let count = (side == .crm ? crm : erp)[kind.name(on: side)]?.count ?? 0
                if side == .crm {
                    counts[kind.stream, default: Counts()].crmRecords += count
                } else {
                    counts[kind.stream, default: Counts()].erpRecords += count
                }
            }
        }
        for side in Side.allCases {
            let source = side == .crm ? crm : erp
            let target = side == .crm ? erp : crm
            var seen = Set<String>()
            for kind in kinds where kind.stream.sources.contains(side) {
                let name = kind.name(on: side)
                guard seen.insert(name).inserted else { continue }
                for (key, record) in (source[name] ?? [:]).sorted(by: { $0.key < $1.key }) {
                    compare(kind: kind, side: side, key: key, record: record, target: target, mapper: mapper)
                }
            }
        }
    }

    private mutating func compare(
        kind: RecordKind, side: Side, key: String, record: JSONObject, target: Records, mapper: Mapper
    ) {
        // `USMF/C000001` of `USMF/C000001#2`.
        let document = key.firstIndex(of: "#").map { String(key[..<$0]) } ?? key
        let company = document.firstIndex(of: "/").map { String(document[..<$0]) }
        let event = CloudEvent(
            id: "reconcile", source: side.rawValue, type: "\(kind.name(on: side)).upserted", subject: document,
            company: company, data: record)
        let label = "\(side.rawValue) \(kind.name(on: side)) \(key)"
        switch mapper.map(event, flow: Flow(source: side), stream: kind.stream) {
        case .refused(let error):
            mismatches.append("\(label): the maps refuse it (\(error))")
        case .filtered:
            counts[kind.stream, default: Counts()].filtered += 1
            // Held back by a rule: it must not have reached the other side (a won quote did, as a draft).
            if kind.stream != .quotes, let targetKind = RecordKind.named(kind.name(on: side), on: side),
                target[targetKind.name(on: side.other)]?[key] != nil
            {
                mismatches.append("\(label): held back by a rule, yet \(side.other.rawValue) has it")
            }
        case .mapped(let events):
            guard let output = events.first, let (name, _) = output.event.recordAndAction else { return }
            var targetKey = output.event.subject ?? document
            if kind.role == .line, let line = output.event.data[RecordKind.lineNumberField(on: side.other)]?.keyText {
                targetKey += "#" + line
            }
            counts[kind.stream, default: Counts()].compared += 1
            guard let held = target[String(name)]?[targetKey] else {
                mismatches.append("\(label): \(side.other.rawValue) has no \(name) \(targetKey)")
                counts[kind.stream, default: Counts()].missing += 1
                drifts.append(Drift(kind: .missing, side: side, record: kind, key: key, data: record))
                return
            }
            var differs = false
            for field in output.event.data.fields {
                counts[kind.stream, default: Counts()].fields += 1
                if !Self.agrees(field.value, held[field.key]) {
                    differs = true
                    mismatches.append(
                        "\(label): \(field.key) should be \(field.value.jsonText), \(side.other.rawValue) has \(held[field.key]?.jsonText ?? "nothing")"
                    )
                }
            }
            if differs {
                counts[kind.stream, default: Counts()].different += 1
                drifts.append(Drift(kind: .different, side: side, record: kind, key: key, data: record))
            }
        }
    }

    /// Whether the target's value carries what the map produced: numbers by value, lookups by
    /// the fields the map sets, a null by absence too.
    static func agrees(_ expected: JSONValue, _ actual: JSONValue?) -> Bool {
        guard let actual else { return expected == .null }
        switch (expected, actual) {
        case (.object(let want), .object(let have)):
            return want.fields.allSatisfy { agrees($0.value, have[$0.key]) }
        case (.number(let a), .number(let b)), (.number(let a), .string(let b)), (.string(let a), .number(let b)):
            guard let x = DecimalNumber(a), let y = DecimalNumber(b) else { return a == b }
            return x.isEqual(to: y)
        default:
            return expected == actual
        }
    }

    public var isClean: Bool { mismatches.isEmpty }
}

/// What the dead-letter topics hold.
public struct DeadLetters: Sendable {
    public struct Letter: Sendable {
        public var topic: String
        public var id: String
        public var code: String
    }

    public var letters: [Letter] = []

    /// Reads every dead-letter topic of `catalog` from the start to its end.
    public init(bootstrapServers: String, topics: [String]) throws(KafkaError) {
        var configuration = ConsumerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: bootstrapServers, clientID: "p2c-demo-dlq"),
            groupID: "p2c-demo-dlq-reader")
        configuration.readCommitted = true
        let consumer = try KafkaConsumer(configuration: configuration)
        defer { try? consumer.close() }
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrapServers, clientID: "p2c-demo-dlq")))
        var ends: [TopicPartition: Int64] = [:]
        for topic in topics {
            let partitions = try producer.partitionCount(of: topic) ?? 0
            for partition in 0..<Int32(partitions) {
                let tp = TopicPartition(topic, partition)
                let (low, high) = try consumer.watermarks(tp)
                if high > low { ends[tp] = high }
            }
        }
        guard !ends.isEmpty else { return }
        try consumer.assign(ends.keys.map { TopicPartitionOffset($0, offset: KafkaOffset.beginning) })
        var remaining = ends
        let deadline = ContinuousClock.now + .seconds(30)
        while !remaining.isEmpty && ContinuousClock.now < deadline {
            guard case .record(let record)? = try consumer.poll(timeout: .milliseconds(100)) else { continue }
            let tp = TopicPartition(record.topic, record.partition)
            letters.append(
                Letter(
                    topic: record.topic, id: record.header(CloudEvent.Header.id)?.text ?? "",
                    code: record.header("p2c_error_code")?.text ?? ""))
            if let end = remaining[tp], record.offset + 1 >= end { remaining[tp] = nil }
        }
    }
}

/// The committed lag of a worker group: records in its input topics it has not yet committed.
public final class GroupLag {
    private let consumer: KafkaConsumer
    private let partitions: [TopicPartition]

    public init(bootstrapServers: String, group: String, topics: [(name: String, partitions: Int)]) throws(KafkaError) {
        consumer = try KafkaConsumer(
            configuration: ConsumerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrapServers, clientID: "p2c-demo-lag"), groupID: group)
        )
        partitions = topics.flatMap { topic in (0..<Int32(topic.partitions)).map { TopicPartition(topic.name, $0) } }
    }

    /// Records not yet committed, summed over the partitions; nil when the broker does not answer.
    public func current() -> Int64? { byPartition()?.reduce(0) { $0 + $1.lag } }

    /// Records not yet committed per partition, with the committed offset (negative: none);
    /// nil when the broker does not answer.
    public func byPartition() -> [(partition: TopicPartition, committed: Int64, lag: Int64)]? {
        guard let committed = try? consumer.committed(partitions, timeout: .seconds(2)) else { return nil }
        var lags: [(partition: TopicPartition, committed: Int64, lag: Int64)] = []
        for entry in committed {
            guard let (low, high) = try? consumer.watermarks(entry.topicPartition, timeout: .seconds(2)) else {
                return nil
            }
            lags.append((entry.topicPartition, entry.offset, high - max(entry.offset < 0 ? low : entry.offset, low)))
        }
        return lags
    }

    public func close() { try? consumer.close() }
}
