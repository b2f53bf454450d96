import Kafka
import Membership
import ProspectToCash

extension DeadLetter {
    /// The dead letter of `input`, which the maps refused with `error`.
    static func record(for input: KafkaRecord, error: MappingError, topic: String) -> OutgoingRecord {
        record(for: input, code: error.code.rawValue, message: error.message, topic: topic)
    }
}
