import Kafka
import ProspectToCash
import Topology

/// The CRM of the demo: sellers create accounts (prospects first, customers later) with their
/// contact persons, quotes that are revised and won, and orders (some with write-in products and
/// line discounts); it sees prices, order statuses and invoices arrive from the ERP.
public final class SimulatedCRM {
    public let connector: Connector
    public let company: String
    private var quoteSequence = 0
    private var accountSequence = 0
    private var orderSequence = 0

    let generation: MapGeneration

    public init(connector: Connector, company: String, generation: MapGeneration = .classic) {
        self.generation = generation
        self.connector = connector
        self.company = company
    }

    /// One line as a seller enters it: a catalogue product, or a write-in description.
    public struct Line: Sendable {
        public var product: String?
        public var writeIn: String?
        public var quantity: Int
        /// The line's discount amount (`manualdiscountamount`), in cents.
        public var discountCents: Int?
    }

    /// Creates an account; a prospect (relationship type 8) is not synced until it becomes a customer.
    public func createAccount(_ number: String, prospect: Bool) throws(KafkaError) {
        accountSequence += 1
        let place = DemoCustomers.place(accountSequence + 7)
        try connector.change(
            "account", key: "\(company)/\(number)", company: company,
            fields: [
                "accountnumber": .string(number), "customertypecode": .number(prospect ? "8" : "3"),
                "name": .string(DemoCustomers.name(accountSequence, side: .crm)),
                "address1_line1": .string(place.street), "address1_city": .string(place.city),
                "address1_stateorprovince": .string(place.state), "address1_postalcode": .string(place.zip),
                // Address 1 is the delivery address (type 2, Ship To), as the classic maps write it.
                "address1_addresstypecode": .number("2"), "address1_country": .string("US"),
                "emailaddress1": .string("buyer@\(number.lowercased()).example"),
                "telephone1": .string(place.phone), "msdyn_partynumber": .string("P-" + number),
                "msdyn_partyid": .object(["msdyn_partynumber": .string("P-" + number)]),
                "creditlimit": .number("10000"), "description": .string("Account \(number)"),
                "transactioncurrencyid": .object(["isocurrencycode": "USD"]),
                "msdyn_customergroupid": .object(["msdyn_groupid": "10"]),
                "msdyn_paymentterm": .object(["msdyn_name": "Net30"]), "msdyn_partycountry": .string("USA"),
            ])
        if generation == .party {
            try publishParty(
                number: number, name: DemoCustomers.name(accountSequence, side: .crm), place: place,
                email: "buyer@\(number.lowercased()).example")
        }
        let contact = "CP-" + number
        try connector.change(
            "msdyn_contactforparty", key: "\(company)/\(contact)", company: company,
            fields: [
                "msdyn_contactforpartynumber": .string(contact),
                "msdyn_associatedpartyid": .object(["msdyn_partynumber": .string("P-" + number)]),
                "msdyn_employmentprofession": .string("Purchasing manager"),
                "msdyn_employmentdepartment": .string("Procurement"),
            ])
    }

    /// An account's party, its delivery address and its e-mail address, as the party and global
    /// address book tables.
    private func publishParty(
        number: String, name: String, place: DemoCustomers.Place, email: String
    )
        throws(KafkaError)
    {
        let party = "P-" + number
        let location = "L-" + number
        let records: [(String, String, JSONObject)] = [
            (
                "msdyn_party", party,
                [
                    "msdyn_partynumber": .string(party), "msdyn_partytype": .number("192350002"),
                    "msdyn_organizationname": .string(name), "msdyn_namealias": .string(String(name.prefix(12))),
                    "msdyn_language": .number("192350015"),
                ]
            ),
            (
                "msdyn_postaladdresscollection", location,
                ["msdyn_location": .string(location), "msdyn_description": "Delivery"]
            ),
            (
                "msdyn_postaladdress", location,
                [
                    "msdyn_postaladdresscollectionid": .object(["msdyn_location": .string(location)]),
                    "msdyn_name": "Delivery", "msdyn_street": .string(place.street), "msdyn_city": .string(place.city),
                    "msdyn_state": .string(place.state), "msdyn_zipcode": .string(place.zip),
                    "msdyn_countryregionid": "USA", "msdyn_validfrom": "2026-01-01T00:00:00Z",
                ]
            ),
            (
                "msdyn_partypostaladdress", location,
                [
                    "msdyn_postaladdresscollectionid": .object(["msdyn_location": .string(location)]),
                    "msdyn_partyid": .object(["msdyn_partynumber": .string(party)]),
                    "msdyn_postaladdresspurposenames": "Delivery", "msdyn_isprimary": .bool(true),
                ]
            ),
            (
                "msdyn_partyelectronicaddress", "EA-" + number,
                [
                    "msdyn_electronicaddressnumber": .string("EA-" + number),
                    "msdyn_partyid": .object(["msdyn_partynumber": .string(party)]), "msdyn_locator": .string(email),
                    "msdyn_type": .number("192350002"), "msdyn_isprimary": .bool(true), "msdyn_description": "Orders",
                ]
            ),
        ]
        for (record, key, fields) in records {
            try connector.change(record, key: "\(company)/\(key)", company: company, fields: fields)
        }
    }

