import Kafka
import Membership
import Operations
import Testing
import Worker

@Suite("Which dead letters a re-drive takes, and the event it puts back")
struct DeadLetterRedriveTests {
    /// A letter of `crm.orders.changes` partition 4 offset 17, dead-lettered at `at` with `code`.
    private func letter(code: String, key: String, at: Int64?, extra: [KafkaHeader] = []) -> KafkaRecord {
        var headers = [
            KafkaHeader("ce_type", "salesorder.upserted"), KafkaHeader(DeadLetter.codeHeader, code),
            KafkaHeader(DeadLetter.messageHeader, "no such customer"),
            KafkaHeader(DeadLetter.sourceTopicHeader, "crm.orders.changes"),
            KafkaHeader(DeadLetter.sourcePartitionHeader, "4"), KafkaHeader(DeadLetter.sourceOffsetHeader, "17"),
        ]
        if let at { headers.append(KafkaHeader(DeadLetter.deadLetteredAtHeader, String(at))) }
        return KafkaRecord(
            topic: "crm.orders.changes.dlq", partition: 4, offset: 2, key: Array(key.utf8), value: Array("{}".utf8),
            headers: headers + extra, timestamp: 1_000)
    }

    @Test("Filters by code, key and time; a letter without its dead-letter time is judged by the record's own")
    func selection() {
        let clash = letter(code: "number_sequence_clash", key: "USMF/C1", at: 5_000)
        #expect(DeadLetterRedrive.selects(clash, code: nil, key: nil, since: nil))
        #expect(DeadLetterRedrive.selects(clash, code: "number_sequence_clash", key: "USMF/C1", since: 5_000))
        #expect(!DeadLetterRedrive.selects(clash, code: "bad_value", key: nil, since: nil))
        #expect(!DeadLetterRedrive.selects(clash, code: nil, key: "USMF/C2", since: nil))
        #expect(!DeadLetterRedrive.selects(clash, code: nil, key: nil, since: 5_001))
        let old = letter(code: "bad_value", key: "USMF/C1", at: nil)
        #expect(DeadLetterRedrive.deadLetteredAt(old) == 1_000)
        #expect(!DeadLetterRedrive.selects(old, code: nil, key: nil, since: 2_000))
    }

    @Test(
        "The event goes back to its source partition with its key, value and own headers, without the letter's, counting re-drives and keeping its first origin"
    )
    func event() throws {
        let first = try #require(DeadLetterRedrive.redriven(letter(code: "x", key: "USMF/C1", at: 5_000)))
        #expect(first.topic == "crm.orders.changes" && first.partition == 4)
        #expect(first.key == Array("USMF/C1".utf8) && first.value == Array("{}".utf8))
        let names = first.headers.map(\.name)
        #expect(names.contains("ce_type") && !names.contains(DeadLetter.codeHeader))
        #expect(
            first.headers.first { $0.name == RecordTranslator.redriveOriginHeader }?.text == "crm.orders.changes/4/17")
        #expect(first.headers.first { $0.name == DeadLetterRedrive.countHeader }?.text == "1")
        // Dead-lettered again after its re-drive: the origin stays the first one, the count goes on.
        let again = letter(
            code: "x", key: "USMF/C1", at: 6_000,
            extra: [
                KafkaHeader(RecordTranslator.redriveOriginHeader, "crm.orders.changes/1/3"),
                KafkaHeader(DeadLetterRedrive.countHeader, "1"),
            ])
        let second = try #require(DeadLetterRedrive.redriven(again))
        #expect(
            second.headers.first { $0.name == RecordTranslator.redriveOriginHeader }?.text == "crm.orders.changes/1/3")
        #expect(second.headers.first { $0.name == DeadLetterRedrive.countHeader }?.text == "2")
        // A letter that does not say where it came from cannot go back.
        var orphan = letter(code: "x", key: "USMF/C1", at: 1)
        orphan.headers.removeAll { $0.name == DeadLetter.sourceTopicHeader }
        #expect(DeadLetterRedrive.redriven(orphan) == nil)
    }
}
