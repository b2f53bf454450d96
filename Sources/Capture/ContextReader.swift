import Connectors
import Foundation
import OData
import ProspectToCash
import Runtime
import Synchronization
import Topology

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

/// Dataverse's webhooks: a post's content is not trusted (anyone holding the key can post
/// anything); the row published is the one the environment has, read by the post's id when the
/// post is taken, the posts taken together in one `$batch`, lookups as natural keys. A row gone by
/// then publishes nothing for a Create or an Update (the Delete's post says so) and is deleted for
/// a Delete, keyed by its pre image (register one with the key columns on Delete steps) unless a
/// row with that key still exists. A Delete of a row that still exists publishes the row.
/// ("Use webhooks to create external handlers for server events", Microsoft Learn.)
public final class DataverseContextReader: ContextReader {
    private let client: ServiceClient
    private let records: DataverseRecords
    private let kinds: [String: RecordKind]
    private let shapes = Mutex<[String: DataverseRecords.Shape]>([:])
    /// Rows read back by their id, and deletes' keys checked.
    private let reads = Counter()

    public init(client: ServiceClient, streams: [SyncStream], generation: MapGeneration = .classic) {
        self.client = client
        records = DataverseRecords(client: client, schema: DataverseSchema(client: client), generation: generation)
        var kinds: [String: RecordKind] = [:]
        for kind in RecordKind.all
        where kind.stream.sources.contains(.crm) && (streams.isEmpty || streams.contains(kind.stream)) {
            kinds[kind.crmName] = kind
        }
        self.kinds = kinds
    }

    public var requests: [(kind: String, value: Int)] { records.requests + [("record", reads.value)] }

    public func kind(named name: String) async throws -> RecordKind? { kinds[name] }

    public func record(
        of context: JSONObject, kind: RecordKind, deleted: Bool, id: String
    ) async throws -> ContextChange? {
        try await records(of: [ContextRead(context: context, kind: kind, deleted: deleted, id: id)])[0]
    }

    /// The rows of `reads` as they are now, read by their ids in `$batch`es of up to 100 GETs.
    /// A post whose id is not a row id names no row: nil.
    public func records(of reads: [ContextRead]) async throws -> [ContextChange?] {
        let named = reads.indices.filter { UUID(uuidString: reads[$0].id) != nil }
        var changes = [ContextChange?](repeating: nil, count: reads.count)
        for start in stride(from: 0, to: named.count, by: 100) {
            let indices = named[start..<min(start + 100, named.count)]
            let chunk = indices.map { reads[$0] }
            var shapes: [DataverseRecords.Shape] = []
            for read in chunk { shapes.append(try await shape(of: read.kind)) }
            let answers = try await get(
                zip(chunk, shapes).map { read, shape in
                    "\(shape.table.entitySet)(\(read.id))?$select=\(shape.select.joined(separator: ","))"
                })
            for (index, (shape, answer)) in zip(indices, zip(shapes, answers)) {
                changes[index] = try await change(
                    of: reads[index], shape: shape, status: answer.status, row: answer.row)
            }
        }
        return changes
    }

    private func change(
        of read: ContextRead, shape: DataverseRecords.Shape, status: Int, row: JSONObject?
    ) async throws -> ContextChange? {
        switch status {
        case 200:
            guard let row else { throw ServiceError(status: 200, code: "read", message: "a row read had no body") }
            return ContextChange(record: try await records.record(of: row, shape: shape), company: nil, deleted: false)
        case 404 where !read.deleted:
            return ContextChange(record: JSONObject(), company: nil, deleted: false, skip: true)
        case 404:
            let record = try await records.record(
                of: Self.row(image: "PreEntityImages", of: read.context), shape: shape)
            guard case .string(let number)? = record.value(at: read.kind.crmKey) else { return nil }
            // The pre image is the post's word: a row that still has its key is not deleted.
            if read.kind.crmKey.count == 1, try await exists(shape, key: read.kind.crmKey[0], number) {
                return ContextChange(record: JSONObject(), company: nil, deleted: false, skip: true)
            }
            return ContextChange(record: record, company: nil, deleted: true)
        default:
            throw ServiceError(
                status: status, code: "read", message: "reading a \(read.kind.crmName) by its id answered \(status)")
        }
    }

