import Foundation
import Kafka
import Membership
import Topology
import Worker

/// What `p2c dlq redrive` does: puts dead letters back on their source topic (original partition, key, value
/// and headers), for the workers to map again after a fix.
///
/// Each re-driven letter gets a marker in its own dead-letter partition, written in the same
/// Kafka transaction as the re-published event: a letter with a marker is never re-driven again,
/// and a run stopped midway leaves every letter either done (event and marker) or untouched.
/// The event carries the position it was first read from, so the worker gives its outputs the
/// ids they would have had the first time, and a target drops an output it already has.
public struct DeadLetterRedrive: Sendable {
    /// The dead-letter topics read: the workers' (`<changes>.dlq`) and apply's (`<inbound>.dlq`).
    public var topics: [TopicDeclaration]
    public var kafka: KafkaConfiguration
    /// Only the letters of this error code.
    public var code: String?
    /// Only the letters of this record key.
    public var key: String?
    /// Milliseconds since the epoch: only letters dead-lettered at or after it.
    public var since: Int64?
    /// Letters per transaction.
    public var batch: Int
    /// Say what would be re-driven, re-drive nothing.
    public var dryRun: Bool

    public init(
        topics: [TopicDeclaration], kafka: KafkaConfiguration, code: String? = nil, key: String? = nil,
        since: Int64? = nil, batch: Int = 500, dryRun: Bool = false
    ) {
        self.topics = topics
        self.kafka = kafka
        self.code = code
        self.key = key
        self.since = since
        self.batch = batch
        self.dryRun = dryRun
    }

    /// Marker header: the offset, in the same dead-letter partition, of the letter re-driven.
    public static let markerHeader = "p2c_redriven_offset"
    public static let countHeader = "p2c_redrive_count"
    public static let fromHeader = "p2c_redriven_from"
    /// Headers of the letter and of an earlier re-drive; a re-driven event gets fresh ones.
    static let letterHeaders = DeadLetter.addedHeaders.union([
        countHeader, fromHeader, RecordTranslator.redriveOriginHeader,
    ])

    /// What the dead-letter topics hold: letters still to re-drive and the positions already done.
    public struct Contents: Sendable {
        public var letters: [KafkaRecord] = []
        public var redriven: Set<TopicPartitionOffset> = []

        /// The letters not re-driven yet.
        public var pending: [KafkaRecord] {
            letters.filter { !redriven.contains(TopicPartitionOffset($0.topic, $0.partition, offset: $0.offset)) }
        }
    }

    /// The letters of `topics` and the positions re-driven already, read to the end.
    public static func read(_ consumer: KafkaConsumer, topics: [TopicDeclaration]) throws -> Contents {
        var contents = Contents()
        for record in try readAll(consumer, topics: topics).values.joined() {
            if let offset = record.header(markerHeader)?.text.flatMap({ Int64($0) }) {
                contents.redriven.insert(TopicPartitionOffset(record.topic, record.partition, offset: offset))
            } else {
                contents.letters.append(record)
            }
        }
        return contents
    }

