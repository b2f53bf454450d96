import Foundation
import Kafka
import ProspectToCash
import Topology
import Worker

/// What `p2c replay --key K` / `--company C --since T` does: maps just those change events of a flow again,
/// with the worker's code and maps, and sends the outputs to the target's inbound topics. Offsets,
/// other records and the dead-letter topics are left alone; the outputs carry the same ids as the
/// first time (they derive from the input's position), so a target drops what it already has.
public struct TargetedReplay: Sendable {
    public var routes: [Route]
    public var kafka: KafkaConfiguration
    public var translator: RecordTranslator
    /// Only the events of this record key (a document: its header and lines).
    public var key: String?
    /// Only the events of this company.
    public var company: String?
    /// Milliseconds since the epoch: only events written at or after it.
    public var since: Int64?
    /// Map and tell, send nothing.
    public var dryRun: Bool

    public init(
        routes: [Route], kafka: KafkaConfiguration, translator: RecordTranslator, key: String? = nil,
        company: String? = nil, since: Int64? = nil, dryRun: Bool = false
    ) {
        self.routes = routes
        self.kafka = kafka
        self.translator = translator
        self.key = key
        self.company = company
        self.since = since
        self.dryRun = dryRun
    }

    /// Events selected and what became of them.
    struct Tally {
        var read = 0
        var selected = 0
        var outputs: [String: Int] = [:]
        var filtered = 0
        var refused = 0
    }

    /// Reads, maps and (unless a dry run) sends, telling `report` each event's fate (all of them
    /// for a key, else the first 50) and the tally, `warn` what could not be delivered; false
    /// when outputs were not delivered.
    public func run(report: (String) -> Void, warn: (String) -> Void) throws -> Bool {
        var configuration = ConsumerConfiguration(kafka: kafka, groupID: "p2c-replay-read-\(UUID().uuidString)")
        configuration.reportPartitionEnd = true
        let consumer = try KafkaConsumer(configuration: configuration)
        defer { try? consumer.close() }
        let producer = dryRun ? nil : try KafkaProducer(configuration: ProducerConfiguration(kafka: kafka))
        let stream = Dictionary(uniqueKeysWithValues: routes.map { ($0.input.name, $0.stream) })
        let wantedKey = key.map { Array($0.utf8) }
        var tally = Tally()
        var shown = 0
        try consumer.readToEnd(try startPositions(consumer)) { record in
            tally.read += 1
            guard matches(record, key: wantedKey), let stream = stream[record.topic] else { return }
            tally.selected += 1
            let position = "\(record.topic)[\(record.partition)]@\(record.offset)"
            let type = record.header(CloudEvent.Header.type)?.text ?? "?"
            func show(_ line: @autoclosure () -> String) {
                shown += 1
                if key != nil || shown <= 50 { report(line()) }
            }
            switch translator.outcome(of: record, stream: stream) {
            case .mapped(let events):
                for mapped in events {
                    guard let output = translator.record(for: mapped) else { continue }
                    tally.outputs[output.topic, default: 0] += 1
                    show(
                        "\(position) \(type) → \(output.topic) \(mapped.event.subject ?? "") \(mapped.event.type) id \(mapped.event.id)"
                    )
                    try producer?.send(output)
                }
            case .filtered(let reason):
                tally.filtered += 1
                show("\(position) \(type): not synced: \(reason)")
            case .refused(let error):
                tally.refused += 1
                show("\(position) \(type): refused (\(error.code.rawValue)): \(error.message); left alone")
            }
        }
        if shown > 50 && key == nil { report("… \(shown - 50) more lines") }
        if let producer {
            let failed = try producer.flush(timeout: .seconds(120)).filter { $0.error != nil }
            if let first = failed.first?.error {
                warn("\(failed.count) outputs not delivered: \(first.message)")
                return false
            }
        }
        let sent = tally.outputs.sorted { $0.key < $1.key }.map { "\($0.value) to \($0.key)" }.joined(separator: ", ")
        report(
            "\(tally.selected) of \(tally.read) change events selected; \(dryRun ? "would send" : "sent") \(sent.isEmpty ? "nothing" : sent); \(tally.filtered) not synced by rule, \(tally.refused) refused"
        )
        if dryRun { report("dry run: nothing sent") }
        return true
    }

    private func matches(_ record: KafkaRecord, key: [UInt8]?) -> Bool {
        if let key, record.key != key { return false }
        if let since, record.timestamp < since { return false }
        if let company {
            let recordCompany =
                record.header(CloudEvent.Header.company)?.text
                ?? record.key.flatMap { key in
                    key.firstIndex(of: UInt8(ascii: "/")).map { String(decoding: key[..<$0], as: UTF8.self) }
                }
            guard recordCompany?.caseInsensitiveCompare(company) == .orderedSame else { return false }
        }
        return true
    }

    /// Every partition of the selected change topics, from its start, or from `since` when given.
    private func startPositions(_ consumer: KafkaConsumer) throws -> [TopicPartitionOffset] {
        let partitions = routes.flatMap { route in
            (0..<Int32(route.input.partitions)).map { TopicPartition(route.input.name, $0) }
        }
        guard let since else { return partitions.map { TopicPartitionOffset($0, offset: KafkaOffset.beginning) } }
        let starts = try OffsetReplay.offsets(at: since, partitions, kafka: kafka, consumer: consumer)
        return partitions.map { TopicPartitionOffset($0, offset: starts[$0] ?? KafkaOffset.beginning) }
    }
}
