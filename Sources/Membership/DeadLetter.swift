import Foundation
import Kafka

/// The record sent to `<input topic>.dlq` for a refused event (by a worker, or by the system apply
/// writes to): the original key, value and headers,
/// untouched, with the reason and the source position added.
public enum DeadLetter {
    public static let codeHeader = "p2c_error_code"
    public static let messageHeader = "p2c_error_message"
    public static let sourceTopicHeader = "p2c_source_topic"
    public static let sourcePartitionHeader = "p2c_source_partition"
    public static let sourceOffsetHeader = "p2c_source_offset"
    /// Milliseconds since the epoch.
    public static let deadLetteredAtHeader = "p2c_dead_lettered_at"
    /// Every header a dead letter adds to the original ones.
    public static let addedHeaders: Set<String> = [
        codeHeader, messageHeader, sourceTopicHeader, sourcePartitionHeader, sourceOffsetHeader, deadLetteredAtHeader,
    ]

    /// The dead letter of `input`, refused with `code` (a mapping error's, or a target system's
    /// `http_<status> <code>`) and `message`.
    public static func record(for input: KafkaRecord, code: String, message: String, topic: String) -> OutgoingRecord {
        var headers = input.headers
        headers.append(KafkaHeader(codeHeader, code))
        headers.append(KafkaHeader(messageHeader, message))
        headers.append(KafkaHeader(sourceTopicHeader, input.topic))
        headers.append(KafkaHeader(sourcePartitionHeader, String(input.partition)))
        headers.append(KafkaHeader(sourceOffsetHeader, String(input.offset)))
        headers.append(KafkaHeader(deadLetteredAtHeader, String(Int64(Date().timeIntervalSince1970 * 1000))))
        return OutgoingRecord(
            topic: topic, key: input.key, value: input.value, headers: headers,
            timestamp: input.timestamp >= 0 ? input.timestamp : nil)
    }
}
