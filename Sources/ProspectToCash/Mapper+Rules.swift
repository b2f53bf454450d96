import Foundation
import Topology

// MARK: - Business rules the field maps cannot express

extension Mapper {
    /// Picks the map for the record: ERP customers are organisations (CRM accounts) or persons (CRM contacts).
    func choosePlan(
        _ candidates: [MappingPlan], data: JSONObject, action: CloudEvent.Action
    ) throws(MappingError)
        -> MappingPlan
    {
        guard candidates.count > 1 else { return candidates[0] }
        guard let partyType = data["PARTYTYPE"] else {
            throw MappingError(.missingField, "PARTYTYPE is missing: cannot tell an organisation from a person")
        }
        guard case .string(let text) = partyType else {
            throw MappingError(.wrongFieldType, "PARTYTYPE must be a string, got a \(partyType.typeName)")
        }
        let crmName: String
        switch text.lowercased() {
        case "organization": crmName = "account"
        case "person": crmName = "contact"
        default:
            throw MappingError(
                .unknownEnumValue,
                "PARTYTYPE \(text) is neither Organization nor Person (intercompany parties are not synced)")
        }
        return candidates.first { $0.kind.crmName == crmName }!
    }

    /// The source and reversed source filters of the maps, and the prospect rule.
    func filterReason(_ kind: RecordKind, flow: Flow, data: JSONObject, action: CloudEvent.Action) -> String? {
        guard action == .upserted else { return nil }
        switch (flow, kind.crmName) {
        case (.crmToERP, "account"):
            if data["customertypecode"]?.lookupText == "3" || configuration.syncProspects { return nil }
            return "account is not a customer (customertypecode is not 3): prospects are not synced"
        case (.crmToERP, "contact"):
            guard case .bool(true)? = data["msdyn_sellable"] else { return "contact is not sellable (msdyn_sellable)" }
            return nil
        case (.crmToERP, "salesorder"), (.crmToERP, "quote"):
            if let orderType = data["msdyn_ordertype"], orderType.lookupText != "192350000" {
                return "\(kind.crmName) is not item-based (msdyn_ordertype is not 192350000)"
            }
            if kind.crmName == "quote", let state = data["statecode"], state.lookupText != "0" {
                return "quote is not a draft (statecode is not 0)"
            }
            return nil
        case (.erpToCRM, "invoice"):
            // The header map's source filter, `SalesOrderNumber != ""`.
            if (data["SALESORDERNUMBER"]?.stringValue ?? "").isEmpty {
                return "free-text invoice (no SALESORDERNUMBER)"
            }
            return nil
        case (.erpToCRM, "invoicedetail"):
            // The line map has no filter, and F&O's invoice lines need not carry the order number:
            // only a line that says it belongs to no order is held back. Another free-text line
            // waits for its header, which never comes (apply's reference_missing).
            if case .string(let order)? = data["SALESORDERNUMBER"], order.isEmpty {
                return "free-text invoice line (empty SALESORDERNUMBER)"
            }
            return nil
        default:
            return nil
        }
    }

    /// Order status, the line-discount split, site and warehouse defaults, write-in products.
    func applyRules(
        _ plan: MappingPlan, input: JSONObject, output: inout JSONObject, company: String
    )
        throws(MappingError)
    {
        let kind = plan.kind
        // The ERP's status and document status follow its own documents: only the
        // processing status goes to it, by its map row.
        if kind.stream == .orders && kind.role == .header && plan.flow == .erpToCRM {
            try OrderStatus.toCRM(input: input, output: &output)
        }
        guard kind.role == .line, kind.stream == .orders || kind.stream == .quotes else { return }
        let erpQuantity = kind.stream == .orders ? "ORDEREDSALESQUANTITY" : "REQUESTEDSALESQUANTITY"
        if plan.flow == .erpToCRM {
            try LineDiscount.toCRM(input: input, quantityField: erpQuantity, output: &output)
            return
        }
        try LineDiscount.toERP(input: input, output: &output)
        let defaults = configuration.companyDefaults[company]
        if !output.hasValue("PRODUCTNUMBER") {
            // A write-in product: the ERP line names a sales category instead of a product.
            guard let category = output["SALESPRODUCTCATEGORYNAME"]?.stringValue ?? defaults?.writeInCategory else {
                throw MappingError(
                    .writeInWithoutCategory,
                    "write-in product line without msdyn_salesproductcategory, and company \(company) has no writeInCategory"
                )
            }
            output["SALESPRODUCTCATEGORYNAME"] = .string(category)
            if let name = input["productdescription"], case .string = name {
                output["PRODUCTNAME"] = name
                if output["LINEDESCRIPTION"] == nil { output["LINEDESCRIPTION"] = name }
            }
        }
        func fillIn(_ field: String, _ fallback: String?, _ label: String) throws(MappingError) {
            guard !output.hasString(field) else { return }
            guard let fallback else {
                throw MappingError(
                    .missingSiteOrWarehouse, "the line has no \(field) and company \(company) has no default \(label)")
            }
            output[field] = .string(fallback)
        }
        try fillIn("SHIPPINGSITEID", defaults?.site, "site")
        try fillIn("SHIPPINGWAREHOUSEID", defaults?.warehouse, "warehouse")
    }

