import Foundation
import OData
import ProspectToCash
import Topology

/// An entity set of the simulated F&O environment: its entity type, composite key (with
/// `dataAreaId`) and properties, spelled as an environment's `$metadata`
/// spells them (`CustomerAccount`), while the maps spell them upper case (`CUSTOMERACCOUNT`).
struct FinanceOperationsEntity: Sendable {
    let entitySet: String
    /// The entity type (`CustomerV3`): the name data events carry.
    let typeName: String
    let keys: [String]
    let properties: [CSDL.Property]
    /// For lines: the header entity set, whose key is this entity's key without the line's own
    /// last part (a line is written only under an existing header).
    var header: String?

    var type: CSDL.EntityType { CSDL.EntityType(name: typeName, keys: keys, properties: properties) }

    /// Keys by entity set, as one environment's `$metadata` declares them.
    static let documentedKeys: [String: [String]] = [
        "CustomersV3": ["dataAreaId", "CustomerAccount"],
        "ContactPersons": ["dataAreaId", "ContactPersonId"],
        "CDSReleasedDistinctProducts": ["dataAreaId", "ProductNumber"],
        "ReleasedProductsV2": ["dataAreaId", "ItemNumber"],
        "CDSSalesQuotationHeaders": ["dataAreaId", "SalesQuotationNumber"],
        "CDSSalesQuotationLines": ["dataAreaId", "SalesQuotationNumber", "LineCreationSequenceNumber"],
        "CDSSalesOrderHeaders": ["dataAreaId", "SalesOrderNumber"],
        "CDSSalesOrderLines": ["dataAreaId", "SalesOrderNumber", "LineCreationSequenceNumber"],
        "SalesInvoiceHeadersV2": ["dataAreaId", "InvoiceNumber", "InvoiceDate", "LedgerVoucher"],
        "SalesInvoiceV2Lines": [
            "dataAreaId", "InvoiceNumber", "InvoiceDate", "LedgerVoucher", "LineCreationSequenceNumber",
        ],
        "SalesOrderOriginCodes": ["dataAreaId", "OriginCode"],
    ]

    /// The P2C entity sets: every kind with a documented entity set, its properties those of the
    /// maps of its kinds.
    static let p2c: [FinanceOperationsEntity] = {
        let fields = RecordKind.erpFieldsByEntitySet
        var headers: [SyncStream: String] = [:]
        for kind in RecordKind.all where kind.role == .header {
            if let set = kind.erpEntitySet { headers[kind.stream] = set }
        }
        return documentedKeys.keys.sorted().map { set in
            let keys = documentedKeys[set]!
            var properties = keys.map { CSDL.Property($0, type(of: $0)) }
            for field in fields[set, default: []] {
                let name = pascalCase(field)
                if !properties.contains(where: { $0.name.uppercased() == field }) {
                    properties.append(CSDL.Property(name, type(of: name)))
                }
            }
            let kind = RecordKind.all.first { $0.erpEntitySet == set }!
            var typeName = String(set.dropLast(set.hasSuffix("ies") ? 0 : 1))
            if set.hasSuffix("V2") || set.hasSuffix("V3") {
                // CustomersV3 → CustomerV3, ReleasedProductsV2 → ReleasedProductV2.
                let version = set.suffix(2)
                typeName = String(set.dropLast(2).dropLast(1)) + version
            }
            return FinanceOperationsEntity(
                entitySet: set, typeName: typeName, keys: keys, properties: properties,
                header: kind.role == .line ? headers[kind.stream] : nil)
        }
    }()

    /// The EDM type of a property, by its name: amounts, quantities, prices and percentages are
    /// decimals, sequence numbers integers, dates dates; the rest strings (enums are written by
    /// their names, "Open Data Protocol (OData)").
    static func type(of name: String) -> String {
        let upper = name.uppercased()
        if upper.hasSuffix("SEQUENCENUMBER") { return "Edm.Int64" }
        if upper.hasSuffix("DATE") { return "Edm.Date" }
        for suffix in ["AMOUNT", "QUANTITY", "PRICE", "PERCENTAGE", "LIMIT", "COST", "LATITUDE", "LONGITUDE"]
        where upper.hasSuffix(suffix) {
            return "Edm.Decimal"
        }
        return "Edm.String"
    }

