import Kafka
import ProspectToCash
import Topology

/// The demo's prospect-to-cash story, run step by step against both simulated systems: master
/// data from the ERP, accounts (some prospects that sign later) from the CRM, quotes that are
/// priced, revised and won, orders from both sides that the ERP prices, fulfils and invoices, a
/// few free-text invoices, and a handful of deliberately bad events.
public final class Scenario {
    public struct Options: Sendable {
        public var orders: Int
        public var seed: UInt64
        /// Documents (quotes and orders) on their way at once.
        public var window: Int = 40
        public var company = "USMF"
        /// The generation of the maps: with `party`, customers' names, addresses and contact
        /// information are parties, postal and electronic addresses of their own.
        public var generation = MapGeneration.classic
        public init(orders: Int, seed: UInt64) {
            self.orders = orders
            self.seed = seed
        }
    }

    /// A deliberately bad event: where it must end up, and why.
    public struct BadEvent: Sendable {
        public var id: String
        public var deadLetterTopic: String
        public var code: MappingError.Code
        /// The record that must not exist on the other side.
        public var targetRecord: String
        public var key: String
    }

    public let crm: SimulatedCRM
    public let erp: SimulatedERP
    public let options: Options
    public private(set) var badEvents: [BadEvent] = []
    /// Sales orders the scenario created, by number, CRM and ERP.
    public private(set) var orderNumbers: [String] = []
    public private(set) var invoicedOrders = 0
    public private(set) var quotesWon = 0

    private var random: SplitMix
    private var plan: [Document] = []
    private var next = 0
    private var active: [Active] = []
    private var customers: [String] = []
    private var prospects: [String] = []
    private var converted = false
    private var injected = false
    private var freeTextDue: [Int] = []

    enum Document {
        case crmOrder, quote, erpOrder
    }

    enum Active {
        case quote(number: String, revisedAt: Int64?, totalBefore: DecimalNumber?)
        case order(document: String)
    }

    public init(crm: Connector, erp: Connector, options: Options) {
        self.options = options
        self.crm = SimulatedCRM(connector: crm, company: options.company, generation: options.generation)
        self.erp = SimulatedERP(connector: erp, company: options.company, generation: options.generation)
        random = SplitMix(seed: options.seed)
        let quotes = options.orders / 5
        let erpOrders = options.orders / 10
        plan =
            Array(repeating: .quote, count: quotes) + Array(repeating: .erpOrder, count: erpOrders)
            + Array(repeating: .crmOrder, count: options.orders - quotes - erpOrders)
        plan.shuffle(using: &random)
        let freeText = max(1, options.orders / 50)
        freeTextDue = (0..<freeText).map { ($0 + 1) * options.orders / (freeText + 1) }
    }

    /// Publishes master data and accounts.
    public func start() throws(KafkaError) {
        let customerCount = max(6, min(200, options.orders / 10))
        let prospectCount = max(2, customerCount / 3)
        try erp.publishMasterData(products: 24, customers: 3, random: &random)
        for index in 1...customerCount {
            let number = "CUS" + pad(index, 4)
            let prospect = index <= prospectCount
            try crm.createAccount(number, prospect: prospect)
            if prospect { prospects.append(number) } else { customers.append(number) }
        }
    }

    /// Whether every document is done: quotes won, every order invoiced in the CRM.
    public var isFinished: Bool { next == plan.count && active.isEmpty && erp.ordersInFulfilment == 0 }

    /// Documents on their way.
    public var inFlight: Int { active.count }
    public var documentsStarted: Int { next }
    public var documentsPlanned: Int { plan.count }

