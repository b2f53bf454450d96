import Foundation
import Kafka
import ProspectToCash
import Topology

/// The change event as capture, bootstrap and reconcile publish it: a binary-mode
/// CloudEvent (`ce_*` headers, the record as the JSON value) keyed by its subject.
public enum ChangeEvent {
    /// `<record>.<action>` from `side` about `subject` (`<company>/<number>`); `time` is when the
    /// record changed (now when not known); an echo (a change an apply identity made) carries
    /// `ce_origin: p2c`.
    public static func record(
        topic: String, side: Side, record name: String, action: String = "upserted", id: String, subject: String,
        company: String, data: JSONObject, time: String? = nil, echo: Bool = false
    ) -> OutgoingRecord {
        let event = CloudEvent(
            id: id, source: side.rawValue, type: "\(name).\(action)", time: time ?? Date().formatted(.iso8601),
            subject: subject, company: company, origin: echo ? "p2c" : nil, data: data)
        var headers: [KafkaHeader] = []
        event.forEachHeader { headers.append(KafkaHeader($0, $1)) }
        return OutgoingRecord(topic: topic, key: Array(subject.utf8), value: event.value, headers: headers)
    }
}
