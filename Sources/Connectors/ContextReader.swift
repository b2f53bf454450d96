import ProspectToCash

/// How a side's `RemoteExecutionContext` becomes the record of a change event: capture publishes
/// the same events whatever shape the system posts.
public protocol ContextReader: Sendable {
    /// The kind a context's `PrimaryEntityName` names, nil when it is not captured.
    func kind(named name: String) async throws -> RecordKind?
    /// The change: its record, its company (nil: the configured one) and whether the record is
    /// gone; nil when its key cannot be known.
    func record(
        of context: JSONObject, kind: RecordKind, deleted: Bool, id: String
    ) async throws -> ContextChange?
    /// The changes of several contexts at once (F&O: their records read in one `$batch`), in
    /// their order.
    func records(of reads: [ContextRead]) async throws -> [ContextChange?]
    /// What it asked the system, for `/metrics`.
    var requests: [(kind: String, value: Int)] { get }
}

/// One context to read: as `ContextReader.record(of:kind:deleted:id:)` takes it.
public struct ContextRead: Sendable {
    public var context: JSONObject
    public var kind: RecordKind
    public var deleted: Bool
    public var id: String

    public init(context: JSONObject, kind: RecordKind, deleted: Bool, id: String) {
        self.context = context
        self.kind = kind
        self.deleted = deleted
        self.id = id
    }
}

extension ContextReader {
    /// One after the other.
    public func records(of reads: [ContextRead]) async throws -> [ContextChange?] {
        var changes: [ContextChange?] = []
        for read in reads {
            changes.append(try await record(of: read.context, kind: read.kind, deleted: read.deleted, id: read.id))
        }
        return changes
    }
}

/// What a posted context says changed: the record, its company (nil: the configured one), whether
/// it is gone. `skip`: nothing to publish (the record was deleted after this change; the delete's
/// own event says so).
public struct ContextChange: Sendable {
    public var record: JSONObject
    public var company: String?
    public var deleted: Bool
    public var skip = false

    public init(record: JSONObject, company: String?, deleted: Bool, skip: Bool = false) {
        self.record = record
        self.company = company
        self.deleted = deleted
        self.skip = skip
    }
}

/// A posted `RemoteExecutionContext`, as Dataverse's webhooks and F&O's data events send it.
public enum ExecutionContext {
    /// An input parameter's entity (`Target`, F&O's `PreImage`).
    public static func parameter(_ name: String, of context: JSONObject) -> JSONObject? {
        guard case .array(let parameters)? = context["InputParameters"] else { return nil }
        return parameters.lazy.compactMap(\.objectValue).first(where: { $0["key"]?.stringValue == name })?["value"]?
            .objectValue
    }
}