    /// What each document in flight waits for, one line each, for a run that stalls.
    public var inFlightDescription: [String] {
        active.map { item in
            switch item {
            case .order(let document):
                let crmState = crm.connector.record("salesorder", document)?["statecode"]?.keyText ?? "absent"
                let erpStatus =
                    erp.connector.record("SalesOrderHeader", document).map {
                        "\($0["SALESORDERSTATUS"]?.keyText ?? "no status")/\($0["DOCUMENTSTATUS"]?.keyText ?? "no document")"
                    } ?? "absent"
                return "order \(document): CRM statecode \(crmState), ERP \(erpStatus)"
            case .quote(let number, let revisedAt, _):
                let document = "\(options.company)/\(number)"
                let priced = crm.connector.record("quote", document)?["totalamount"] != nil
                let inERP = erp.connector.record("SalesQuotationHeader", document) != nil
                return
                    "quote \(document): \(revisedAt == nil ? "not revised" : "revised"), \(priced ? "priced" : "not priced") in the CRM, \(inERP ? "present" : "absent") in the ERP"
            }
        }
    }

    /// One turn of both systems: apply what arrived, react, and start new work.
    public func step(now: Int64) throws(KafkaError) {
        _ = try crm.connector.applyArrived()
        let erpApplied = try erp.connector.applyArrived()
        try erp.react(to: erpApplied, now: now)
        try erp.advanceFulfilment(now: now)
        try progress(now: now)
        while active.count < options.window && next < plan.count {
            try begin(plan[next], now: now)
            next += 1
            if !converted && next * 10 >= plan.count * 3 { try convertProspects() }
            if !injected && next * 2 >= plan.count { try injectBadEvents() }
            while let due = freeTextDue.first, next >= due {
                freeTextDue.removeFirst()
                try erp.postFreeTextInvoice(customer: erp.customerAccounts.first ?? "US-E001", now: now)
            }
        }
    }

    private func begin(_ document: Document, now: Int64) throws(KafkaError) {
        switch document {
        case .crmOrder:
            let number = try crm.createOrder(customer: pickCustomer(), lines: randomLines())
            orderNumbers.append(number)
            active.append(.order(document: "\(options.company)/\(number)"))
        case .quote:
            let number = try crm.createQuote(customer: pickCustomer(), lines: randomLines())
            active.append(.quote(number: number, revisedAt: nil, totalBefore: nil))
        case .erpOrder:
            let accounts = erp.customerAccounts
            let lines = (0..<random.next(in: 1...4)).map { _ in
                (product: "D" + pad(random.next(in: 1...24), 4), quantity: random.next(in: 1...20))
            }
            let number = try erp.createOrder(
                customer: accounts[random.next(in: 0...(accounts.count - 1))], lines: lines, now: now)
            orderNumbers.append(number)
            active.append(.order(document: "\(options.company)/\(number)"))
        }
    }

    /// Moves quotes along (revise once priced, win once the revision is priced) and retires invoiced orders.
    private func progress(now: Int64) throws(KafkaError) {
        var remaining: [Active] = []
        for item in active {
            switch item {
            case .order(let document):
                if crm.connector.record("salesorder", document)?["statecode"]?.keyText == "4" {
                    invoicedOrders += 1
                } else {
                    remaining.append(item)
                }
            case .quote(let number, let revisedAt, let totalBefore):
                let document = "\(options.company)/\(number)"
                let quote = crm.connector.record("quote", document)
                let total = quote?["totalamount"]?.decimalNumber
                let lines = crm.connector.lines("quotedetail", of: document)
                let priced = total != nil && lines.allSatisfy { $0.fields["extendedamount"] != nil }
                guard let revisedAt else {
                    if priced {
                        try crm.reviseQuote(number)
                        remaining.append(.quote(number: number, revisedAt: now, totalBefore: total))
                    } else {
                        remaining.append(item)
                    }
                    continue
                }
                let repriced = priced && total.map { !$0.isEqual(to: totalBefore ?? DecimalNumber(-1)) } == true
                if repriced || now - revisedAt > 5_000, let order = try crm.winQuote(number) {
                    quotesWon += 1
                    orderNumbers.append(order)
                    remaining.append(.order(document: "\(options.company)/\(order)"))
                } else {
                    remaining.append(item)
                }
            }
        }
        active = remaining
    }