    /// Whether a row of `shape`'s table has `value` in `column`.
    private func exists(_ shape: DataverseRecords.Shape, key column: String, _ value: String) async throws -> Bool {
        let literal = "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
        let filter = "\(column) eq \(literal)".addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? ""
        reads.add()
        let answer = try await client.send(
            "GET", "\(shape.table.entitySet)?$select=\(shape.table.primaryID)&$filter=\(filter)&$top=1")
        guard answer.status == 200, case .array(let rows)? = answer.json?["value"] else {
            throw ServiceError(answer)
        }
        return !rows.isEmpty
    }

    /// GETs `resources` in one `$batch`: each one's status and JSON body.
    private func get(_ resources: [String]) async throws -> [(status: Int, row: JSONObject?)] {
        reads.add(resources.count)
        let parts = resources.map { ODataBatch.Part.single(ODataMessage(method: "GET", url: $0)) }
        switch try await client.batch(parts) {
        case .parts(let answers) where answers.count == parts.count:
            return try answers.map { answer in
                guard case .single(let message) = answer else {
                    throw ServiceError(status: 0, code: "read", message: "a row read had no single answer")
                }
                return (message.status, (try? JSONParser.parse(message.body))?.objectValue)
            }
        case .parts:
            throw ServiceError(status: 0, code: "read", message: "the $batch of row reads was not answered whole")
        case .refused(let response):
            throw ServiceError(
                status: response.status, code: "read", message: "the $batch of row reads answered \(response.status)")
        }
    }

    private func shape(of kind: RecordKind) async throws -> DataverseRecords.Shape {
        if let known = shapes.withLock({ $0[kind.crmName] }) { return known }
        let shape = try await records.shape(of: kind)
        shapes.withLock { $0[kind.crmName] = shape }
        return shape
    }

    /// An image's attributes as a Web API row: lookups as `_<name>_value` with the referenced
    /// table's annotation, option sets and money as their values.
    static func row(image: String, of context: JSONObject) -> JSONObject {
        guard case .array(let images)? = context[image], let first = images.first?.objectValue?["value"]?.objectValue
        else { return JSONObject() }
        return row(of: first)
    }

    /// An input parameter's entity (`Target`, F&O's `PreImage`).
    static func parameter(_ name: String, of context: JSONObject) -> JSONObject? {
        guard case .array(let parameters)? = context["InputParameters"] else { return nil }
        return parameters.lazy.compactMap(\.objectValue).first(where: { $0["key"]?.stringValue == name })?["value"]?
            .objectValue
    }

    private static func row(of entity: JSONObject) -> JSONObject {
        var row = JSONObject()
        guard case .array(let attributes)? = entity["Attributes"] else { return row }
        for case .object(let attribute) in attributes {
            guard let name = attribute["key"]?.stringValue, let value = attribute["value"] else { continue }
            if case .object(let object) = value, let type = object["__type"]?.stringValue {
                if type.hasPrefix("EntityReference"), let id = object["Id"]?.stringValue {
                    row["_\(name)_value"] = .string(id.lowercased())
                    if let table = object["LogicalName"]?.stringValue {
                        row["_\(name)_value@Microsoft.Dynamics.CRM.lookuplogicalname"] = .string(table)
                    }
                } else if let inner = object["Value"] {
                    // OptionSetValue, Money.
                    row[name] = inner
                }
                continue
            }
            row[name] = value
        }
        return row
    }
}

/// F&O's data events ("Data events"): the entity's fields in `Target` (and the record before in
/// `PreImage`), named as the environment's `$metadata` spells them, give the record's key; the
/// record published is the one read by that key when the event is taken (events come in no
/// documented order), with the maps' upper-case field names, only those the maps know, the company
/// from `dataAreaId`. A record gone by then is published as deleted, keyed by the event's key fields.
public final class FinanceOperationsContextReader: ContextReader {
    private let schema: FinanceOperationsSchema
    private let streams: [SyncStream]
    /// Records read by their key.
    private let reads = Counter()

    public init(schema: FinanceOperationsSchema, streams: [SyncStream]) {
        self.schema = schema
        self.streams = streams
    }

    public var requests: [(kind: String, value: Int)] {
        [("metadata", schema.reads.value), ("record", reads.value)]
    }

    /// By entity type name (what data events carry) or entity set name, case-insensitively.
    public func kind(named name: String) async throws -> RecordKind? {
        let entities = try await schema.load()
        let lowered = name.lowercased()
        guard
            let entity = entities.values.first(where: {
                $0.typeName.lowercased() == lowered || $0.set.lowercased() == lowered
            })
        else { return nil }
        return RecordKind.all.first {
            $0.erpEntitySet == entity.set && $0.stream.sources.contains(.erp)
                && (streams.isEmpty || streams.contains($0.stream))
        }
    }

