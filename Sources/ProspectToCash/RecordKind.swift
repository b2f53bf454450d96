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

    init(
        stream: SyncStream, erpName: String, crmName: String, mapName: String, erpKey: String, crmKey: [String],
        role: Role
    ) {
        self.stream = stream
        self.erpName = erpName
        self.crmName = crmName
        self.mapName = mapName
        self.erpKey = erpKey
        self.crmKey = crmKey
        self.role = role
    }

    public static func == (lhs: RecordKind, rhs: RecordKind) -> Bool {
        lhs === rhs
            || (lhs.stream == rhs.stream && lhs.erpName == rhs.erpName && lhs.crmName == rhs.crmName
                && lhs.mapName == rhs.mapName && lhs.erpKey == rhs.erpKey && lhs.crmKey == rhs.crmKey
                && lhs.role == rhs.role)
    }

    public enum Role: Sendable, Equatable {
        case master, header, line
    }

    /// Every kind p2c syncs (DESIGN.md's stream table, the "CDS" generation of order and quote maps).
    public static let all: [RecordKind] = [
        RecordKind(
            stream: .customers, erpName: "CustomersV3", crmName: "account", mapName: "Customers V3 -> accounts",
            erpKey: "CUSTOMERACCOUNT", crmKey: ["accountnumber"], role: .master),
        RecordKind(
            stream: .customers, erpName: "CustomersV3", crmName: "contact", mapName: "Customers V3 -> contacts",
            erpKey: "CUSTOMERACCOUNT", crmKey: ["msdyn_contactpersonid"], role: .master),
        RecordKind(
            stream: .contacts, erpName: "ContactsV2", crmName: "msdyn_contactforparty",
            mapName: "Contacts V2 -> msdyn_contactforparties", erpKey: "CONTACTPERSONID",
            crmKey: ["msdyn_contactforpartynumber"], role: .master),
        RecordKind(
            stream: .products, erpName: "ReleasedDistinctProducts", crmName: "product",
            mapName: "CDS released distinct products -> products", erpKey: "PRODUCTNUMBER",
            crmKey: ["msdyn_productnumber"], role: .master),
        RecordKind(
            stream: .products, erpName: "ReleasedProductsV2", crmName: "msdyn_sharedproductdetails",
            mapName: "Released products V2 -> msdyn_sharedproductdetails", erpKey: "PRODUCTNUMBER",
            crmKey: ["msdyn_globalproduct", "msdyn_productnumber"], role: .master),
        RecordKind(
            stream: .products, erpName: "AllProducts", crmName: "msdyn_globalproduct",
            mapName: "All products -> msdyn_globalproducts", erpKey: "PRODUCTNUMBER", crmKey: ["msdyn_productnumber"],
            role: .master),
        RecordKind(
            stream: .quotes, erpName: "SalesQuotationHeader", crmName: "quote",
            mapName: "CDS sales quotation header -> quotes", erpKey: "SALESQUOTATIONNUMBER",
            crmKey: ["msdyn_quotenumber"],
            role: .header),
        RecordKind(
            stream: .quotes, erpName: "SalesQuotationLine", crmName: "quotedetail",
            mapName: "CDS sales quotation lines -> quotedetails", erpKey: "SALESQUOTATIONNUMBER",
            crmKey: ["quoteid", "msdyn_quotenumber"], role: .line),
        RecordKind(
            stream: .orders, erpName: "SalesOrderHeader", crmName: "salesorder",
            mapName: "CDS sales order headers -> salesorders", erpKey: "SALESORDERNUMBER",
            crmKey: ["msdyn_salesordernumber"], role: .header),
        RecordKind(
            stream: .orders, erpName: "SalesOrderLine", crmName: "salesorderdetail",
            mapName: "CDS sales order lines -> salesorderdetails", erpKey: "SALESORDERNUMBER",
            crmKey: ["salesorderid", "msdyn_salesordernumber"], role: .line),
        RecordKind(
            stream: .invoices, erpName: "SalesInvoiceHeaderV2", crmName: "invoice",
            mapName: "Sales invoice headers V2 -> invoices", erpKey: "INVOICENUMBER", crmKey: ["msdyn_invoicenumber"],
            role: .header),
        RecordKind(
            stream: .invoices, erpName: "SalesInvoiceLineV2", crmName: "invoicedetail",
            mapName: "Sales invoice lines V2 -> invoicedetails", erpKey: "INVOICENUMBER",
            crmKey: ["invoiceid", "msdyn_invoicenumber"], role: .line),
        RecordKind(
            stream: .origins, erpName: "SalesOrderOrigin", crmName: "msdyn_salesorderorigin",
            mapName: "Sales order origin codes -> msdyn_salesorderorigins", erpKey: "ORIGINCODE",
            crmKey: ["msdyn_origincode"], role: .master),
    ]

    /// The name of this kind on `side`.
    public func name(on side: Side) -> String { side == .erp ? erpName : crmName }
}
