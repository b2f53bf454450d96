import Connectors
import Foundation
import OData
import ProspectToCash
import Runtime

/// Reads F&O records page by page for an initial load: an entity set's records of one company
/// (or of every company) in key order, `$skip`/`$top` pages ("Open Data Protocol (OData)": client paging with
/// `$orderby` on the key is stable, and a position is a number to resume from), `$count` for the
/// total, `cross-company=true` always.
public struct FinanceOperationsReader: Sendable {
    public let client: ServiceClient

    public init(client: ServiceClient) {
        self.client = client
    }

    public struct Page: Sendable {
        /// Records as the service returns them (its property names, `@odata.etag`).
        public var records: [JSONObject]
        /// With `count`: how many records the whole read holds.
        public var total: Int?
    }

    /// Records `skip ..< skip + top` of `entity` (of `company`, or of every company when nil),
    /// with `select`ed properties only (all when empty).
    public func page(
        _ entity: FinanceOperationsSchema.Entity, company: String?, select: [String], skip: Int, top: Int,
        count: Bool = false
    ) async throws -> Page {
        var query = ["cross-company=true"]
        if let company {
            let literal = ODataLiteral.string(company).text
            query.append("$filter=dataAreaId%20eq%20\(Self.encoded(literal))")
        }
        query.append("$orderby=\(entity.keys.map(\.name).joined(separator: ","))")
        if !select.isEmpty { query.append("$select=\(select.joined(separator: ","))") }
        query.append("$skip=\(skip)")
        query.append("$top=\(top)")
        if count { query.append("$count=true") }
        let answer = try await client.get("\(entity.set)?\(query.joined(separator: "&"))")
        guard case .array(let values)? = answer["value"] else {
            throw ServiceError(status: 200, code: "unexpected_answer", message: "\(entity.set): no value array")
        }
        let total = answer["@odata.count"].flatMap { $0.stringValue ?? $0.jsonText }.flatMap { Int($0) }
        return Page(records: values.compactMap(\.objectValue), total: total)
    }

    private static func encoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~'")))
            ?? text
    }
}

/// An F&O record as a change event's record: the fields the maps of its entity set
/// name, upper case as the maps spell them (`CustomerAccount` → `CUSTOMERACCOUNT`); its company from
/// `dataAreaId`. Capture's data events and bootstrap's reads both come through here.
public enum FinanceOperationsRecords {
    /// Per entity set: the fields the maps of its kinds name.
    public static let fields = RecordKind.erpFieldsByEntitySet.mapValues(Set.init)

    /// The event record of `properties` (the service's names) of a record of `entitySet`, and its company.
    public static func record(
        _ properties: [(name: String, value: JSONValue)], entitySet: String
    ) -> (
        record: JSONObject, company: String?
    ) {
        let known = fields[entitySet] ?? []
        var record = JSONObject()
        var company: String?
        for (name, value) in properties {
            let upper = name.uppercased()
            if upper == "DATAAREAID" {
                company = value.stringValue?.uppercased()
            } else if known.contains(upper) {
                record[upper] = value
            }
        }
        return (record, company)
    }
}