    private func pickCustomer() -> String { customers[random.next(in: 0...(customers.count - 1))] }

    private func randomLines() -> [SimulatedCRM.Line] {
        (0..<random.next(in: 1...5)).map { _ in
            let quantity = random.next(in: 1...12)
            let writeIn = random.next(in: 1...100) <= 15
            return SimulatedCRM.Line(
                product: writeIn ? nil : "D" + pad(random.next(in: 1...24), 4),
                writeIn: writeIn
                    ? ["Installation service", "Extended warranty", "On-site training"][random.next(in: 0...2)] : nil,
                quantity: quantity,
                discountCents: random.next(in: 1...100) <= 30 ? random.next(in: 100...(quantity * 400)) : nil)
        }
    }

    private func convertProspects() throws(KafkaError) {
        converted = true
        let signing = prospects.prefix(prospects.count / 2)
        for number in signing { try crm.convertToCustomer(number) }
        customers += signing
    }

    /// Bad input a real connector could send: each must land in its dead-letter topic, and nowhere else.
    private func injectBadEvents() throws(KafkaError) {
        injected = true
        let company = options.company
        let crmOrders = Role.dlq.topicName(side: .crm, stream: .orders)
        // An order number that follows neither side's number sequence.
        var id = try crm.connector.publishRaw(
            stream: .orders, type: "salesorder.upserted", subject: "\(company)/X000042", company: company,
            data: [
                "msdyn_salesordernumber": "X000042", "customerid": .object(["accountnumber": .string(customers[0])]),
            ])
        badEvents.append(
            .init(
                id: id, deadLetterTopic: crmOrders, code: .numberSequenceClash, targetRecord: "SalesOrderHeader",
                key: "\(company)/X000042"))
        // A line whose promising method has no ERP counterpart.
        id = try crm.connector.publishRaw(
            stream: .orders, type: "salesorderdetail.upserted", subject: "\(company)/C900001", company: company,
            data: [
                "salesorderid": .object(["msdyn_salesordernumber": "C900001"]), "sequencenumber": .number("1"),
                "quantity": .number("1"), "productid": .object(["msdyn_productnumber": "D0001"]),
                "msdyn_salesorderpromisingmethod": .number("192350099"),
            ])
        badEvents.append(
            .init(
                id: id, deadLetterTopic: crmOrders, code: .unknownEnumValue, targetRecord: "SalesOrderLine",
                key: "\(company)/C900001#1"))
        // An account that belongs to no company.
        id = try crm.connector.publishRaw(
            stream: .customers, type: "account.upserted", subject: "CUS9999", company: nil,
            data: ["accountnumber": "CUS9999", "customertypecode": .number("3")])
        badEvents.append(
            .init(
                id: id, deadLetterTopic: Role.dlq.topicName(side: .crm, stream: .customers), code: .missingCompany,
                targetRecord: "CustomersV3", key: "CUS9999"))
        // An ERP order status the status table does not know.
        id = try erp.connector.publishRaw(
            stream: .orders, type: "SalesOrderHeader.upserted", subject: "\(company)/F900001", company: company,
            data: [
                "SALESORDERNUMBER": "F900001", "SALESORDERSTATUS": "teleported", "dataAreaId": .string(company),
            ])
        badEvents.append(
            .init(
                id: id, deadLetterTopic: Role.dlq.topicName(side: .erp, stream: .orders), code: .unknownEnumValue,
                targetRecord: "salesorder", key: "\(company)/F900001"))
    }

    /// The mapping settings both the workers and the reconciliation use.
    /// The workers' mapping configuration for the story.
    public static func mappingConfiguration(_ generation: MapGeneration) -> String {
        """
        {
          "generation": "\(generation.rawValue)",
          "numberSequences": {"crm": "^C\\\\d+$", "erp": "^F\\\\d+$"},
          "companies": ["USMF"],
          "companyDefaults": {"USMF": {"site": "1", "warehouse": "11", "writeInCategory": "Services"}}
        }
        """
    }
}
