import Foundation
import ProspectToCash
import Runtime
import Synchronization

/// Turns Dataverse rows into the records of DESIGN.md's change events: the columns the maps read,
/// each lookup (`_customerid_value`, a GUID) as the natural key of the row it points to
/// (`{"customerid": {"accountnumber": "US-001"}}`), read once per row and kept in a bounded cache.
public final class DataverseRecords: Sendable {
    private let client: ServiceClient
    public let schema: DataverseSchema
    private let keys = Mutex<[String: String]>([:])
    /// Rows read to resolve a lookup (cache misses).
    public let lookupReads = Counter()

    /// Its requests besides the change reads, for `DataverseMetrics`.
    public var requests: [(kind: String, value: Int)] {
        [("table_definitions", schema.reads.value), ("lookup_reads", lookupReads.value)]
    }

    /// What one table's events carry: its columns, and its lookups with the column that names
    /// the referenced row (per referenced table for a polymorphic lookup).
    public struct Shape: Sendable {
        public var kind: RecordKind
        public var table: DataverseTableDefinition
        public var columns: [String]
        public var lookups: [(attribute: String, targets: [(table: DataverseTableDefinition, column: String)])]

        /// The `$select` of a change-tracking read: columns, lookups, and who changed the row.
        public var select: [String] {
            var all = [table.primaryID] + columns + lookups.map { "_\($0.attribute)_value" }
            all.append("_modifiedby_value")
            var seen = Set<String>()
            return all.filter { seen.insert($0).inserted }
        }
    }

    /// The maps of the deployment's generation: which columns an event carries.
    private let maps: [String: TableMap]
    private let bothWays: Bool

    /// Reads the columns `generation`'s maps send to the ERP (`bothWays`: also those they write).
    public init(
        client: ServiceClient, schema: DataverseSchema, generation: MapGeneration = .classic, bothWays: Bool = false
    ) {
        self.client = client
        self.schema = schema
        maps = TableMap.maps(for: generation)
        self.bothWays = bothWays
    }

    /// The columns the maps' source filters read on the CRM side (maps.json's
    /// `reversed_source_filter`): the workers filter by them, so the events carry them.
    public static let filterColumns: [String: [String]] = [
        "account": ["customertypecode"], "contact": ["msdyn_sellable", "msdyn_contactpersonid"],
        "quote": ["msdyn_ordertype", "statecode"], "salesorder": ["msdyn_ordertype"],
    ]

    /// The shape of `kind`'s events, from its map's rows that flow to the ERP, the columns its
    /// filter reads, and the table's definition in the environment.
    public func shape(of kind: RecordKind) async throws -> Shape {
        let table = try await schema.table(kind.crmName)
        var columns: [String] = Self.filterColumns[kind.crmName] ?? []
        var lookups: [(String, [(DataverseTableDefinition, String)])] = []
        var seen = Set(columns)
        let rows = maps[kind.mapName]?.rows ?? []
        for row in rows where (row.type.flowsToERP || bothWays) && row.crmColumn != "none" {
            if let open = row.crmColumn.range(of: ".Account(") {
                // customerid.Account(accountnumber).Contact(msdyn_contactpersonid)
                let attribute = String(row.crmColumn[..<open.lowerBound])
                guard seen.insert(attribute).inserted else { continue }
                var targets: [(DataverseTableDefinition, String)] = []
                for part in row.crmColumn[open.lowerBound...].split(separator: ".") {
                    guard let paren = part.firstIndex(of: "(") else { continue }
                    let name = part[..<paren].lowercased()
                    let column = part[part.index(after: paren)...].dropLast()
                    targets.append((try await schema.table(name), String(column)))
                }
                lookups.append((attribute, targets))
                continue
            }
            let path = row.crmColumn.split(separator: ".").map(String.init)
            guard seen.insert(path[0]).inserted else { continue }
            if path.count == 1 {
                columns.append(path[0])
            } else if path.count == 2, let lookup = table.lookups(of: path[0]).first {
                lookups.append((path[0], [(try await schema.table(lookup.target), path[1])]))
            }
        }
        return Shape(kind: kind, table: table, columns: columns, lookups: lookups)
    }

    /// The event record of `row`: its columns as read, its lookups as natural keys (a lookup whose
    /// row cannot be read is left out).
    public func record(of row: JSONObject, shape: Shape) async throws -> JSONObject {
        var record = JSONObject()
        for column in shape.columns {
            if let value = row[column] { record[column] = value }
        }
        for (attribute, targets) in shape.lookups {
            guard let id = row["_\(attribute)_value"]?.stringValue, !id.isEmpty else {
                if row["_\(attribute)_value"] == .null { record[attribute] = .null }
                continue
            }
            // The annotation names the referenced table when the service sends it.
            let named = row["_\(attribute)_value@Microsoft.Dynamics.CRM.lookuplogicalname"]?.stringValue
            for (table, column) in targets where named == nil || named == table.logicalName {
                if let value = try await key(of: id, in: table, column: column) {
                    record[attribute] = .object([column: .string(value)])
                    break
                }
            }
        }
        return record
    }

    /// The `column` of row `id` of `table`, nil when it has no such row.
    private func key(of id: String, in table: DataverseTableDefinition, column: String) async throws -> String? {
        let cacheKey = "\(table.entitySet)/\(id)/\(column)"
        if let known = keys.withLock({ $0[cacheKey] }) { return known }
        lookupReads.add()
        let answer = try await client.send("GET", "\(table.entitySet)(\(id))?$select=\(column)")
        if answer.status == 404 { return nil }
        guard answer.status == 200 else { throw ServiceError(answer) }
        guard let value = answer.json?[column], value != .null else { return nil }
        let text = value.stringValue ?? value.jsonText
        keys.withLock { keys in
            if keys.count >= 100_000 { keys.removeAll(keepingCapacity: true) }
            keys[cacheKey] = text
        }
        return text
    }
}
