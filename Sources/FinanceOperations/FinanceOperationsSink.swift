import Connectors
import Foundation
import OData
import ProspectToCash
import Runtime
import Synchronization

/// Writes documents into F&O through its OData service: composite keys with `dataAreaId` and `cross-company=true`
/// ("Open Data Protocol (OData)"), each document's events in order as one change set (atomic), many documents per
/// `$batch`.
///
/// F&O documents no upsert ("Open Data Protocol (OData)" describes create and update only), so create-or-update is
/// explicit and does not depend on what PATCH does to a missing key: whether a record exists is read first (GETs by
/// key in one `$batch`, kept afterwards), then POST creates and PATCH updates. A line is written only under an
/// existing header (read the same way); until then it waits for it. The answer of a `$batch` may stop at a failed
/// change set (`continue-on-error` is not documented for F&O): the change sets it did not answer go again in the
/// next round.
public final class FinanceOperationsSink: DocumentSink, BatchingSink {
    public let client: ServiceClient
    public let schema: FinanceOperationsSchema
    /// Whether a record exists, by `<set>(<key>)`: known from a read or from this sink's own writes.
    private let existence = Mutex<[String: Bool]>([:])
    /// Records read to learn whether they exist, and `$batch` requests sent.
    public let existenceReads = Counter()
    public let batches = Counter()

    public init(client: ServiceClient, schema: FinanceOperationsSchema) {
        self.client = client
        self.schema = schema
    }

    /// One event as a write: the record's path, its header's (for a line), and the body.
    struct Write {
        var path: String
        var header: String?
        var deleted: Bool
        var body: JSONObject
    }

    /// One document's change set: the items written, their requests, their writes.
    struct ChangeSet {
        var document: Int
        var items: [Int] = []
        var messages: [ODataMessage] = []
        var writes: [Write] = []
    }

    public func apply(_ documents: [[ApplyItem]]) async -> [[ApplyOutcome]] {
        var outcomes = documents.map { Array(repeating: ApplyOutcome.notSent, count: $0.count) }
        // 1. Each item as a write; a refusal (unknown table, field or key) is settled at once.
        var writes: [[Write?]] = []
        for (number, items) in documents.enumerated() {
            var row: [Write?] = []
            for (position, item) in items.enumerated() {
                do {
                    row.append(try await write(item))
                } catch let refusal as WriteRefusal {
                    outcomes[number][position] = .refused(code: refusal.code, message: refusal.message, request: nil)
                    row.append(nil)
                } catch {
                    return documents.map { Array(repeating: Self.outcome(of: error), count: $0.count) }
                }
            }
            writes.append(row)
        }
        // 2. Whether the records and headers exist, where not known yet.
        if let failure = await learnExistence(of: writes.joined().compactMap { $0 }) {
            return documents.map { Array(repeating: failure, count: $0.count) }
        }
        // 3. One change set per document: the writes its order allows now.
        var changeSets: [ChangeSet] = []
        var contentID = 0
        for number in documents.indices {
            let set = changeSet(number, writes: writes[number], outcomes: &outcomes[number], contentID: &contentID)
            if !set.items.isEmpty { changeSets.append(set) }
        }
        guard !changeSets.isEmpty else { return outcomes }
        // 4. The change sets in one `$batch`.
        batches.add()
        let (parts, failure) = await exchange(changeSets.map { .changeSet($0.messages) })
        for (index, set) in changeSets.enumerated() {
            if let failure {
                for item in set.items { outcomes[set.document][item] = failure }
            } else if index < parts.count {
                settle(set, answer: parts[index], outcomes: &outcomes[set.document])
            }
            // Not answered: the batch stopped at an earlier failure; it goes in the next round.
        }
        return outcomes
    }

    /// Reads whether the records of `writes` and their headers exist, where this sink does not know
    /// yet: headers and masters first, then the lines of headers that exist (a missing header's
    /// lines are missing too). The outcome of every write when the reads failed.
    func learnExistence(of writes: [Write]) async -> ApplyOutcome? {
        var unknown = Set<String>()
        var headerOf: [String: String] = [:]
        existence.withLock { known in
            for write in writes {
                if known[write.path] == nil { unknown.insert(write.path) }
                if let header = write.header {
                    headerOf[write.path] = header
                    if known[header] == nil { unknown.insert(header) }
                }
            }
        }
        let first = unknown.filter { headerOf[$0] == nil }
        if !first.isEmpty, let failure = await read(first.sorted()) { return failure }
        var lines: [String] = []
        existence.withLock { known in
            for line in unknown.subtracting(first) {
                if known[headerOf[line]!] == false {
                    known[line] = false
                } else {
                    lines.append(line)
                }
            }
        }
        if !lines.isEmpty, let failure = await read(lines.sorted()) { return failure }
        return nil
    }

