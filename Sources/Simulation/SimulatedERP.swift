import Kafka
import ProspectToCash
import Topology

/// The ERP of the demo: it owns products, prices and fulfilment. It prices every order and quote
/// line that arrives (price list, the line discount as the split rule sent it, tax) and the
/// document totals (freight, tax, discount), takes orders through confirmation, picking list,
/// packing slip and invoice, posts invoices, and creates orders of its own (`F…` numbers).
public final class SimulatedERP {
    public let connector: Connector
    public let company: String
    /// Sales price by product number.
    public private(set) var priceList: [String: DecimalNumber] = [:]
    /// Price of a write-in line's sales category.
    public let categoryPrice = DecimalNumber(mantissa: 12_000, scale: 2)
    static let taxRate = DecimalNumber(mantissa: 825, scale: 4)
    static let freight = DecimalNumber(mantissa: 1_500, scale: 2)
    /// How long an order rests between two fulfilment steps, in milliseconds.
    public var stepDelay: Int64 = 150

    /// Orders on their way to invoiced: document key → fulfilment stage and last change.
    private var fulfilment: [String: (stage: Stage, touched: Int64)] = [:]
    private var invoiceSequence = 0
    private var orderSequence = 0
    public private(set) var invoicesPosted = 0
    public private(set) var freeTextInvoices: [String] = []

    enum Stage: Int {
        case open, confirmed, picked, delivered, invoiced
    }

    let generation: MapGeneration

    public init(connector: Connector, company: String, generation: MapGeneration = .classic) {
        self.generation = generation
        self.connector = connector
        self.company = company
    }

    // MARK: - Master data

    /// Publishes `count` released products with their prices, two order origins, and `customers`
    /// customers (with a contact person each) created in the ERP.
    public func publishMasterData(products count: Int, customers: Int, random: inout SplitMix) throws(KafkaError) {
        for index in 1...count {
            let number = "D" + pad(index, 4)
            let price = DecimalNumber(mantissa: Int128(random.next(in: 500...50_000)), scale: 2)
            priceList[number] = price
            try connector.change(
                "ReleasedDistinctProducts", key: "\(company)/\(number)", company: company,
                fields: [
                    "PRODUCTNUMBER": .string(number), "ITEMNUMBER": .string(number),
                    "PRODUCTNAME": .string("Product \(number)"),
                    "PRODUCTDESCRIPTION": .string("Catalogue product \(number)"), "CURRENCYCODE": .string("USD"),
                    "SALESUNITSYMBOL": .string("ea"), "SALESPRICE": .number(price.description),
                    "UNITCOST": .number(price.divided(by: DecimalNumber(2), roundingTo: 2)!.description),
                    "PRODUCTTYPE": .string("item"), "ISSTOCKEDPRODUCT": .string("yes"),
                    "dataAreaId": .string(company),
                ])
        }
        for (code, description) in [("WEB", "Web shop"), ("PHONE", "Telephone sales")] {
            try connector.change(
                "SalesOrderOrigin", key: "\(company)/\(code)", company: company,
                fields: [
                    "ORIGINCODE": .string(code), "ORIGINDESCRIPTION": .string(description),
                    "dataAreaId": .string(company),
                ])
        }
        for index in 1...max(1, customers) {
            let account = "US-E" + pad(index, 3)
            let place = DemoCustomers.place(index)
            try connector.change(
                "CustomersV3", key: "\(company)/\(account)", company: company,
                fields: [
                    "CUSTOMERACCOUNT": .string(account), "PARTYTYPE": .string("Organization"),
                    "ORGANIZATIONNAME": .string(DemoCustomers.name(index, side: .erp)),
                    "DELIVERYADDRESSSTREET": .string(place.street), "DELIVERYADDRESSCITY": .string(place.city),
                    "DELIVERYADDRESSSTATE": .string(place.state), "DELIVERYADDRESSZIPCODE": .string(place.zip),
                    "DELIVERYADDRESSCOUNTRYREGIONISOCODE": .string("US"),
                    "PRIMARYCONTACTEMAIL": .string("orders@\(account.lowercased()).example"),
                    "PRIMARYCONTACTPHONE": .string(place.phone), "LANGUAGEID": .string("en-us"),
                    "PARTYNUMBER": .string("P-E" + pad(index, 3)),
                    "SALESCURRENCYCODE": .string("USD"), "CREDITLIMIT": .number("25000"),
                    "CUSTOMERGROUPID": .string("30"), "PAYMENTTERMS": .string("Net30"),
                    "PARTYCOUNTRY": .string("USA"), "SALESMEMO": .string("Key account \(index)"),
                    "dataAreaId": .string(company),
                ])
            if generation == .party {
                // The customer came first; its party and addresses follow (the order party-gab.md
                // recommends), and the CRM takes the customer before its party exists.
                try publishParty(
                    index: index, number: "P-E" + pad(index, 3), name: DemoCustomers.name(index, side: .erp),
                    place: place, email: "orders@\(account.lowercased()).example")
            }
            let contact = "CP-E" + pad(index, 3)
            try connector.change(
                "ContactsV2", key: "\(company)/\(contact)", company: company,
                fields: [
                    "CONTACTPERSONID": .string(contact), "ASSOCIATEDPARTYNUMBER": .string("P-E" + pad(index, 3)),
                    "EMPLOYMENTPROFESSION": .string("Buyer"), "EMPLOYMENTDEPARTMENT": .string("Purchasing"),
                    "dataAreaId": .string(company),
                ])
        }
    }

