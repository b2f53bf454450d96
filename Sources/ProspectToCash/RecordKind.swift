import Topology

/// A kind of record p2c syncs: its name on each side, its stream, its map and its number field.
/// A class: the mapping reads it for every event, and a reference is copied with one retain.
public final class RecordKind: Sendable, Equatable {
    public let stream: SyncStream
    /// ERP data-entity name, as in `ce_type` (`SalesOrderLine`).
    public let erpName: String
    /// CRM table (singular logical name), as in `ce_type` (`salesorderdetail`).
    public let crmName: String
    /// The table map in `TableMap.builtIn`.
    public let mapName: String
    /// The ERP field holding the document or record number (the key after `<company>/`).
    public let erpKey: String
    /// The CRM column path holding the same number.
    public let crmKey: [String]
    public let role: Role
    /// The F&O OData entity set holding these records , nil when no public entity
    /// set is documented for them.
    public let erpEntitySet: String?

    init(
        stream: SyncStream, erpName: String, crmName: String, mapName: String, erpKey: String, crmKey: [String],
        role: Role, erpEntitySet: String?
    ) {
        self.stream = stream
        self.erpName = erpName
        self.crmName = crmName
        self.mapName = mapName
        self.erpKey = erpKey
        self.crmKey = crmKey
        self.role = role
        self.erpEntitySet = erpEntitySet
    }

    public static func == (lhs: RecordKind, rhs: RecordKind) -> Bool {
        lhs === rhs
            || (lhs.stream == rhs.stream && lhs.erpName == rhs.erpName && lhs.crmName == rhs.crmName
                && lhs.mapName == rhs.mapName && lhs.erpKey == rhs.erpKey && lhs.crmKey == rhs.crmKey
                && lhs.role == rhs.role && lhs.erpEntitySet == rhs.erpEntitySet)
    }

    public enum Role: Sendable, Equatable {
        case master, header, line
    }