    /// Re-drives the letters selected, `batch` to a transaction, telling `report` what it does;
    /// returns how many it re-drove (0 on a dry run).
    @discardableResult
    public func run(report: (String) -> Void) throws -> Int {
        var configuration = ConsumerConfiguration(kafka: kafka, groupID: "p2c-dlq-redrive-\(UUID().uuidString)")
        configuration.reportPartitionEnd = true
        let consumer = try KafkaConsumer(configuration: configuration)
        let contents = try Self.read(consumer, topics: topics)
        try consumer.close()
        let selected = contents.pending.filter { Self.selects($0, code: code, key: key, since: since) }
        let byCode = Dictionary(grouping: selected) { $0.header(DeadLetter.codeHeader)?.text ?? "(no code)" }
        report(
            "\(selected.count) of \(contents.pending.count) dead letters selected (\(contents.redriven.count) re-driven before)"
                + (byCode.isEmpty ? "" : ": ")
                + byCode.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.count)" }.joined(separator: ", "))
        let records = try selected.map { letter in
            guard let redriven = Self.redriven(letter) else {
                throw KafkaError(
                    code: .invalidConfiguration,
                    message: "\(letter.topic)[\(letter.partition)]@\(letter.offset) has no p2c_source_* headers")
            }
            return (letter, redriven)
        }
        if dryRun {
            for (letter, event) in records.prefix(50) {
                report(
                    "  \(letter.topic)[\(letter.partition)]@\(letter.offset) → \(event.topic)[\(event.partition ?? -1)] key \(event.key.map { String(decoding: $0, as: UTF8.self) } ?? "(none)")"
                )
            }
            if records.count > 50 { report("  … \(records.count - 50) more") }
            report("dry run: nothing re-driven")
            return 0
        }
        guard !records.isEmpty else { return 0 }
        // One fixed transactional id: a second redrive started meanwhile fences this one.
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: kafka, transactionalID: "p2c-dlq-redrive"))
        try producer.initTransactions(timeout: .seconds(30))
        var done = 0
        for chunk in stride(from: 0, to: records.count, by: batch).map({ records[$0..<min($0 + batch, records.count)] })
        {
            try producer.beginTransaction()
            for (letter, event) in chunk {
                try producer.send(event)
                try producer.send(
                    OutgoingRecord(
                        topic: letter.topic, partition: letter.partition, key: letter.key, value: nil,
                        headers: [
                            KafkaHeader(Self.markerHeader, String(letter.offset)),
                            KafkaHeader("p2c_redriven_to", "\(event.topic)/\(event.partition ?? -1)"),
                        ]))
            }
            try producer.commitTransaction()
            done += chunk.count
            report("re-driven \(done)/\(records.count)")
        }
        return done
    }

    /// Whether `letter` passes the filters given (each nil: any).
    public static func selects(_ letter: KafkaRecord, code: String?, key: String?, since: Int64?) -> Bool {
        if let code, letter.header(DeadLetter.codeHeader)?.text != code { return false }
        if let key, letter.key != Array(key.utf8) { return false }
        if let since, deadLetteredAt(letter) < since { return false }
        return true
    }

    /// When `letter` was dead-lettered (the record's own time for letters without the header).
    public static func deadLetteredAt(_ letter: KafkaRecord) -> Int64 {
        letter.header(DeadLetter.deadLetteredAtHeader)?.text.flatMap { Int64($0) } ?? letter.timestamp
    }

    /// The event to put back: the letter's key and value to its source partition, with its original
    /// headers and the re-drive marks; nil when the letter does not say where it came from.
    public static func redriven(_ letter: KafkaRecord) -> OutgoingRecord? {
        guard let topic = letter.header(DeadLetter.sourceTopicHeader)?.text,
            let partition = letter.header(DeadLetter.sourcePartitionHeader)?.text.flatMap({ Int32($0) }),
            let offset = letter.header(DeadLetter.sourceOffsetHeader)?.text
        else { return nil }
        let origin = letter.header(RecordTranslator.redriveOriginHeader)?.text ?? "\(topic)/\(partition)/\(offset)"
        let count = (letter.header(countHeader)?.text.flatMap { Int($0) } ?? 0) + 1
        var headers = letter.headers.filter { !letterHeaders.contains($0.name) }
        headers.append(KafkaHeader(RecordTranslator.redriveOriginHeader, origin))
        headers.append(KafkaHeader(countHeader, String(count)))
        headers.append(KafkaHeader(fromHeader, "\(letter.topic)/\(letter.partition)/\(letter.offset)"))
        return OutgoingRecord(
            topic: topic, partition: partition, key: letter.key, value: letter.value, headers: headers)
    }

    /// Reads every partition of `topics` from the beginning to its end.
    public static func readAll(_ consumer: KafkaConsumer, topics: [TopicDeclaration]) throws -> [String: [KafkaRecord]]
    {
        var result: [String: [KafkaRecord]] = [:]
        try consumer.readToEnd(
            topics.flatMap { topic in
                (0..<topic.partitions).map {
                    TopicPartitionOffset(topic.name, Int32($0), offset: KafkaOffset.beginning)
                }
            }
        ) { result[$0.topic, default: []].append($0) }
        return result
    }
}
