import Foundation
import OData
import ProspectToCash

/// A table of the simulated environment: its entity set, primary key and the alternate keys a
/// deployment defines for p2c (DV-AK: most tables have none unless customized; a key may use a
/// lookup column by its lookup property name, `_<navigation property>_value`).
struct DataverseTable: Sendable {
    let logicalName: String
    let entitySet: String
    let primaryID: String
    let alternateKeys: [[String]]

    /// The prospect-to-cash tables (FACTS.md 1.3's list, and the contact persons and product
    /// details the maps write), keyed by the natural keys the change events carry; lines by their
    /// header and sequence number.
    static let p2c: [DataverseTable] = [
        .init("account", "accounts", keys: [["accountnumber"]]),
        .init("contact", "contacts", keys: [["msdyn_contactpersonid"]]),
        .init("msdyn_contactforparty", "msdyn_contactforparties", keys: [["msdyn_contactforpartynumber"]]),
        .init("product", "products", keys: [["msdyn_productnumber"]]),
        .init("msdyn_sharedproductdetails", "msdyn_sharedproductdetailses", keys: [["msdyn_productnumber"]]),
        .init("msdyn_globalproduct", "msdyn_globalproducts", keys: [["msdyn_productnumber"]]),
        .init("quote", "quotes", keys: [["msdyn_quotenumber"]]),
        .init("quotedetail", "quotedetails", keys: [["_quoteid_value", "sequencenumber"]]),
        .init("salesorder", "salesorders", keys: [["msdyn_salesordernumber"]]),
        .init("salesorderdetail", "salesorderdetails", keys: [["_salesorderid_value", "sequencenumber"]]),
        .init("invoice", "invoices", keys: [["msdyn_invoicenumber"]]),
        .init("invoicedetail", "invoicedetails", keys: [["_invoiceid_value", "sequencenumber"]]),
        .init("msdyn_salesorderorigin", "msdyn_salesorderorigins", keys: [["msdyn_origincode"]]),
    ]

    init(_ logicalName: String, _ entitySet: String, keys: [[String]]) {
        self.logicalName = logicalName
        self.entitySet = entitySet
        self.primaryID = logicalName + "id"
        self.alternateKeys = keys
    }
}

/// A key predicate read from a URL: the primary key, or named key values.
enum KeyPredicate: Equatable {
    case id(UUID)
    case values([String: ODataLiteral])

    /// Parses what stands between the parentheses of `set(...)` (percent-decoded first).
    static func parse(_ text: String) -> KeyPredicate? {
        let decoded = text.removingPercentEncoding ?? text
        if let id = UUID(uuidString: decoded) { return .id(id) }
        var values: [String: ODataLiteral] = [:]
        var rest = Substring(decoded)
        while !rest.isEmpty {
            guard let equals = rest.firstIndex(of: "=") else { return nil }
            let name = String(rest[..<equals])
            rest = rest[rest.index(after: equals)...]
            let literal: ODataLiteral
            if rest.first == "'" {
                // A string: quotes inside are doubled.
                var value = ""
                var index = rest.index(after: rest.startIndex)
                var closed = false
                while index < rest.endIndex {
                    if rest[index] == "'" {
                        let next = rest.index(after: index)
                        if next < rest.endIndex && rest[next] == "'" {
                            value.append("'")
                            index = rest.index(after: next)
                            continue
                        }
                        closed = true
                        rest = rest[next...]
                        break
                    }
                    value.append(rest[index])
                    index = rest.index(after: index)
                }
                guard closed else { return nil }
                literal = .string(value)
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                let token = String(rest[..<end])
                rest = rest[end...]
                if let id = UUID(uuidString: token) {
                    literal = .guid(id)
                } else if let number = Int64(token) {
                    literal = .integer(number)
                } else if token == "true" || token == "false" {
                    literal = .boolean(token == "true")
                } else if Double(token) != nil {
                    literal = .decimal(token)
                } else {
                    return nil
                }
            }
            values[name] = literal
            if rest.first == "," { rest = rest.dropFirst() } else if !rest.isEmpty { return nil }
        }
        return values.isEmpty ? nil : .values(values)
    }
}

extension ODataLiteral {
    /// The JSON value a column holds for this literal.
    var json: JSONValue {
        switch self {
        case .string(let text): .string(text)
        case .integer(let number): .number(String(number))
        case .decimal(let text): .number(text)
        case .guid(let id): .string(id.uuidString.lowercased())
        case .boolean(let flag): .bool(flag)
        }
    }
}
