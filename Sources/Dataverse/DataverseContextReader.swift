import Connectors
import Foundation
import OData
import ProspectToCash
import Runtime
import Synchronization
import Topology

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