    /// A prospect signs: its relationship type becomes Customer and it reaches the ERP.
    public func convertToCustomer(_ number: String) throws(KafkaError) {
        try connector.change(
            "account", key: "\(company)/\(number)", company: company, fields: ["customertypecode": .number("3")])
    }

    /// Creates a draft quote with its lines; returns its number.
    public func createQuote(customer: String, lines: [Line]) throws(KafkaError) -> String {
        quoteSequence += 1
        let number = "C" + pad(quoteSequence, 6)
        let document = "\(company)/\(number)"
        try connector.change(
            "quote", key: document, company: company,
            fields: header(customer: customer, name: "Quote \(number)").merging([
                "msdyn_quotenumber": .string(number), "statecode": .number("0"),
            ]))
        for (index, line) in lines.enumerated() {
            try connector.change(
                "quotedetail", key: "\(document)#\(index + 1)", company: company,
                fields: self.line(line, sequence: index + 1, parent: ("quoteid", "msdyn_quotenumber", number)))
        }
        return number
    }

    /// The customer asks for more of the first line and drops the last: the quote is revised.
    public func reviseQuote(_ number: String) throws(KafkaError) {
        let document = "\(company)/\(number)"
        let lines = connector.lines("quotedetail", of: document)
        guard let first = lines.first else { return }
        let quantity = (first.fields["quantity"]?.decimalNumber ?? DecimalNumber(1)).adding(DecimalNumber(2))!
        try connector.change(
            "quotedetail", key: first.key, company: company, fields: ["quantity": .number(quantity.description)])
        if lines.count > 1, let last = lines.last {
            try connector.delete(
                "quotedetail", key: last.key, company: company,
                keyFields: [
                    "quoteid": .object(["msdyn_quotenumber": .string(number)]),
                    "sequencenumber": last.fields["sequencenumber"] ?? .null,
                ])
        }
    }

    /// The quote is won (no longer a draft, so it stays as the ERP has it) and becomes an order.
    public func winQuote(_ number: String) throws(KafkaError) -> String? {
        let document = "\(company)/\(number)"
        guard let quote = connector.record("quote", document),
            let customer = quote.value(at: ["customerid", "accountnumber"])?.stringValue
        else { return nil }
        try connector.change("quote", key: document, company: company, fields: ["statecode": .number("2")])
        let lines = connector.lines("quotedetail", of: document).map { entry in
            Line(
                product: entry.fields.value(at: ["productid", "msdyn_productnumber"])?.stringValue,
                writeIn: entry.fields["productdescription"]?.stringValue,
                quantity: Int(entry.fields["quantity"]?.keyText ?? "1") ?? 1, discountCents: nil)
        }
        return try createOrder(customer: customer, lines: lines, quote: number)
    }

    /// Creates an order with its lines; returns its number.
    public func createOrder(customer: String, lines: [Line], quote: String? = nil) throws(KafkaError) -> String {
        orderSequence += 1
        let number = "C" + pad(orderSequence, 6)
        let document = "\(company)/\(number)"
        var fields = header(customer: customer, name: "Order \(number)").merging([
            "msdyn_salesordernumber": .string(number),
            "msdyn_salesorderorigin": .object(["msdyn_origincode": "WEB"]),
            "requestdeliveryby": .string("2026-12-01T00:00:00Z"),
        ])
        if let quote { fields["msdyn_quotationnumber"] = .string(quote) }
        try connector.change("salesorder", key: document, company: company, fields: fields)
        for (index, line) in lines.enumerated() {
            try connector.change(
                "salesorderdetail", key: "\(document)#\(index + 1)", company: company,
                fields: self.line(line, sequence: index + 1, parent: ("salesorderid", "msdyn_salesordernumber", number))
            )
        }
        return number
    }

    private func header(customer: String, name: String) -> JSONObject {
        [
            "customerid": .object(["accountnumber": .string(customer)]),
            "transactioncurrencyid": .object(["isocurrencycode": "USD"]), "name": .string(name),
            "shipto_line1": "123 Commerce Way", "shipto_city": "Redmond", "shipto_stateorprovince": "WA",
            "shipto_postalcode": "98052", "shipto_country": "united states", "msdyn_ordertype": .number("192350000"),
            "emailaddress": .string("buyer@\(customer.lowercased()).example"),
        ]
    }

    private func line(_ line: Line, sequence: Int, parent: (String, String, String)) -> JSONObject {
        var fields: JSONObject = [
            parent.0: .object([parent.1: .string(parent.2)]), "sequencenumber": .number(String(sequence)),
            "quantity": .number(String(line.quantity)), "uomid": .object(["msdyn_symbol": "ea"]),
        ]
        if let product = line.product {
            fields["productid"] = .object(["msdyn_productnumber": .string(product)])
            fields["description"] = .string("Product \(product)")
        } else if let writeIn = line.writeIn {
            fields["productdescription"] = .string(writeIn)
            fields["description"] = .string(writeIn)
        }
        if let cents = line.discountCents {
            fields["manualdiscountamount"] = .number(DecimalNumber(mantissa: Int128(cents), scale: 2).description)
        }
        return fields
    }
}

extension JSONObject {
    /// This object with `other`'s fields written over it.
    func merging(_ other: JSONObject) -> JSONObject {
        var result = self
        for field in other.fields { result[field.key] = field.value }
        return result
    }
}

/// A small, fast, seedable random generator (SplitMix64), so a `--seed` replays the same scenario.
public struct SplitMix: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func next(in range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
}