    /// A synced invoice sets its order to Invoiced in the CRM (P2C: "Sales order status ... Invoiced").
    func invoicedOrder(
        _ kind: RecordKind, input: JSONObject, company: String
    ) throws(MappingError)
        -> (subject: String, data: JSONObject)?
    {
        guard kind.crmName == "invoice", case .string(let order)? = input["SALESORDERNUMBER"], !order.isEmpty else {
            return nil
        }
        let data = JSONObject([
            .init("msdyn_salesordernumber", .string(order)),
            .init("msdyn_processingstatus", .number(OrderStatus.invoiced.crmValue)),
            .init("statecode", .number(OrderStatus.SalesState.invoiced.rawValue)),
        ])
        return (String(company, "/", order), data)
    }
}

/// Sales order processing status ↔ ERP status and document status (the "CDS" maps' table).
enum OrderStatus: String, CaseIterable {
    case active, confirmed, picked, partiallyDelivered, partiallyInvoiced, delivered, invoiced, canceled

    /// `msdyn_processingstatus` option value.
    var crmValue: String {
        switch self {
        case .active: "192350000"
        case .confirmed: "192350001"
        case .picked: "192350002"
        case .partiallyDelivered: "192350003"
        case .delivered: "192350004"
        case .invoiced: "192350005"
        case .partiallyInvoiced: "192350006"
        case .canceled: "192350007"
        }
    }

    /// (`SALESORDERSTATUS`, `DOCUMENTSTATUS`) in the ERP.
    var erpStatus: (status: String, document: String?) {
        switch self {
        case .active: ("backorder", "none")
        case .confirmed: ("backorder", "confirmation")
        case .picked: ("backorder", "pickingList")
        case .partiallyDelivered: ("backorder", "packingSlip")
        case .partiallyInvoiced: ("backorder", "invoice")
        case .delivered: ("delivered", "packingSlip")
        case .invoiced: ("invoiced", "invoice")
        case .canceled: ("canceled", nil)
        }
    }

    /// The CRM order's state (`statecode`): Active, Fulfilled, Invoiced or Canceled.
    var salesState: SalesState {
        switch self {
        case .delivered: .fulfilled
        case .invoiced: .invoiced
        case .canceled: .canceled
        default: .active
        }
    }

    enum SalesState: String {
        case active = "0", canceled = "2", fulfilled = "3", invoiced = "4"
    }

    init?(erpStatus status: String, document: String?) {
        let status = status.lowercased()
        let document = document?.lowercased() ?? "none"
        if status == "canceled" || status == "cancelled" {
            self = .canceled
            return
        }
        // The older table puts Delivered + Invoice at Partially invoiced too.
        if status == "delivered" && document == "invoice" {
            self = .partiallyInvoiced
            return
        }
        guard
            let match = Self.allCases.first(where: {
                $0.erpStatus.status == status && ($0.erpStatus.document?.lowercased() ?? "none") == document
            })
        else { return nil }
        self = match
    }

