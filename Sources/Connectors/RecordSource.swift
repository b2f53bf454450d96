import ProspectToCash

/// One read of a system's records: one table or entity set, for one company (nil: every company
/// the system holds).
public struct RecordStep: Sendable, CustomStringConvertible {
    public var kind: RecordKind
    /// The table or entity set read; kinds that share one are read once.
    public var set: String
    public var company: String?
    /// Records it holds, once counted.
    public var total = 0
    /// How logs and stored load positions name it.
    public var description: String

    public init(kind: RecordKind, set: String, company: String?, description: String) {
        self.kind = kind
        self.set = set
        self.company = company
        self.description = description
    }
}

/// One record as a system holds it: its event data (the maps' names), its company, and an id that
/// stays the same while the record does not change.
public struct SourceRecord: Sendable {
    public var data: JSONObject
    public var company: String
    public var id: String

    public init(data: JSONObject, company: String, id: String) {
        self.data = data
        self.company = company
        self.id = id
    }
}

/// Where bootstrap and reconcile read a system's records, page by page.
public protocol RecordSource: Sendable {
    /// How many records `step` holds (for progress).
    func total(_ step: RecordStep) async throws -> Int
    /// One page of `step` from `cursor` (nil: its start): its records, and the cursor after them
    /// (nil: the step is done).
    func page(_ step: RecordStep, cursor: String?, size: Int) async throws -> (records: [SourceRecord], next: String?)
}