    /// A customer's party, its delivery address (location, address, the party's use of it) and its
    /// e-mail address, as the party generation's entities.
    private func publishParty(
        index: Int, number: String, name: String, place: DemoCustomers.Place, email: String
    )
        throws(KafkaError)
    {
        let location = "L-E" + pad(index, 3)
        let records: [(String, String, JSONObject)] = [
            (
                "CDSParties", number,
                [
                    "PARTYNUMBER": .string(number), "PARTYTYPE": "organization", "ORGANIZATIONNAME": .string(name),
                    "NAMEALIAS": .string(String(name.prefix(12))), "LANGUAGEID": "en-us",
                ]
            ),
            ("CDSPostalAddressLocations", location, ["LOCATIONID": .string(location), "DESCRIPTION": "Delivery"]),
            (
                "CDSPostalAddressHistoryV2", location,
                [
                    "LOCATIONID": .string(location), "DESCRIPTION": "Delivery", "STREET": .string(place.street),
                    "CITY": .string(place.city), "STATE": .string(place.state), "ZIPCODE": .string(place.zip),
                    "COUNTRYREGIONID": "USA", "VALIDFROM": "2026-01-01T00:00:00Z",
                ]
            ),
            (
                "CDSPartyPostalAddressLocations", location,
                [
                    "LOCATIONID": .string(location), "PARTYNUMBER": .string(number), "PURPOSE": "Delivery",
                    "ISPRIMARY": "yes",
                ]
            ),
            (
                "PartyContactsV3", "EA-E" + pad(index, 3),
                [
                    "ELECTRONICADDRESSID": .string("EA-E" + pad(index, 3)), "PARTYNUMBER": .string(number),
                    "LOCATOR": .string(email), "TYPE": "email", "ISPRIMARY": "yes", "DESCRIPTION": "Orders",
                ]
            ),
        ]
        for (record, key, fields) in records {
            var fields = fields
            fields["dataAreaId"] = .string(company)
            try connector.change(record, key: "\(company)/\(key)", company: company, fields: fields)
        }
    }

    /// The ERP's own customer accounts.
    public var customerAccounts: [String] {
        (connector.records["CustomersV3"] ?? [:]).values.compactMap { $0["CUSTOMERACCOUNT"]?.stringValue }.sorted()
    }

    // MARK: - Reacting to what arrives

    /// Prices the documents that `applied` touched and notes orders for fulfilment.
    public func react(to applied: [Connector.Applied], now: Int64) throws(KafkaError) {
        // Quote C000002 and order C000002 are different documents.
        var touched: [(stream: SyncStream, document: String)] = []
        var seen = Set<String>()
        for change in applied where change.stream == .orders || change.stream == .quotes {
            if seen.insert("\(change.stream.rawValue) \(change.documentKey)").inserted {
                touched.append((change.stream, change.documentKey))
            }
        }
        for (stream, document) in touched {
            try price(document, stream: stream)
            if stream == .orders, fulfilment[document]?.stage != .invoiced {
                fulfilment[document] = (fulfilment[document]?.stage ?? .open, now)
            }
        }
    }

