import Foundation
import Kafka
import ProspectToCash

/// The record sent to `<input topic>.dlq` for a refused event: the original key, value and headers,
/// untouched, with the reason and the source position added.
enum DeadLetter {
    static func record(for input: KafkaRecord, error: MappingError, topic: String) -> OutgoingRecord {
        var headers = input.headers
        headers.append(KafkaHeader("p2c_error_code", error.code.rawValue))
        headers.append(KafkaHeader("p2c_error_message", error.message))
        headers.append(KafkaHeader("p2c_source_topic", input.topic))
        headers.append(KafkaHeader("p2c_source_partition", String(input.partition)))
        headers.append(KafkaHeader("p2c_source_offset", String(input.offset)))
        headers.append(KafkaHeader("p2c_dead_lettered_at", String(Int64(Date().timeIntervalSince1970 * 1000))))
        return OutgoingRecord(
            topic: topic, key: input.key, value: input.value, headers: headers,
            timestamp: input.timestamp >= 0 ? input.timestamp : nil)
    }
}
