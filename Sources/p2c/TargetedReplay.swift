import Foundation
import Kafka
import Operations
import ProspectToCash
import Topology
import Worker

/// `p2c replay --key K` / `--company C --since T`: maps just those change events of a flow again,
/// with the worker's code and maps, and sends the outputs to the target's inbound topics. Offsets,
/// other records and the dead-letter topics are left alone; the outputs carry the same ids as the
/// first time (they derive from the input's position), so a target drops what it already has.
struct TargetedReplay {
    var routes: [Route]
    var kafka: KafkaConfiguration
    var translator: RecordTranslator
    var key: String?
    var company: String?
    /// Milliseconds since the epoch: only events written at or after it.
    var since: Int64?
    var dryRun: Bool

    /// Events selected and what became of them.
    struct Tally {
        var read = 0
        var selected = 0
        var outputs: [String: Int] = [:]
        var filtered = 0
        var refused = 0
    }

    /// Reads, maps and (unless a dry run) sends; returns the exit code.
    func run() throws -> Int32 {
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
                if key != nil || shown <= 50 { print(line()) }
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
        if shown > 50 && key == nil { print("… \(shown - 50) more lines") }
        if let producer {
            let failed = try producer.flush(timeout: .seconds(120)).filter { $0.error != nil }
            if let first = failed.first?.error {
                FileHandle.standardError.write(
                    Data("p2c replay: \(failed.count) outputs not delivered: \(first.message)\n".utf8))
                return 1
            }
        }
        let sent = tally.outputs.sorted { $0.key < $1.key }.map { "\($0.value) to \($0.key)" }.joined(separator: ", ")
        print(
            "\(tally.selected) of \(tally.read) change events selected; \(dryRun ? "would send" : "sent") \(sent.isEmpty ? "nothing" : sent); \(tally.filtered) not synced by rule, \(tally.refused) refused"
        )
        if dryRun { print("dry run: nothing sent") }
        return 0
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