    /// Prices a document's lines and totals; publishes what changed.
    func price(_ document: String, stream: SyncStream) throws(KafkaError) {
        let isOrder = stream == .orders
        let headerName = isOrder ? "SalesOrderHeader" : "SalesQuotationHeader"
        let lineName = isOrder ? "SalesOrderLine" : "SalesQuotationLine"
        let quantityField = isOrder ? "ORDEREDSALESQUANTITY" : "REQUESTEDSALESQUANTITY"
        var totals = (amount: DecimalNumber(0), tax: DecimalNumber(0), discount: DecimalNumber(0))
        for (key, line) in connector.lines(lineName, of: document) {
            let quantity = line[quantityField]?.decimalNumber ?? DecimalNumber(0)
            let price =
                line["PRODUCTNUMBER"]?.stringValue.flatMap { priceList[$0] }
                ?? (line["SALESPRODUCTCATEGORYNAME"]?.stringValue != nil ? categoryPrice : DecimalNumber(0))
            let unitDiscount = line["LINEDISCOUNTAMOUNT"]?.decimalNumber ?? DecimalNumber(0)
            let charge = line["FIXEDPRICECHARGES"]?.decimalNumber ?? DecimalNumber(0)
            let discount = unitDiscount.multiplied(by: quantity)!.subtracting(charge)!
            let amount = quantity.multiplied(by: price)!.subtracting(discount)!
            let tax = amount.multiplied(by: Self.taxRate)!.divided(by: DecimalNumber(1), roundingTo: 2)!
            totals = (totals.amount.adding(amount)!, totals.tax.adding(tax)!, totals.discount.adding(discount)!)
            let priced: JSONObject = [
                "SALESPRICE": .number(price.description), "SALESPRICEQUANTITY": .number("1"),
                "LINEDISCOUNTAMOUNT": .number(unitDiscount.description),
                "FIXEDPRICECHARGES": .number(charge.description),
                "TOTALDISCOUNTAMOUNT": .number(discount.description), "LINEAMOUNT": .number(amount.description),
                "TOTALTAXAMOUNT": .number(tax.description), "CURRENCYCODE": .string("USD"),
            ]
            if Self.changes(priced, line) { try connector.change(lineName, key: key, company: company, fields: priced) }
        }
        guard let header = connector.record(headerName, document) else { return }
        var priced: JSONObject =
            isOrder
            ? [
                "ORDERTOTALAMOUNT": .number(totals.amount.adding(totals.tax)!.adding(Self.freight)!.description),
                "ORDERTOTALTAXAMOUNT": .number(totals.tax.description),
                "TOTALDISCOUNTAMOUNT": .number(totals.discount.description),
                "ORDERTOTALCHARGESAMOUNT": .number(Self.freight.description),
            ]
            : [
                "QUOTATIONTOTALAMOUNT": .number(totals.amount.adding(totals.tax)!.adding(Self.freight)!.description),
                "QUOTATIONTOTALTAXAMOUNT": .number(totals.tax.description),
                "TOTALDISCOUNTAMOUNT": .number(totals.discount.description),
                "QUOTATIONTOTALCHARGESAMOUNT": .number(Self.freight.description),
            ]
        if isOrder && header["SALESORDERSTATUS"] == nil {
            priced["SALESORDERSTATUS"] = .string("backorder")
            priced["DOCUMENTSTATUS"] = .string("none")
            priced["SALESORDERPROCESSINGSTATUS"] = .string("active")
        }
        if !isOrder && header["SALESQUOTATIONSTATUS"] == nil { priced["SALESQUOTATIONSTATUS"] = .string("created") }
        if Self.changes(priced, header) {
            try connector.change(headerName, key: document, company: company, fields: priced)
        }
    }

    /// Whether writing `fields` would change `record`.
    static func changes(_ fields: JSONObject, _ record: JSONObject) -> Bool {
        fields.fields.contains { field in
            guard let current = record[field.key] else { return true }
            if let a = field.value.decimalNumber, let b = current.decimalNumber { return !a.isEqual(to: b) }
            return current != field.value
        }
    }

    // MARK: - Fulfilment

