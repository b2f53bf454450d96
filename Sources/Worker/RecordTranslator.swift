import Kafka
import ProspectToCash
import Topology

/// One input record to the other side's records: the code the live flow, a targeted replay and a
/// re-driven dead letter share, so that the same input always gets the same output ids.
public struct RecordTranslator: Sendable {
    public let flow: Flow
    private let mapper: Mapper
    /// The target side's inbound topic per stream: a few pairs, searched in order (a dictionary
    /// would hash the stream's name for every record).
    private let outputTopics: [(stream: SyncStream, topic: String)]

    public init(mapper: Mapper, flow: Flow, catalog: TopicCatalog) {
        self.mapper = mapper
        self.flow = flow
        outputTopics = SyncStream.allCases.compactMap { stream in
            catalog.topic(.inbound, side: flow.target, stream: stream).map { (stream, $0.name) }
        }
    }

    /// Every topic `record(for:)` can return.
    public var outputTopicNames: [String] { outputTopics.map(\.topic) }

    /// Header a re-driven record carries: the position it was first read from, `topic/partition/offset`.
    public static let redriveOriginHeader = "p2c_redrive_origin"

    /// Decodes and maps `record` of `stream`. Output ids derive from where the record was first
    /// read: its own position, or for a re-driven dead letter the original one.
    public func outcome(of record: KafkaRecord, stream: SyncStream) -> MappingOutcome {
        var attributes = CloudEvent.Attributes()
        var origin: String?
        for header in record.headers {
            // Attribute headers first: most headers are, and their names are cheap to tell.
            if attributes.read(header: header.name, value: header.value) { continue }
            if header.name == Self.redriveOriginHeader { origin = header.text }
        }
        attributes.read(key: record.key)
        return mapper.map(
            attributes: attributes, value: record.value, flow: flow, stream: stream,
            origin: origin ?? String(record.topic, "/", String(String(record.partition), "/", String(record.offset))))
    }

    /// The Kafka record of one mapped event: keyed by its subject, to its stream's inbound topic;
    /// nil when the catalog has no such topic.
    public func record(for mapped: MappedEvent) -> OutgoingRecord? {
        guard let topic = outputTopics.first(where: { $0.stream == mapped.stream })?.topic else { return nil }
        var headers: [KafkaHeader] = []
        headers.reserveCapacity(12)
        mapped.forEachHeader { headers.append(KafkaHeader($0, $1)) }
        return OutgoingRecord(
            topic: topic, key: mapped.key, value: mapped.value, headers: headers)
    }
}