    /// `CUSTOMERACCOUNT` → `CustomerAccount`: the upper-case name split into the fewest words of
    /// `words`, each capitalized (acronyms kept upper case, `Id` as F&O writes it); a name that
    /// cannot be split keeps its first letter only upper case.
    static func pascalCase(_ field: String) -> String {
        let text = Array(field.lowercased())
        var best: [[String]?] = Array(repeating: nil, count: text.count + 1)
        best[0] = []
        for end in 1...max(1, text.count) where end <= text.count {
            for start in max(0, end - 20)..<end {
                guard let prefix = best[start], words.contains(String(text[start..<end])) else { continue }
                if best[end] == nil || best[end]!.count > prefix.count + 1 {
                    best[end] = prefix + [String(text[start..<end])]
                }
            }
        }
        guard let split = best[text.count], !split.isEmpty else {
            return field.prefix(1) + field.dropFirst().lowercased()
        }
        return split.map { acronyms.contains($0) ? $0.uppercased() : $0.prefix(1).uppercased() + $0.dropFirst() }
            .joined()
    }

    private static let acronyms: Set<String> = ["abc", "bom", "duns", "iso", "pos", "url", "vip"]

    private static let words: Set<String> = [
        "abc", "account", "activation", "activity", "address", "adjustment", "advice", "agency", "alias", "allow",
        "allowed", "alone", "alternative", "amount", "and", "anniversary", "apply", "approximate", "are", "as",
        "assistant", "associated", "at", "attibute", "attribute", "automatic", "automatically", "available", "base",
        "before", "best", "blocked", "bom", "box", "boxing", "brazilian", "building", "business", "calculated",
        "calculation", "cancellation", "card", "carrying", "catch", "categories", "category", "center", "chain",
        "character", "charge", "charges", "children", "city", "closing", "code", "collections", "color", "comment",
        "comments", "comparison", "complement", "compliment", "complimentary", "computer", "configuration",
        "confirm", "confirmation", "confirmed", "constant", "consumption", "contact", "contribution", "conversion",
        "cost", "country", "county", "coupons", "creation", "credit", "currency", "customer", "customers", "date",
        "day", "days", "decimal", "decision", "default", "delivery", "delvery", "density", "department", "depth",
        "description", "device", "dimension", "direct", "discount", "distance", "district", "due", "duns", "duty",
        "electronic", "eligible", "email", "employee", "employees", "employment", "enabled", "entry", "event",
        "exempt", "expected", "expiration", "expiry", "extension", "external", "facebook", "factor", "fax",
        "federal", "field", "finished", "first", "fixed", "flushing", "follow", "for", "formatted", "from", "full",
        "function", "gender", "generated", "government", "gross", "group", "has", "header", "height", "hierarchy",
        "hobbies", "hold", "id", "identification", "identity", "ignore", "in", "include", "including", "indicator",
        "information", "initials", "installment", "instant", "intercompany", "internet", "intrastat", "inventory",
        "invoice", "invoiced", "invoicing", "irs", "is", "iso", "issue", "item", "job", "key", "known", "labels",
        "language", "last", "latitude", "ledger", "level", "life", "limit", "line", "line1", "line2", "linkedin",
        "location", "locator", "logic", "longitude", "lost", "lot", "loyalty", "mail", "main", "making", "manager",
        "mandatory", "manual", "margin", "marital", "material", "maximum", "memo", "message", "method", "microsoft",
        "middle", "mileage", "minimum", "mobile", "mode", "model", "multi", "must", "name", "necessary", "negative",
        "net", "network", "notes", "notification", "number", "of", "office", "on", "one", "operating", "order",
        "ordered", "ordering", "organization", "origin", "outlook", "over", "owner", "packing", "party", "payment",
        "percentage", "period", "person", "personal", "personnel", "phantom", "phone", "phonetic", "phrase", "pick",
        "picking", "planned", "pos", "post", "postal", "potency", "precision", "price", "prices", "pricing",
        "primary", "principle", "printed", "printing", "private", "probability", "processing", "product",
        "production", "profession", "professional", "prohibited", "promising", "property", "purchase", "purpose",
        "quantity", "quotation", "quote", "rating", "ratio", "raw", "reason", "receipt", "receiving", "reference",
        "region", "register", "registration", "release", "report", "requested", "requesting", "requirements",
        "requisition", "responsible", "restricted", "role", "roles", "sales", "salutation", "scale", "schedule",
        "scheduling", "scrap", "search", "segment", "sell", "sensitivity", "sent", "sequence", "service", "shelf",
        "ship", "shipping", "site", "size", "specific", "spouse", "start", "state", "statistics", "status",
        "stocked", "stopped", "storage", "street", "style", "sub", "suffix", "sum", "symbol", "tare", "target",
        "tax", "taxation", "terms", "time", "title", "to", "total", "tracking", "transfer", "twitter", "type",
        "under", "unit", "up", "updated", "url", "usage", "valid", "value", "variable", "variant", "vendor",
        "version", "vip", "volume", "voucher", "warehouse", "weight", "width", "will", "with", "withholding", "won",
        "work", "workbench", "worker", "working", "yield", "zero", "zip", "zone",
    ]
}