    /// Moves each resting order one step: confirmed, picked, delivered (packing slip), invoiced.
    public func advanceFulfilment(now: Int64) throws(KafkaError) {
        for (document, progress) in fulfilment where progress.stage != .invoiced && now - progress.touched >= stepDelay
        {
            guard let header = connector.record("SalesOrderHeader", document),
                !connector.lines("SalesOrderLine", of: document).isEmpty
            else { continue }
            let next = Stage(rawValue: progress.stage.rawValue + 1)!
            var fields: JSONObject
            switch next {
            case .open: continue
            case .confirmed:
                fields = [
                    "SALESORDERSTATUS": "backorder", "DOCUMENTSTATUS": "confirmation",
                    "SALESORDERPROCESSINGSTATUS": "confirmed",
                    "CONFIRMEDSHIPPINGDATE": .string(day(now + 86_400_000 * 3)),
                ]
            case .picked:
                fields = [
                    "SALESORDERSTATUS": "backorder", "DOCUMENTSTATUS": "pickingList",
                    "SALESORDERPROCESSINGSTATUS": "picked",
                ]
            case .delivered:
                fields = [
                    "SALESORDERSTATUS": "delivered", "DOCUMENTSTATUS": "packingSlip",
                    "SALESORDERPROCESSINGSTATUS": "delivered",
                ]
            case .invoiced:
                try postInvoice(for: document, header: header, now: now)
                fields = [
                    "SALESORDERSTATUS": "invoiced", "DOCUMENTSTATUS": "invoice",
                    "SALESORDERPROCESSINGSTATUS": "invoiced",
                ]
            }
            try connector.change("SalesOrderHeader", key: document, company: company, fields: fields)
            fulfilment[document] = (next, now)
        }
        fulfilment = fulfilment.filter { $0.value.stage != .invoiced }
    }

    /// Orders still being fulfilled.
    public var ordersInFulfilment: Int { fulfilment.count }

    private func postInvoice(for document: String, header: JSONObject, now: Int64) throws(KafkaError) {
        invoiceSequence += 1
        let number = "IV" + pad(invoiceSequence, 6)
        let key = "\(company)/\(number)"
        let date = day(now)
        let order = header["SALESORDERNUMBER"] ?? .null
        var totals = (amount: DecimalNumber(0), tax: DecimalNumber(0), discount: DecimalNumber(0))
        var lines: [(String, JSONObject)] = []
        for (_, line) in connector.lines("SalesOrderLine", of: document) {
            let amount = line["LINEAMOUNT"]?.decimalNumber ?? DecimalNumber(0)
            let tax = line["TOTALTAXAMOUNT"]?.decimalNumber ?? DecimalNumber(0)
            let discount = line["TOTALDISCOUNTAMOUNT"]?.decimalNumber ?? DecimalNumber(0)
            totals = (totals.amount.adding(amount)!, totals.tax.adding(tax)!, totals.discount.adding(discount)!)
            let sequence = line["LINECREATIONSEQUENCENUMBER"] ?? .number("0")
            var fields: JSONObject = [
                "INVOICENUMBER": .string(number), "SALESORDERNUMBER": order, "LINECREATIONSEQUENCENUMBER": sequence,
                "INVOICEDATE": .string(date), "INVOICEDQUANTITY": line["ORDEREDSALESQUANTITY"] ?? .number("0"),
                "SALESPRICE": line["SALESPRICE"] ?? .number("0"), "LINEAMOUNT": .number(amount.description),
                "LINETOTALTAXAMOUNT": .number(tax.description),
                "LINETOTALDISCOUNTAMOUNT": .number(discount.description),
                "CURRENCYCODE": .string("USD"), "SALESUNITSYMBOL": line["SALESUNITSYMBOL"] ?? .string("ea"),
                "PRODUCTNAME": line["PRODUCTNAME"] ?? .null, "dataAreaId": .string(company),
            ]
            if let product = line["PRODUCTNUMBER"] { fields["PRODUCTNUMBER"] = product }
            if let category = line["SALESPRODUCTCATEGORYNAME"] { fields["SALESPRODUCTCATEGORYNAME"] = category }
            lines.append(("\(key)#\(sequence.keyText ?? "0")", fields))
        }
        try connector.change(
            "SalesInvoiceHeaderV2", key: key, company: company,
            fields: [
                "INVOICENUMBER": .string(number), "SALESORDERNUMBER": order,
                "INVOICECUSTOMERACCOUNTNUMBER": header["ORDERINGCUSTOMERACCOUNTNUMBER"] ?? .null,
                "CURRENCYCODE": .string("USD"), "INVOICEDATE": .string(date),
                "TOTALINVOICEAMOUNT": .number(totals.amount.adding(totals.tax)!.adding(Self.freight)!.description),
                "TOTALTAXAMOUNT": .number(totals.tax.description),
                "TOTALCHARGEAMOUNT": .number(Self.freight.description),
                "TOTALDISCOUNTAMOUNT": .number(totals.discount.description),
                "LEDGERVOUCHER": .string("SIV" + pad(invoiceSequence, 6)), "dataAreaId": .string(company),
            ])
        for (lineKey, fields) in lines {
            try connector.change("SalesInvoiceLineV2", key: lineKey, company: company, fields: fields)
        }
        invoicesPosted += 1
    }