    public func record(
        of context: JSONObject, kind: RecordKind, deleted: Bool, id: String
    ) async throws -> ContextChange? {
        guard let target = try await target(of: context, kind: kind, deleted: deleted) else { return nil }
        reads.add()
        let answer = try await schema.client.send("GET", target.path + "?cross-company=true")
        return try change(of: target, deleted: deleted, status: answer.status, body: answer.json)
    }

    /// Their records read by key in `$batch`es of up to 100 GETs.
    public func records(of reads: [ContextRead]) async throws -> [ContextChange?] {
        var targets: [Target?] = []
        for read in reads {
            targets.append(try await target(of: read.context, kind: read.kind, deleted: read.deleted))
        }
        let wanted = targets.indices.filter { targets[$0] != nil }
        var changes = [ContextChange?](repeating: nil, count: reads.count)
        for start in stride(from: 0, to: wanted.count, by: 100) {
            let chunk = wanted[start..<min(start + 100, wanted.count)]
            self.reads.add(chunk.count)
            let parts = chunk.map { index -> ODataBatch.Part in
                .single(ODataMessage(method: "GET", url: targets[index]!.path + "?cross-company=true"))
            }
            guard case .parts(let answers) = try await schema.client.batch(parts), answers.count == chunk.count
            else {
                throw ServiceError(status: 0, code: "read", message: "the $batch of record reads was not answered")
            }
            for (index, answer) in zip(chunk, answers) {
                guard case .single(let message) = answer else {
                    throw ServiceError(status: 0, code: "read", message: "a record read had no single answer")
                }
                let body = (try? JSONParser.parse(message.body))?.objectValue
                changes[index] = try change(
                    of: targets[index]!, deleted: reads[index].deleted, status: message.status, body: body)
            }
        }
        return changes
    }

    /// A context's record: its entity set, its attributes, the path of its key.
    struct Target {
        var set: String
        var attributes: [String: JSONValue]
        var path: String
    }

    private func target(of context: JSONObject, kind: RecordKind, deleted: Bool) async throws -> Target? {
        guard let set = kind.erpEntitySet else { return nil }
        var attributes = Self.attributes(DataverseContextReader.parameter("Target", of: context))
        if deleted || attributes.isEmpty {
            for (name, value) in Self.attributes(DataverseContextReader.parameter("PreImage", of: context))
            where attributes[name] == nil {
                attributes[name] = value
            }
        }
        let entity = try await schema.entity(of: kind)
        var key: [(name: String, value: ODataLiteral)] = []
        for property in entity.keys {
            guard let value = attributes.first(where: { $0.key.lowercased() == property.name.lowercased() })?.value,
                let literal = entity.literal(value, for: property)
            else { return nil }
            key.append((property.name, literal))
        }
        return Target(set: set, attributes: attributes, path: ODataPath.entity(entity.set, key: key))
    }

    /// Data events come in no documented order and carry no version ("Data events"): the record as it is
    /// now, read by its key, is what a change publishes, so an event overtaken by a newer one
    /// publishes the newer state. Gone now: deleted (an update's event overtaken by the delete's
    /// publishes nothing; the delete's says so); there again after a delete: recreated.
    private func change(of target: Target, deleted: Bool, status: Int, body: JSONObject?) throws -> ContextChange? {
        var attributes = target.attributes
        var gone = deleted
        switch status {
        case 200:
            guard let current = body else { return nil }
            attributes = current.fields.reduce(into: [:]) { $0[$1.key] = $1.value }
            gone = false
        case 404:
            if !deleted { return ContextChange(record: JSONObject(), company: nil, deleted: false, skip: true) }
        default:
            throw ServiceError(
                status: status, code: "read", message: "reading \(target.path) by its key answered \(status)")
        }
        let change = FinanceOperationsRecords.record(
            attributes.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) }, entitySet: target.set)
        return ContextChange(record: change.record, company: change.company, deleted: gone)
    }

    private static func attributes(_ entity: JSONObject?) -> [String: JSONValue] {
        guard case .array(let list)? = entity?["Attributes"] else { return [:] }
        var attributes: [String: JSONValue] = [:]
        for case .object(let attribute) in list {
            if let name = attribute["key"]?.stringValue, let value = attribute["value"] { attributes[name] = value }
        }
        return attributes
    }
}