    /// ERP → CRM: processing status (from the ERP's own, or its status and document status) and state.
    static func toCRM(input: JSONObject, output: inout JSONObject) throws(MappingError) {
        var status: OrderStatus?
        if let processing = output["msdyn_processingstatus"]?.lookupText {
            status = allCases.first { $0.crmValue == processing }
        } else if let salesStatus = input["SALESORDERSTATUS"] {
            guard case .string(let text) = salesStatus else {
                throw MappingError(.wrongFieldType, "SALESORDERSTATUS must be a string, got a \(salesStatus.typeName)")
            }
            let document = input["DOCUMENTSTATUS"]?.stringValue
            guard let derived = OrderStatus(erpStatus: text, document: document) else {
                throw MappingError(
                    .unknownEnumValue,
                    "SALESORDERSTATUS \(text) with DOCUMENTSTATUS \(document ?? "none") has no processing status")
            }
            status = derived
            output["msdyn_processingstatus"] = .number(derived.crmValue)
        }
        if let status { output["statecode"] = .number(status.salesState.rawValue) }
    }
}

/// The line discount: one amount per line in the CRM, a per-unit amount in the ERP, with the
/// rounding remainder in the line's sales charge so that round trips are exact.
public enum LineDiscount {
    /// CRM → ERP: (unit discount, charge) for a line discount over `quantity`:
    /// unit = round(discount / quantity, 2), charge = unit × quantity − discount; nil when the
    /// quantity is zero or the numbers overflow.
    public static func split(
        discount: DecimalNumber, quantity: DecimalNumber
    ) -> (unit: DecimalNumber, charge: DecimalNumber)? {
        guard let unit = discount.divided(by: quantity, roundingTo: 2),
            let charge = unit.multiplied(by: quantity)?.subtracting(discount)
        else { return nil }
        return (unit, charge)
    }

    /// ERP → CRM: the line discount back from the unit discount and charge. A charge larger than
    /// any rounding remainder (half a cent per unit) is a real charge and is not taken off.
    public static func join(unit: DecimalNumber, quantity: DecimalNumber, charge: DecimalNumber) -> DecimalNumber? {
        guard let gross = unit.multiplied(by: quantity),
            let limit = quantity.magnitude.multiplied(by: DecimalNumber(mantissa: 5, scale: 3))
        else { return nil }
        return charge.magnitude <= limit ? gross.subtracting(charge) : gross
    }

    static func toERP(input: JSONObject, output: inout JSONObject) throws(MappingError) {
        guard let discountValue = input["manualdiscountamount"], discountValue != .null else { return }
        let discount = try decimal(discountValue, "manualdiscountamount")
        guard let quantityValue = input["quantity"] else {
            throw MappingError(.missingField, "manualdiscountamount needs the line's quantity")
        }
        let quantity = try decimal(quantityValue, "quantity")
        if quantity.isZero {
            guard discount.isZero else {
                throw MappingError(
                    .invalidQuantity, "a line discount of \(discount) on quantity 0 cannot be split per unit")
            }
            output["LINEDISCOUNTAMOUNT"] = .number("0")
            output["FIXEDPRICECHARGES"] = .number("0")
            return
        }
        guard let (unit, charge) = split(discount: discount, quantity: quantity) else {
            throw MappingError(
                .badDecimal, "manualdiscountamount \(discount) over quantity \(quantity) is out of range")
        }
        output["LINEDISCOUNTAMOUNT"] = .number(unit.description)
        output["FIXEDPRICECHARGES"] = .number(charge.description)
    }

    static func toCRM(input: JSONObject, quantityField: String, output: inout JSONObject) throws(MappingError) {
        guard let unitValue = input["LINEDISCOUNTAMOUNT"], unitValue != .null, let quantityValue = input[quantityField]
        else { return }
        let unit = try decimal(unitValue, "LINEDISCOUNTAMOUNT")
        let quantity = try decimal(quantityValue, quantityField)
        var charge = DecimalNumber(0)
        if let chargeValue = input["FIXEDPRICECHARGES"], chargeValue != .null {
            charge = try decimal(chargeValue, "FIXEDPRICECHARGES")
        }
        guard let discount = join(unit: unit, quantity: quantity, charge: charge) else {
            throw MappingError(.badDecimal, "LINEDISCOUNTAMOUNT \(unit) × \(quantityField) \(quantity) is out of range")
        }
        output["manualdiscountamount"] = .number(discount.description)
    }

    static func decimal(_ value: JSONValue, _ name: String) throws(MappingError) -> DecimalNumber {
        guard let number = value.decimalNumber else {
            throw MappingError(.badDecimal, "\(name) must be a decimal number, got \(value.jsonText)")
        }
        return number
    }
}
