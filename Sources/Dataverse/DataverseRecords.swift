import Connectors
import Foundation
import ProspectToCash
import Runtime
import Synchronization

/// Turns Dataverse rows into the records of change events: the columns the maps read,
/// each lookup (`_customerid_value`, a GUID) as the natural key of the row it points to
/// (`{"customerid": {"accountnumber": "US-001"}}`), read once per row and kept in a bounded cache.
public final class DataverseRecords: Sendable {
    private let client: ServiceClient
    public let schema: DataverseSchema
    private let keys = Mutex<[String: [String: String]]>([:])
    /// Rows read to resolve a lookup (cache misses).
    public let lookupReads = Counter()

    /// Its requests besides the change reads, for `DataverseMetrics`.
    public var requests: [(kind: String, value: Int)] {
        [("table_definitions", schema.reads.value), ("lookup_reads", lookupReads.value)]
    }

    /// What one table's events carry: its columns, and its lookups with the columns of the
    /// referenced row they carry (per referenced table for a polymorphic lookup, key column first).
    public struct Shape: Sendable {
        public var kind: RecordKind
        public var table: DataverseTableDefinition
        public var columns: [String]
        public var lookups: [(attribute: String, targets: [(table: DataverseTableDefinition, columns: [String])])]

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

    /// Columns the business rules write on the CRM side (an order's state, from its processing
    /// status: the sales order status rule of `Mapper`), read too when a read compares both ways.
    public static let ruleColumns: [String: [String]] = ["salesorder": ["statecode"]]

    /// The shape of `kind`'s events, from its map's rows that flow to the ERP, the columns its
    /// filter reads, and the table's definition in the environment.
    public func shape(of kind: RecordKind) async throws -> Shape {
        let table = try await schema.table(kind.crmName)
        var columns: [String] = Self.filterColumns[kind.crmName] ?? []
        if bothWays {
            columns += (Self.ruleColumns[kind.crmName] ?? []).filter { !columns.contains($0) }
        }
        var lookups: [(String, [(DataverseTableDefinition, [String])])] = []
        var seen = Set(columns)
        let rows = maps[kind.mapName]?.rows ?? []
        for row in rows where (row.type.flowsToERP || bothWays) && row.crmColumn != "none" {
            if let open = row.crmColumn.range(of: ".Account(") {
                // customerid.Account(accountnumber).Contact(msdyn_contactpersonid)
                let attribute = String(row.crmColumn[..<open.lowerBound])
                guard seen.insert(attribute).inserted else { continue }
                var targets: [(DataverseTableDefinition, [String])] = []
                for part in row.crmColumn[open.lowerBound...].split(separator: ".") {
                    guard let paren = part.firstIndex(of: "(") else { continue }
                    let name = part[..<paren].lowercased()
                    let column = part[part.index(after: paren)...].dropLast()
                    targets.append((try await schema.table(name), [String(column)]))
                }
                lookups.append((attribute, targets))
                continue
            }
            let path = row.crmColumn.split(separator: ".").map(String.init)
            if path.count == 2, let lookup = table.lookups(of: path[0]).first {
                // A lookup several rows read (an invoice line's invoice: its number, date and
                // voucher) carries each column, the referenced table's key column first.
                let target = try await schema.table(lookup.target)
                if let known = lookups.firstIndex(where: { $0.0 == path[0] }) {
                    guard !lookups[known].1[0].1.contains(path[1]) else { continue }
                    if target.keys.contains([path[1]]) {
                        lookups[known].1[0].1.insert(path[1], at: 0)
                    } else {
                        lookups[known].1[0].1.append(path[1])
                    }
                    continue
                }
                guard seen.insert(path[0]).inserted else { continue }
                lookups.append((path[0], [(target, [path[1]])]))
                continue
            }
            guard seen.insert(path[0]).inserted else { continue }
            if path.count == 1 { columns.append(path[0]) }
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
            // The first referenced table (a polymorphic lookup names several) that holds the row.
            for (table, columns) in targets where named == nil || named == table.logicalName {
                guard let values = try await values(of: id, in: table, columns: columns) else { continue }
                var object = JSONObject()
                for column in columns {
                    if let value = values[column] { object[column] = .string(value) }
                }
                record[attribute] = .object(object)
                break
            }
        }
        return record
    }

    /// The `columns` of row `id` of `table`, read in one request (and remembered); nil when it has
    /// no such row or no value in the first column.
    private func values(
        of id: String, in table: DataverseTableDefinition, columns: [String]
    ) async throws -> [String: String]? {
        let cacheKey = "\(table.entitySet)/\(id)/\(columns.joined(separator: ","))"
        if let known = keys.withLock({ $0[cacheKey] }) { return known }
        lookupReads.add()
        let answer = try await client.send("GET", "\(table.entitySet)(\(id))?$select=\(columns.joined(separator: ","))")
        if answer.status == 404 { return nil }
        guard answer.status == 200 else { throw ServiceError(answer) }
        var values: [String: String] = [:]
        for column in columns {
            guard let value = answer.json?[column], value != .null else { continue }
            values[column] = value.stringValue ?? value.jsonText
        }
        guard values[columns[0]] != nil else { return nil }
        keys.withLock { keys in
            if keys.count >= 100_000 { keys.removeAll(keepingCapacity: true) }
            keys[cacheKey] = values
        }
        return values
    }
}