    /// Document `number`'s change set: in the document's order, each write its records allow now
    /// (a create, an update, a delete of what exists); a line whose header this document writes
    /// later goes after it; a line whose header does not exist waits for it, and later writes to a
    /// record that waits wait too. Settles in `outcomes` what needs no request.
    func changeSet(
        _ number: Int, writes: [Write?], outcomes: inout [ApplyOutcome], contentID: inout Int
    ) -> ChangeSet {
        var exists = existence.withLock { known in
            Dictionary(
                writes.compactMap { $0 }.flatMap { [$0.path] + ($0.header.map { [$0] } ?? []) }.map {
                    ($0, known[$0] ?? false)
                }, uniquingKeysWith: { first, _ in first })
        }
        // Records a write of this document could not go to yet: later writes to them wait too.
        var held = Set<String>()
        var set = ChangeSet(document: number)
        // Headers this document writes: a line before its header in the document's order (its
        // header's event came later) goes after it in the change set. The records differ, so
        // each one's own order is kept.
        let headersWritten = Set(writes.compactMap { $0 }.filter { !$0.deleted }.map(\.path))
        var deferred = Set<Int>()
        var positions = Array(writes.indices)
        var next = 0
        while next < positions.count {
            let position = positions[next]
            next += 1
            guard let write = writes[position] else { continue }
            if held.contains(write.path) && !deferred.contains(position) { continue }
            if let header = write.header, !write.deleted, exists[header] != true {
                if headersWritten.contains(header) && !deferred.contains(position) {
                    deferred.insert(position)
                    positions.append(position)
                } else {
                    outcomes[position] = .referenceMissing("\(header) does not exist yet")
                }
                held.insert(write.path)
                continue
            }
            guard let message = Self.message(for: write, exists: exists[write.path] == true) else {
                // A delete of what is gone already: what it wants.
                outcomes[position] = .applied
                continue
            }
            exists[write.path] = !write.deleted
            contentID += 1
            var numbered = message
            numbered.headers.set("Content-ID", String(contentID))
            set.items.append(position)
            set.messages.append(numbered)
            set.writes.append(write)
        }
        return set
    }

    /// The request of `write`: a DELETE of a record that exists, a PATCH of one that exists, a POST
    /// to its entity set of one that does not (F&O has no upsert); nil for a delete of a record
    /// that does not exist.
    static func message(for write: Write, exists: Bool) -> ODataMessage? {
        let url = write.path + "?cross-company=true"
        if write.deleted { return exists ? ODataMessage(method: "DELETE", url: url) : nil }
        let json = HTTPHeaders([("Content-Type", "application/json")])
        if exists { return ODataMessage(method: "PATCH", url: url, headers: json, body: write.body.jsonBytes) }
        let set = String(write.path.prefix { $0 != "(" })
        return ODataMessage(method: "POST", url: set + "?cross-company=true", headers: json, body: write.body.jsonBytes)
    }

    /// What the `$batch` answered for `set`: applied, or rolled back with the failing request's
    /// outcome (a refusal names that request; a record gone since it was read is read again).
    func settle(_ set: ChangeSet, answer: ODataBatch.Part, outcomes: inout [ApplyOutcome]) {
        switch answer {
        case .changeSet:
            for item in set.items { outcomes[item] = .applied }
            existence.withLock { known in
                for write in set.writes { known[write.path] = !write.deleted }
                if known.count > 200_000 { known.removeAll(keepingCapacity: true) }
            }
        case .single(let failure):
            // The change set was rolled back; what this sink believed of its records is read again.
            existence.withLock { known in
                for write in set.writes { known[write.path] = nil }
            }
            let failed = failure.contentID.flatMap { id in set.messages.firstIndex { $0.contentID == id } } ?? 0
            switch Self.outcome(status: failure.status, headers: failure.headers, body: failure.body) {
            case .refused(let code, let message, _):
                let request = set.messages[failed]
                outcomes[set.items[failed]] = .refused(
                    code: code, message: message, request: "\(request.method) \(request.url)")
            case .referenceMissing:
                // A record gone since it was read (404 to a PATCH or DELETE): read again, write again.
                break
            case let outcome:
                for item in set.items { outcomes[item] = outcome }
            }
        }
    }

