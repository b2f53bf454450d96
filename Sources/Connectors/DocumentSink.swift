import ProspectToCash

/// A system that apply writes documents into: each document the events of one key, in order.
public protocol DocumentSink: Sendable {
    /// Writes `documents` in one round; one outcome per item, in the documents' order.
    func apply(_ documents: [[ApplyItem]]) async -> [[ApplyOutcome]]
}

/// One change event to write: its table (`ce_type` without the action), whether it deletes, and
/// its record.
public struct ApplyItem: Sendable {
    public var table: String
    public var deleted: Bool
    public var record: JSONObject
    /// The legal entity (`ce_company`): F&O's `dataAreaId`.
    public var company: String?
    /// It waited for a reference before: it goes alone, after its document's other writes.
    public var waiting = false

    public init(table: String, deleted: Bool, record: JSONObject, company: String? = nil, waiting: Bool = false) {
        self.table = table
        self.deleted = deleted
        self.record = record
        self.company = company
        self.waiting = waiting
    }
}

/// What became of one item.
public enum ApplyOutcome: Sendable, Equatable {
    case applied
    /// Refused for good: dead-letter it with `code` (`http_<status> <system code>` or p2c's own).
    case refused(code: String, message: String, request: String?)
    /// The service asked for a pause (429 / `Retry-After`): send again after it.
    case throttled(retryAfter: Duration)
    /// No answer, or a 5xx: send again after a backoff.
    case unavailable(String)
    /// A row it refers to does not exist yet (a line before its header): wait and send again.
    case referenceMissing(String)
    /// Not sent: it follows, in its document, a write to the same row (or one it refers to)
    /// that must land first.
    case notSent
}
