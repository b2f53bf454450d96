import Foundation
import OData
import ProspectToCash

/// A table of the simulated environment: its entity set, primary key, the alternate keys a deployment defines for
/// p2c ("Use an alternate key to reference a record": most tables have none unless customized; a key may use a
/// lookup column, named in URLs by its lookup property, `_<attribute>_value`) and its lookups (many-to-one
/// relationships: the attribute, the navigation property `@odata.bind` names, the referenced table), as its table
/// definitions describe them ("Query schema definitions").
struct DataverseTable: Sendable {
    let logicalName: String
    let entitySet: String
    let primaryID: String
    /// Key columns as rows and URLs name them: a lookup as `_<attribute>_value`.
    let alternateKeys: [[String]]
    var lookups: [Lookup] = []
    /// The columns a write may set (besides the keys, the primary id and lookups), when known: the
    /// P2C tables' from the maps; a referenced table takes any.
    var columns: Set<String>?

    struct Lookup: Sendable {
        var attribute: String
        var navigation: String
        var target: String
    }

    init(_ logicalName: String, _ entitySet: String, keys: [[String]]) {
        self.logicalName = logicalName
        self.entitySet = entitySet
        self.primaryID = logicalName + "id"
        self.alternateKeys = keys
    }

    /// The prospect-to-cash tables (the tables dual-write's prospect-to-cash maps name, and the contact persons and
    /// product details the maps write), keyed by the natural keys the change events carry; lines by their header
    /// and sequence number. Then every table their lookups reference, keyed by the column the maps name it by
    /// (`transactioncurrencyid.isocurrencycode`: transactioncurrency by isocurrencycode).
    static let p2c: [DataverseTable] = {
        var tables: [DataverseTable] = [
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
            // The party and global address book tables of the party generation, keyed by the natural
            // keys the party generation's maps write by (an address by its location and validity start, a
            // party's use of a location by both).
            .init("msdyn_party", "msdyn_parties", keys: [["msdyn_partynumber"]]),
            .init("msdyn_postaladdresscollection", "msdyn_postaladdresscollections", keys: [["msdyn_location"]]),
            .init(
                "msdyn_postaladdress", "msdyn_postaladdresses",
                keys: [["_msdyn_postaladdresscollectionid_value", "msdyn_validfrom"]]),
            .init(
                "msdyn_partypostaladdress", "msdyn_partypostaladdresses",
                keys: [["_msdyn_partyid_value", "_msdyn_postaladdresscollectionid_value"]]),
            .init(
                "msdyn_partyelectronicaddress", "msdyn_partyelectronicaddresses",
                keys: [["msdyn_electronicaddressnumber"]]),
        ]
        var references: [String: DataverseTable] = [:]
        for index in tables.indices {
            let table = tables[index]
            var seen = Set<String>()
            var columns = Set(table.alternateKeys.joined()).union(standardColumns)
            for map in TableMap.everyGeneration.values where map.crmTable == table.entitySet {
                for row in map.rows where !row.crmColumn.contains(".") && row.crmColumn != "none" {
                    columns.insert(row.crmColumn)
                }
                // `lookup.column`; a deeper path (`lookup.lookup.column`) is a column of the referenced row.
                for row in map.rows
                where row.crmColumn.contains(".")
                    && !(row.crmColumn.split(separator: ".").count > 2 && !row.crmColumn.contains(".Account("))
                {
                    let path = row.crmColumn.split(separator: ".").map(String.init)
                    let attribute = path[0]
                    guard seen.insert(attribute).inserted else { continue }
                    if row.crmColumn.contains(".Account(") {
                        // The polymorphic customer lookup: one navigation property per target.
                        tables[index].lookups += [
                            Lookup(attribute: attribute, navigation: attribute + "_account", target: "account"),
                            Lookup(attribute: attribute, navigation: attribute + "_contact", target: "contact"),
                        ]
                        continue
                    }
                    // A column of the maps may also be a line's header lookup in its key.
                    columns.insert(attribute)
                    let target =
                        referencedTable[attribute]
                        ?? (attribute.hasSuffix("id") ? String(attribute.dropLast(2)) : attribute)
                    tables[index].lookups.append(Lookup(attribute: attribute, navigation: attribute, target: target))
                    if !tables.contains(where: { $0.logicalName == target }) && references[target] == nil {
                        references[target] = DataverseTable(target, plural(target), keys: [[path[1]]])
                    }
                }
            }
            tables[index].columns = columns
        }
        return tables + references.values.sorted { $0.logicalName < $1.logicalName }
    }()