    /// Every kind p2c syncs (the streams of the README, the "CDS" generation of order and quote maps).
    public static let all: [RecordKind] = [
        RecordKind(
            stream: .customers, erpName: "CustomersV3", crmName: "account", mapName: "Customers V3 -> accounts",
            erpKey: "CUSTOMERACCOUNT", crmKey: ["accountnumber"], role: .master, erpEntitySet: "CustomersV3"),
        RecordKind(
            stream: .customers, erpName: "CustomersV3", crmName: "contact", mapName: "Customers V3 -> contacts",
            erpKey: "CUSTOMERACCOUNT", crmKey: ["msdyn_contactpersonid"], role: .master, erpEntitySet: "CustomersV3"),
        RecordKind(
            stream: .contacts, erpName: "ContactsV2", crmName: "msdyn_contactforparty",
            mapName: "Contacts V2 -> msdyn_contactforparties", erpKey: "CONTACTPERSONID",
            crmKey: ["msdyn_contactforpartynumber"], role: .master, erpEntitySet: "ContactPersons"),
        RecordKind(
            stream: .products, erpName: "ReleasedDistinctProducts", crmName: "product",
            mapName: "CDS released distinct products -> products", erpKey: "PRODUCTNUMBER",
            crmKey: ["msdyn_productnumber"], role: .master, erpEntitySet: "CDSReleasedDistinctProducts"),
        RecordKind(
            stream: .products, erpName: "ReleasedProductsV2", crmName: "msdyn_sharedproductdetails",
            mapName: "Released products V2 -> msdyn_sharedproductdetails", erpKey: "PRODUCTNUMBER",
            crmKey: ["msdyn_globalproduct", "msdyn_productnumber"], role: .master, erpEntitySet: "ReleasedProductsV2"),
        RecordKind(
            stream: .products, erpName: "AllProducts", crmName: "msdyn_globalproduct",
            mapName: "All products -> msdyn_globalproducts", erpKey: "PRODUCTNUMBER", crmKey: ["msdyn_productnumber"],
            role: .master, erpEntitySet: nil),
        RecordKind(
            stream: .quotes, erpName: "SalesQuotationHeader", crmName: "quote",
            mapName: "CDS sales quotation header -> quotes", erpKey: "SALESQUOTATIONNUMBER",
            crmKey: ["msdyn_quotenumber"],
            role: .header, erpEntitySet: "CDSSalesQuotationHeaders"),
        RecordKind(
            stream: .quotes, erpName: "SalesQuotationLine", crmName: "quotedetail",
            mapName: "CDS sales quotation lines -> quotedetails", erpKey: "SALESQUOTATIONNUMBER",
            crmKey: ["quoteid", "msdyn_quotenumber"], role: .line, erpEntitySet: "CDSSalesQuotationLines"),
        RecordKind(
            stream: .orders, erpName: "SalesOrderHeader", crmName: "salesorder",
            mapName: "CDS sales order headers -> salesorders", erpKey: "SALESORDERNUMBER",
            crmKey: ["msdyn_salesordernumber"], role: .header, erpEntitySet: "CDSSalesOrderHeaders"),
        RecordKind(
            stream: .orders, erpName: "SalesOrderLine", crmName: "salesorderdetail",
            mapName: "CDS sales order lines -> salesorderdetails", erpKey: "SALESORDERNUMBER",
            crmKey: ["salesorderid", "msdyn_salesordernumber"], role: .line, erpEntitySet: "CDSSalesOrderLines"),
        RecordKind(
            stream: .invoices, erpName: "SalesInvoiceHeaderV2", crmName: "invoice",
            mapName: "Sales invoice headers V2 -> invoices", erpKey: "INVOICENUMBER", crmKey: ["msdyn_invoicenumber"],
            role: .header, erpEntitySet: "SalesInvoiceHeadersV2"),
        RecordKind(
            stream: .invoices, erpName: "SalesInvoiceLineV2", crmName: "invoicedetail",
            mapName: "Sales invoice lines V2 -> invoicedetails", erpKey: "INVOICENUMBER",
            crmKey: ["invoiceid", "msdyn_invoicenumber"], role: .line, erpEntitySet: "SalesInvoiceV2Lines"),
        RecordKind(
            stream: .origins, erpName: "SalesOrderOrigin", crmName: "msdyn_salesorderorigin",
            mapName: "Sales order origin codes -> msdyn_salesorderorigins", erpKey: "ORIGINCODE",
            crmKey: ["msdyn_origincode"], role: .master, erpEntitySet: "SalesOrderOriginCodes"),
        // The party generation's streams . No public OData entity set is
        // documented for them, so they sync through Kafka only, not through F&O apply or bootstrap.
        RecordKind(
            stream: .parties, erpName: "CDSParties", crmName: "msdyn_party", mapName: "CDS Parties -> msdyn_parties",
            erpKey: "PARTYNUMBER", crmKey: ["msdyn_partynumber"], role: .master, erpEntitySet: nil),
        // A location is the document of the postal addresses stream: its history (the address, date
        // effective) and the parties that use it follow it under the same key.
        RecordKind(
            stream: .postaladdresses, erpName: "CDSPostalAddressLocations", crmName: "msdyn_postaladdresscollection",
            mapName: "CDS postal address locations -> msdyn_postaladdresscollections", erpKey: "LOCATIONID",
            crmKey: ["msdyn_location"], role: .header, erpEntitySet: nil),
        RecordKind(
            stream: .postaladdresses, erpName: "CDSPostalAddressHistoryV2", crmName: "msdyn_postaladdress",
            mapName: "CDS postal address history V2 -> msdyn_postaladdresses", erpKey: "LOCATIONID",
            crmKey: ["msdyn_postaladdresscollectionid", "msdyn_location"], role: .line, erpEntitySet: nil),
        RecordKind(
            stream: .postaladdresses, erpName: "CDSPartyPostalAddressLocations", crmName: "msdyn_partypostaladdress",
            mapName: "CDS Party postal address locations -> msdyn_partypostaladdresses", erpKey: "LOCATIONID",
            crmKey: ["msdyn_postaladdresscollectionid", "msdyn_location"], role: .line, erpEntitySet: nil),
        RecordKind(
            stream: .electronicaddresses, erpName: "PartyContactsV3", crmName: "msdyn_partyelectronicaddress",
            mapName: "Party contacts V3 -> msdyn_partyelectronicaddresses", erpKey: "ELECTRONICADDRESSID",
            crmKey: ["msdyn_electronicaddressnumber"], role: .master, erpEntitySet: nil),
    ]

    /// The kinds a deployment of `generation` syncs: the party streams' only in `party`.
    public static func kinds(for generation: MapGeneration) -> [RecordKind] {
        generation == .party ? all : classicKinds
    }

    private static let classicKinds = all.filter { !$0.stream.isParty }

    /// Per F&O entity set: the ERP fields the maps of its kinds name (either generation), in map order.
    public static let erpFieldsByEntitySet: [String: [String]] = {
        var fields: [String: [String]] = [:]
        for kind in all {
            guard let set = kind.erpEntitySet, let map = TableMap.everyGeneration[kind.mapName] else { continue }
            for row in map.rows where row.erpField != "none" && !fields[set, default: []].contains(row.erpField) {
                fields[set, default: []].append(row.erpField)
            }
        }
        return fields
    }()

    /// The field that numbers a document's lines on `side`.
    public static func lineNumberField(on side: Side) -> String {
        side == .crm ? "sequencenumber" : "LINECREATIONSEQUENCENUMBER"
    }

    /// The name of this kind on `side`.
    public func name(on side: Side) -> String { side == .erp ? erpName : crmName }

    /// The kind named `name` on `side` (the first, where kinds share an ERP name).
    public static func named(_ name: String, on side: Side) -> RecordKind? {
        all.first { $0.name(on: side) == name }
    }

    /// Where the record number is in this kind's data on `side`.
    public func keyPath(on side: Side) -> [String] { side == .erp ? [erpKey] : crmKey }
}
