import Foundation
import Kafka
import TestSupport
import Testing

@Suite("p2c dlq list", .serialized, .timeLimit(.minutes(2)))
struct DLQCommandTests {
    @Test("Dead letters per topic with counts by code, offsets and samples; payloads only on request")
    func list() async throws {
        let (plain, withPayload, other) = try await Blocking.run {
            let broker = try TestBroker()
            defer { broker.stop() }
            let (bootstrap, producer) = (broker.bootstrap, broker.producer)
            let letters = [
                ("malformed_json", "USMF/C000001", "{oops"), ("bad_decimal", "USMF/C000002", #"{"quantity":"lots"}"#),
                ("malformed_json", "USMF/C000003", "["),
            ]
            for (index, letter) in letters.enumerated() {
                try producer.send(
                    OutgoingRecord(
                        topic: "crm.orders.changes.dlq", key: Array(letter.1.utf8), value: Array(letter.2.utf8),
                        headers: [
                            KafkaHeader("p2c_error_code", letter.0),
                            KafkaHeader("p2c_error_message", "reason \(index)"),
                            KafkaHeader("p2c_source_topic", "crm.orders.changes"),
                            KafkaHeader("p2c_source_partition", "5"),
                            KafkaHeader("p2c_source_offset", String(100 + index)),
                        ]))
            }
            _ = try producer.flush(timeout: .seconds(10))
            let arguments = ["dlq", "list", "--bootstrap-servers", bootstrap, "--topics", topicsDirectory]
            return (
                try run(p2cBinary, arguments + ["--flow", "crm-to-erp"]),
                try run(p2cBinary, arguments + ["--flow", "crm-to-erp", "--show-payload"]),
                try run(p2cBinary, arguments + ["--flow", "erp-to-crm"])
            )
        }
        #expect(plain.status == 0)
        #expect(plain.stdout.contains("crm.orders.changes.dlq: 3 dead letters"))
        #expect(plain.stdout.contains("crm.quotes.changes.dlq: 0 dead letters"))
        #expect(plain.stdout.contains("  malformed_json: 2"))
        #expect(plain.stdout.contains("  bad_decimal: 1"))
        #expect(plain.stdout.contains("key USMF/C000002 from crm.orders.changes[5]@101: reason 1"))
        #expect(!plain.stdout.contains("{oops"))
        #expect(withPayload.stdout.contains("value: {oops"))
        #expect(other.stdout.contains("erp.orders.changes.dlq: 0 dead letters"))
        #expect(!other.stdout.contains("crm.orders.changes.dlq"))
    }
}