    /// The table a lookup attribute references, where its name does not say it (`<table>id`).
    private static let referencedTable: [String: String] = [
        "defaultuomid": "uom", "msdyn_associatedcontact": "msdyn_contactforparty",
        "msdyn_billingaccount": "account", "msdyn_contactperson": "contact", "primarycontactid": "contact",
        "msdyn_postaladdresscollectionid": "msdyn_postaladdresscollection",
        "msdyn_customerpaymentmethod": "msdyn_customerpaymentmethod",
        "msdyn_defaultshippingsite": "msdyn_operationalsite",
        "msdyn_defaultshippingwarehouse": "msdyn_warehouse", "msdyn_deliverymode": "msdyn_modeofdelivery",
        "msdyn_deliveryterms": "msdyn_termsofdelivery", "msdyn_generatedsalesordernumber": "salesorder",
        "msdyn_globalproduct": "msdyn_globalproduct", "msdyn_inventorysite": "msdyn_operationalsite",
        "msdyn_inventorywarehouse": "msdyn_warehouse", "msdyn_operatingunit": "msdyn_operatingunit",
        "msdyn_paymentday": "msdyn_paymentday", "msdyn_paymentschedule": "msdyn_paymentschedule",
        "msdyn_paymentterm": "msdyn_paymentterm", "msdyn_paymentterms": "msdyn_paymentterm",
        "msdyn_pricecustomergroup": "msdyn_pricecustomergroup", "msdyn_primarycontact": "msdyn_contactforparty",
        "msdyn_salesorderorigin": "msdyn_salesorderorigin", "msdyn_salesproductcategory": "msdyn_productcategory",
        "msdyn_salestaxgroup": "msdyn_taxgroup", "msdyn_shippingsite": "msdyn_operationalsite",
        "msdyn_shippingwarehouse": "msdyn_warehouse", "msdyn_vendor": "msdyn_vendor",
        "msdyn_alternativeitemnumber": "msdyn_sharedproductdetails", "msdyn_vendorid": "msdyn_vendor",
        "msdyn_productdimensiongroupid": "msdyn_productdimensiongroup",
        "msdyn_storagedimensiongroup": "msdyn_storagedimensiongroup",
        "msdyn_trackingdimensiongroup": "msdyn_trackingdimensiongroup", "msdyn_productcolor": "msdyn_productcolor",
        "msdyn_productconfiguration": "msdyn_productconfiguration", "msdyn_productsize": "msdyn_productsize",
        "msdyn_productstyle": "msdyn_productstyle", "msdyn_bomunitsymbol": "uom", "msdyn_catchweightunitsymbol": "uom",
        "msdyn_comparisonpricebaseunitsymbol": "uom", "msdyn_inventoryunitsymbol": "uom",
        "msdyn_purchaseunitsymbol": "uom", "msdyn_salesunitsymbol": "uom",
    ]

    /// Columns every P2C table here has besides what the maps write (names, state, contact
    /// information and addresses, as the classic maps carry them on customers).
    private static let standardColumns: Set<String> = {
        var columns: Set<String> = [
            "name", "description", "statecode", "statuscode", "firstname", "lastname", "fullname", "emailaddress1",
            "emailaddress2", "telephone1", "telephone2", "fax", "websiteurl",
        ]
        for address in ["address1", "address2", "address3"] {
            for part in ["line1", "line2", "line3", "city", "stateorprovince", "postalcode", "country", "county"] {
                columns.insert("\(address)_\(part)")
            }
        }
        return columns
    }()

    /// The simulator's entity set names for the referenced tables (clients read the real ones
    /// from the table definitions, "Query schema definitions").
    private static func plural(_ name: String) -> String {
        if name.hasSuffix("y") && !"aeiou".contains(name.dropLast().last!) { return name.dropLast() + "ies" }
        if name.hasSuffix("s") { return name + "es" }
        return name + "s"
    }

    /// The lookup `navigation` sets, if the table has one.
    func lookup(navigation: String) -> Lookup? { lookups.first { $0.navigation == navigation } }
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
                } else if token.count >= 10, token.prefix(10).allSatisfy({ $0.isNumber || $0 == "-" }) {
                    literal = .date(token)
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
        case .date(let text): .string(text)
        case .guid(let id): .string(id.uuidString.lowercased())
        case .boolean(let flag): .bool(flag)
        }
    }
}
