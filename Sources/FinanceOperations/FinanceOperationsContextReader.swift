import Connectors
import Foundation
import OData
import ProspectToCash
import Runtime
import Synchronization
import Topology

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
        var attributes = Self.attributes(ExecutionContext.parameter("Target", of: context))
        if deleted || attributes.isEmpty {
            for (name, value) in Self.attributes(ExecutionContext.parameter("PreImage", of: context))
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
