import Foundation
import Kafka
import ProspectToCash
import Topology

/// The change event of DESIGN.md as capture, bootstrap and reconcile publish it: a binary-mode
/// CloudEvent (`ce_*` headers, the record as the JSON value) keyed by its subject.
public enum ChangeEvent {
    /// `<record>.<action>` from `side` about `subject` (`<company>/<number>`); `time` is when the
    /// record changed (now when not known); an echo (a change an apply identity made) carries
    /// `ce_origin: p2c`.
    public static func record(
        topic: String, side: Side, record name: String, action: String = "upserted", id: String, subject: String,
        company: String, data: JSONObject, time: String? = nil, echo: Bool = false
    ) -> OutgoingRecord {
        var headers = [
            KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", id), KafkaHeader("ce_source", side.rawValue),
            KafkaHeader("ce_type", "\(name).\(action)"), KafkaHeader("ce_time", time ?? Date().formatted(.iso8601)),
            KafkaHeader("ce_subject", subject), KafkaHeader("ce_company", company),
            KafkaHeader("content-type", "application/json"),
        ]
        if echo { headers.append(KafkaHeader("ce_origin", "p2c")) }
        return OutgoingRecord(topic: topic, key: Array(subject.utf8), value: data.jsonBytes, headers: headers)
    }
}