    /// A free-text invoice (no sales order): the ERP posts it, p2c must not sync it.
    public func postFreeTextInvoice(customer: String, now: Int64) throws(KafkaError) {
        invoiceSequence += 1
        let number = "IV" + pad(invoiceSequence, 6)
        try connector.change(
            "SalesInvoiceHeaderV2", key: "\(company)/\(number)", company: company,
            fields: [
                "INVOICENUMBER": .string(number), "INVOICECUSTOMERACCOUNTNUMBER": .string(customer),
                "CURRENCYCODE": .string("USD"), "INVOICEDATE": .string(day(now)),
                "TOTALINVOICEAMOUNT": .number("99.00"), "dataAreaId": .string(company),
            ])
        freeTextInvoices.append("\(company)/\(number)")
    }

    // MARK: - Orders of the ERP's own

    /// Creates, prices and publishes an order entered in the ERP; returns its number.
    @discardableResult
    public func createOrder(
        customer: String, lines: [(product: String, quantity: Int)], now: Int64
    ) throws(KafkaError) -> String {
        orderSequence += 1
        let number = "F" + pad(orderSequence, 6)
        let document = "\(company)/\(number)"
        try connector.change(
            "SalesOrderHeader", key: document, company: company,
            fields: [
                "SALESORDERNUMBER": .string(number), "ORDERINGCUSTOMERACCOUNTNUMBER": .string(customer),
                "INVOICECUSTOMERACCOUNTNUMBER": .string(customer), "CURRENCYCODE": .string("USD"),
                "SALESORDERNAME": .string("Phone order \(number)"), "DELIVERYADDRESSCITY": .string("Seattle"),
                "DELIVERYADDRESSSTREET": .string("1 Main Street"), "DELIVERYADDRESSZIPCODE": .string("98101"),
                "DELIVERYADDRESSSTATEID": .string("WA"), "DELIVERYADDRESSCOUNTRYREGIONISOCODE": .string("us"),
                "SALESORDERORIGINCODE": .string("PHONE"), "dataAreaId": .string(company),
            ])
        for (index, line) in lines.enumerated() {
            try connector.change(
                "SalesOrderLine", key: "\(document)#\(index + 1)", company: company,
                fields: [
                    "SALESORDERNUMBER": .string(number), "LINECREATIONSEQUENCENUMBER": .number(String(index + 1)),
                    "PRODUCTNUMBER": .string(line.product), "PRODUCTNAME": .string("Product \(line.product)"),
                    "ORDEREDSALESQUANTITY": .number(String(line.quantity)), "SALESUNITSYMBOL": .string("ea"),
                    "SHIPPINGSITEID": .string("1"), "SHIPPINGWAREHOUSEID": .string("11"),
                    "dataAreaId": .string(company),
                ])
        }
        try price(document, stream: .orders)
        fulfilment[document] = (.open, now)
        return number
    }
}

/// The date of `milliseconds` at midnight UTC, as the ERP's date fields carry it.
func day(_ milliseconds: Int64) -> String { String(EventTime.format(milliseconds).prefix(10)) + "T00:00:00Z" }

func pad(_ value: Int, _ width: Int) -> String {
    let text = String(value)
    return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
}