    /// An event as a write: the entity set of its kind, its key from `dataAreaId` (the company)
    /// and the record's key fields, its fields under the environment's property names.
    func write(_ item: ApplyItem) async throws -> Write {
        guard let kind = RecordKind.all.first(where: { $0.erpName == item.table && $0.erpEntitySet != nil }) else {
            throw WriteRefusal("unknown_table", "no F&O entity set for \(item.table)")
        }
        let entity = try await entitySet(of: kind)
        guard let company = item.company, !company.isEmpty else {
            throw WriteRefusal("bad_key", "\(item.table): no company (ce_company) for dataAreaId")
        }
        var body = JSONObject()
        for field in item.record.fields {
            guard let property = entity.properties[field.key.uppercased()] else {
                throw WriteRefusal("unknown_property", "\(entity.set) has no property \(field.key) in $metadata")
            }
            if case .object = field.value {
                throw WriteRefusal("bad_value", "\(field.key): an object where F&O takes a value")
            }
            body[property.name] = field.value
        }
        var key: [(name: String, value: ODataLiteral)] = []
        for property in entity.keys {
            let value: JSONValue? =
                property.name.lowercased() == "dataareaid" ? .string(company) : body[property.name]
            guard let value, let literal = entity.literal(value, for: property),
                literal.text != "''"
            else {
                throw WriteRefusal("bad_key", "\(entity.set): no value for key field \(property.name)")
            }
            body[property.name] = value
            key.append((property.name, literal))
        }
        var header: String?
        if kind.role == .line,
            let headerKind = RecordKind.all.first(where: {
                $0.stream == kind.stream && $0.role == .header && $0.erpEntitySet != nil
            })
        {
            let headerEntity = try await entitySet(of: headerKind)
            // The header's key: the line's own key without its last part.
            let parts = headerEntity.keys.compactMap { property in
                key.first { $0.name.lowercased() == property.name.lowercased() }
            }
            if parts.count == headerEntity.keys.count { header = ODataPath.entity(headerEntity.set, key: parts) }
        }
        if item.deleted {
            // A delete names its record only.
            body = JSONObject()
        }
        return Write(path: ODataPath.entity(entity.set, key: key), header: header, deleted: item.deleted, body: body)
    }

    /// The entity set of `kind`; one the environment does not declare is a refusal.
    private func entitySet(of kind: RecordKind) async throws -> FinanceOperationsSchema.Entity {
        do {
            return try await schema.entity(of: kind)
        } catch let error as ServiceError where error.code == "unknown_entity" {
            throw WriteRefusal("unknown_entity", error.message)
        }
    }

    /// Reads whether each record exists (GET by key, `$select` of its first key field) in one
    /// `$batch`; nil once known, else the outcome that stops the round.
    private func read(_ paths: [String]) async -> ApplyOutcome? {
        existenceReads.add(paths.count)
        let messages = paths.map { path -> ODataMessage in
            let select = path.drop { $0 != "(" }.dropFirst().prefix { $0 != "=" }
            return ODataMessage(method: "GET", url: "\(path)?cross-company=true&$select=\(select)")
        }
        batches.add()
        let (parts, failure) = await exchange(messages.map { .single($0) })
        if let failure { return failure }
        var found: [String: Bool] = [:]
        for (path, part) in zip(paths, parts) {
            guard case .single(let message) = part else { continue }
            switch message.status {
            case 200: found[path] = true
            case 404: found[path] = false
            default:
                let outcome = Self.outcome(status: message.status, headers: message.headers, body: message.body)
                if case .refused(let code, let text, _) = outcome {
                    return .unavailable("reading \(path) answered \(code): \(text)")
                }
                return outcome
            }
        }
        existence.withLock { known in known.merge(found) { _, new in new } }
        return found.count == paths.count
            ? nil : .unavailable("the batch answered \(found.count) of \(paths.count) reads")
    }
}
