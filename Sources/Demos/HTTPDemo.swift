import Apply
import Capture
import Connectors
import Dataverse
import FinanceOperations
import Foundation
import Kafka
import Operations
import ProspectToCash
import Runtime
import Simulation
import Simulators
import Synchronization
import Topology

/// `p2c demo`: the whole product over the systems' own APIs. The simulated Sales and F&O,
/// capture and apply for both, the mapping workers; people work in the two systems through their
/// APIs (a clerk creates products and customers in F&O; sellers create accounts and orders in
/// Sales; the ERP prices each order it receives), and `p2c reconcile`'s comparison ends it.
public struct HTTPDemo: Sendable {
    var orders: Int
    var workers: Int
    /// Kill a capture and an apply member half-way through the sellers' orders.
    var chaos: Bool
    var generation: MapGeneration
    var timeout: Int
    var catalog: TopicCatalog
    var topicsDirectory: String

    static let company = "USMF"
    static let streams: [SyncStream] = [.customers, .products, .quotes, .orders, .invoices]

    public init(
        orders: Int, workers: Int, chaos: Bool, generation: MapGeneration, timeout: Int, catalog: TopicCatalog,
        topicsDirectory: String
    ) {
        self.orders = orders
        self.workers = workers
        self.chaos = chaos
        self.generation = generation
        self.timeout = timeout
        self.catalog = catalog
        self.topicsDirectory = topicsDirectory
    }

    public func execute(stopped: @escaping @Sendable () -> Bool) throws -> Int32 {
        let started = ContinuousClock.now
        let log = Log([("component", "demo")], minimumLevel: .error)
        let cluster = try EmbeddedCluster(brokers: 1)
        try cluster.createTopics(catalog)

        // The two systems, each with a person's identity, capture's and apply's.
        let seller = SimulatedClient(id: UUID(), secret: "seller")
        let clerk = SimulatedClient(id: UUID(), secret: "clerk")
        let captureIdentity = SimulatedClient(id: UUID(), secret: "capture")
        let applyIdentity = SimulatedClient(id: UUID(), secret: "apply")
        let eventsPort = LocalHTTP.freePort()
        let sales = try DataverseSimulator(clients: [seller, captureIdentity, applyIdentity])
        let fno = try FinanceOperationsSimulator(
            clients: [clerk, captureIdentity, applyIdentity],
            dataEvents: [
                "CustomersV3", "CDSReleasedDistinctProducts", "CDSSalesQuotationHeaders", "CDSSalesQuotationLines",
                "CDSSalesOrderHeaders", "CDSSalesOrderLines", "SalesInvoiceHeadersV2", "SalesInvoiceV2Lines",
            ]
            .map { .init(entity: $0, url: URL(string: "http://127.0.0.1:\(eventsPort)/")!, key: "demo") },
            defaultCompany: Self.company)
        defer {
            sales.stop()
            fno.stop()
        }
        let salesAs = { (user: SimulatedClient) in
            user.client(of: sales.baseURL, tenant: sales.tenantID, api: .dataverse, log: log)
        }
        let fnoAs = { (user: SimulatedClient) in
            user.client(of: fno.baseURL, tenant: fno.tenantID, api: .financeOperations, log: log)
        }
        print(
            "p2c demo: embedded broker at \(cluster.bootstrapServers); simulated Sales at \(sales.baseURL), F&O at \(fno.baseURL); \(orders) orders, \(workers) worker(s) per flow\(chaos ? ", chaos" : "")"
        )

        // The fleet, as processes: capture (Sales by change tracking, F&O by its data events) and
        // apply for each side, and the mapping workers.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "p2c-demo-http-\(ProcessInfo.processInfo.processIdentifier)")
        let fleet = try fleet(
            in: folder, bootstrap: cluster.bootstrapServers, sales: (sales.baseURL, sales.tenantID),
            fno: (fno.baseURL, fno.tenantID), eventsPort: eventsPort, capture: captureIdentity, apply: applyIdentity)
        defer {
            fleet.stopAll()
        }
        for side in Side.allCases {
            try fleet.start(.capture(side))
            try fleet.start(.apply(side))
        }
        for flow in Flow.allCases {
            for _ in 0..<workers { try fleet.start(flow) }
        }
        guard fleet.waitUntilReady(seconds: 60, stopped: stopped) else {
            print("p2c demo: the fleet did not become ready within 60 s; logs in \(folder.path)")
            return 1
        }
        print(
            "p2c demo: \(fleet.members.count) fleet members ready after \(Self.elapsed(since: started)) (capture and apply for each side, \(workers) worker(s) per flow)"
        )
        // What the apply members wrote and retried, kept per process (a killed member's last figures count).
        var seen: [Int32: (applied: Double, retried: Double)] = [:]
        func applyFigures() -> (crm: Int, erp: Int, retried: Int) {
            for member in fleet.members {
                guard case .apply = member.role, let applied = fleet.metric("p2c_apply_written_total", of: member)
                else { continue }
                seen[member.process.processIdentifier] = (
                    applied, fleet.metric("p2c_apply_retried_total", of: member) ?? 0
                )
            }
            var sides: [Side: Int] = [:]
            var retried = 0
            for member in fleet.all {
                guard case .apply(let side) = member.role, let figures = seen[member.process.processIdentifier] else {
                    continue
                }
                sides[side, default: 0] += Int(figures.applied)
                retried += Int(figures.retried)
            }
            return (sides[.crm] ?? 0, sides[.erp] ?? 0, retried)
        }

        let story = HTTPStory(
            sales: salesAs(seller), fno: fnoAs(clerk), orders: orders, company: Self.company)
        let deadline = started + .seconds(timeout)
        func progress(_ phase: String) {
            let counts = [
                "accounts \(sales.rows("accounts").count)", "products \(sales.rows("products").count)",
                "orders \(sales.rows("salesorders").count) | F&O customers \(fno.records("CustomersV3").count)",
                "orders \(fno.records("CDSSalesOrderHeaders").count)",
                "lines \(fno.records("CDSSalesOrderLines").count)",
            ]
            let figures = applyFigures()
            print(
                "[\(Self.elapsed(since: started))] \(phase) | Sales \(counts.joined(separator: ", ")) | applied crm \(figures.crm), erp \(figures.erp) | HTTP \(sales.requestCount + fno.requestCount) requests, 429s \(sales.throttledCount + fno.throttledCount), retried \(figures.retried)"
            )
        }
        func wait(_ phase: String, until done: () throws -> Bool) throws {
            var last = ContinuousClock.now
            while try !done() {
                // A member that ended on its own is a failure of the run; a new one takes its place.
                for event in try fleet.replaceExited() { print("p2c demo: \(event)") }
                guard ContinuousClock.now < deadline, !stopped() else {
                    throw UsageError("\(phase): not done within \(timeout) s")
                }
                if ContinuousClock.now - last >= .seconds(1) {
                    progress(phase)
                    last = .now
                }
                Thread.sleep(forTimeInterval: 0.1)
            }
            progress(phase)
        }

        try AsyncBridge.wait { try await story.masterData() }
        try wait("master data") {
            sales.rows("products").count == story.products.count
                && sales.rows("accounts").count >= story.erpCustomers.count
        }
        try AsyncBridge.wait { try await story.accounts() }
        // The sellers write while the fleet works; with --chaos, half-way through, a capture and an
        // apply member are killed (SIGKILL) and new ones started, as a Deployment would.
        let writing = Task { try await story.salesDocuments() }
        let written = Atomic<Bool>(false)
        Task {
            _ = try? await writing.value
            written.store(true, ordering: .releasing)
        }
        var chaosDone = !chaos
        try wait("orders to F&O") {
            if !chaosDone && sales.rows("salesorders").count >= orders / 2 {
                chaosDone = true
                for role in [Fleet.Role.capture(.crm), .apply(.erp)] {
                    let pid = try fleet.kill(role)
                    print("p2c demo: chaos: SIGKILL \(role) \(pid); starting a new one")
                    try fleet.start(role)
                }
            }
            guard written.load(ordering: .acquiring) else { return false }
            return fno.records("CDSSalesOrderHeaders").count == orders
                && fno.records("CDSSalesOrderLines").count == story.sellersLines
                && fno.records("CDSSalesQuotationHeaders").count == story.quoteCount
                && fno.records("CDSSalesQuotationLines").count == story.quoteLines
                && fno.records("CustomersV3").count == story.erpCustomers.count + story.accountNumbers.count
        }
        try AsyncBridge.wait { try await writing.value }
        // A seller enters an order under a number of neither sequence: p2c refuses it (number_sequence_clash,
        // to the dead-letter topic with its reason), and the seller deletes it, which is refused too.
        let dlqTopics = catalog.topics.filter { $0.role == .dlq || $0.role == .inboundDLQ }.map(\.name)
        func letters() -> [DeadLetters.Letter] {
            (try? DeadLetters(bootstrapServers: cluster.bootstrapServers, topics: dlqTopics).letters) ?? []
        }
        try AsyncBridge.wait { try await story.plantOrderOutOfSequence() }
        try wait("a refused order") { letters().count >= 1 }
        try AsyncBridge.wait { try await story.deleteOrderOutOfSequence() }
        try wait("its refused deletion") { letters().count >= 2 }

        // Half the prospects sign; half the quotes are won, each becoming an order.
        try AsyncBridge.wait {
            try await story.signProspects()
            try await story.winQuotes()
        }
        try wait("signed prospects and won quotes to F&O") {
            fno.records("CDSSalesOrderHeaders").count == story.orderCount
                && fno.records("CDSSalesOrderLines").count == story.lines
                && fno.records("CustomersV3").count
                    == story.erpCustomers.count + story.accountNumbers.count + story.signed.count
        }
        try AsyncBridge.wait { try await story.price() }
        try wait("prices back to Sales") {
            sales.rows("salesorders").filter { $0["totalamount"] != nil && $0["totalamount"] != .null }.count
                == story.orderCount
                && sales.rows("quotes").filter { $0["totalamount"] != nil && $0["totalamount"] != .null }.count
                    == story.quoteCount
        }
        try AsyncBridge.wait { try await story.fulfil() }
        try wait("shipped and invoiced") {
            sales.rows("salesorders").filter { $0["statecode"] == .number("4") }.count == story.orderCount
                && sales.rows("invoices").count == story.orderCount
                && sales.rows("invoicedetails").count == story.lines
        }
        // Quiet: nothing applied on either side for 2 s.
        var applied = applyFigures()
        var quietSince = ContinuousClock.now
        try wait("settling") {
            let now = applyFigures()
            if now.crm != applied.crm || now.erp != applied.erp {
                applied = now
                quietSince = .now
            }
            return ContinuousClock.now - quietSince >= .seconds(2)
        }

        // The reconciliation, through both APIs, as p2c reconcile does it, and the verdict.
        let clean = try verdict(
            readers: (salesAs(captureIdentity), fnoAs(captureIdentity)), letters: letters(), fleet: fleet,
            logs: folder, started: started
        ) {
            "  HTTP: Sales \(sales.requestCount) requests, F&O \(fno.requestCount); 429s \(sales.throttledCount + fno.throttledCount); retried \(applyFigures().retried)"
        }
        return clean ? 0 : 1
    }

    /// Both systems read through their APIs and compared through the maps, the dead letters
    /// against the two the story planted, the fleet's failures: printed, and whether all is well.
    /// The fleet is stopped first; `traffic` says what the simulators answered.
    func verdict(
        readers: (ServiceClient, ServiceClient), letters: [DeadLetters.Letter], fleet: Fleet, logs: URL,
        started: ContinuousClock.Instant, traffic: () -> String
    ) throws -> Bool {
        let mapper = try Mapper(
            configuration: JSONDecoder().decode(
                MappingConfiguration.self, from: Data(Scenario.mappingConfiguration(generation).utf8)))
        let kinds = RecordKind.kinds(for: generation).filter { Self.streams.contains($0.stream) }
        let (salesReader, fnoReader) = readers
        let generation = generation
        let (crmRecords, erpRecords) = try AsyncBridge.wait {
            async let crm = SystemRecords.read(
                DataverseAdapter(), client: salesReader, kinds: kinds, company: Self.company, generation: generation)
            async let erp = SystemRecords.read(
                FinanceOperationsAdapter(), client: fnoReader, kinds: kinds, company: Self.company,
                generation: generation)
            return try await (crm, erp)
        }
        let reconciliation = Reconciliation(crm: crmRecords, erp: erpRecords, mapper: mapper)
        print(
            "\n"
                + reconciliation.report(
                    streams: Set(Self.streams), show: 20, company: Self.company, started: started, verdict: false))
        let found = letters
        let planted = found.filter {
            $0.topic == "crm.orders.changes.dlq" && $0.code == MappingError.Code.numberSequenceClash.rawValue
        }
        print(
            "  dead letters: \(found.count) (the story planted 2: an order numbered in neither sequence, its deletion)")
        for letter in found {
            let expected = planted.contains { $0.id == letter.id }
            print("    \(letter.topic)  \(letter.code)  \(letter.id): \(expected ? "expected" : "NOT EXPECTED")")
        }
        print(traffic())
        fleet.stopAll()
        for failure in fleet.failures { print("  fleet: \(failure)") }
        print("  fleet logs: \(logs.path)")
        let clean = reconciliation.isClean && found.count == 2 && planted.count == 2 && fleet.failures.isEmpty
        print(
            clean
                ? "result: the systems agree, and every dead letter is a planted one"
                : "result: FAILED (\(reconciliation.mismatches.count) differences, \(found.count - planted.count) dead letters not planted, \(fleet.failures.count) fleet failures)"
        )
        return clean
    }

    /// The demo's fleet, its configuration and logs in `folder`: capture and apply for each side
    /// (capture and apply as their own identities, F&O's data events posted to `eventsPort`),
    /// connected to the simulators at `sales` and `fno`; started by the caller.
    func fleet(
        in folder: URL, bootstrap: String, sales: (url: URL, tenant: UUID), fno: (url: URL, tenant: UUID),
        eventsPort: Int, capture: SimulatedClient, apply: SimulatedClient
    ) throws -> Fleet {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let configuration = folder.appendingPathComponent("fleet.json")
        try Data(
            """
            {"sessionTimeoutMs": 6000, "kafka": {"fetch.wait.max.ms": "10"}, "company": "\(Self.company)",
             "pollIntervalMs": 500, "mapping": \(Scenario.mappingConfiguration(generation))}
            """.utf8
        ).write(to: configuration)
        let fleet = Fleet(
            bootstrap: bootstrap, configuration: configuration.path, topics: topicsDirectory,
            logs: folder, name: "demo")
        func connection(
            _ system: String, _ simulator: (url: URL, tenant: UUID), _ user: SimulatedClient
        ) -> [String:
            String]
        {
            [
                "P2C_\(system)_URL": simulator.url.absoluteString,
                "P2C_\(system)_TENANT_ID": simulator.tenant.uuidString.lowercased(),
                "P2C_\(system)_CLIENT_ID": user.id.uuidString.lowercased(), "P2C_\(system)_CLIENT_SECRET": user.secret,
                "P2C_\(system)_AUTHORITY": simulator.url.absoluteString,
                "P2C_\(system)_APPLY_CLIENT_IDS": apply.id.uuidString.lowercased(),
            ]
        }
        let streams = ["--streams", Self.streams.map(\.rawValue).joined(separator: ",")]
        fleet.settings = [
            Fleet.Role.capture(.crm): (streams, connection("DATAVERSE", sales, capture)),
            Fleet.Role.capture(.erp): (
                streams + ["--webhook-port", String(eventsPort)],
                connection("FNO", fno, capture).merging(["P2C_CAPTURE_WEBHOOK_KEY": "demo"]) { $1 }
            ),
            Fleet.Role.apply(.crm): (streams, connection("DATAVERSE", sales, apply)),
            Fleet.Role.apply(.erp): (streams, connection("FNO", fno, apply)),
        ]
        return fleet
    }

    static func elapsed(since start: ContinuousClock.Instant) -> String {
        String(format: "%.1f s", (ContinuousClock.now - start).seconds)
    }
}

/// The people of the story and what they do, through the systems' APIs.
struct HTTPStory: Sendable {
    let sales: ServiceClient
    let fno: ServiceClient
    let orders: Int
    let company: String

    let products = (1...6).map { "D" + String(format: "%04d", $0) }
    let erpCustomers = (1...3).map { "US-E" + String(format: "%03d", $0) }
    var accountNumbers: [String] { (1...max(3, orders / 4)).map { "CUS" + String(format: "%04d", $0) } }
    /// Prospects (relationship type 8, not synced); the first half of them sign later.
    var prospects: [String] { (1...max(2, orders / 20)).map { "PRO" + String(format: "%04d", $0) } }
    var signed: [String] { Array(prospects.prefix(prospects.count / 2)) }
    /// Every order: the sellers' and those made from won quotes.
    var orderCount: Int { orders + wonOrders.count }
    /// Order lines: of the sellers' own orders, and of every order.
    var sellersLines: Int { Self.orderLines(documents) }
    var lines: Int { Self.orderLines(documents + wonOrders) }

    static func orderLines(_ documents: [Document]) -> Int {
        documents.filter { $0.kind.set == DocumentKind.order.set }.reduce(0) { $0 + $1.products.count }
    }

    static func lineCount(_ order: Int) -> Int { 1 + order % 3 }

    /// The clerk: products and customers in F&O. And the reference rows the order lines' lookups
    /// name in Sales (the company defaults' site and warehouse), which dual-write's own site and
    /// warehouse maps, outside prospect-to-cash, would have brought.
    func masterData() async throws {
        try await expect(sales.send("POST", "msdyn_operationalsites", body: ["msdyn_siteid": "1"]), 204)
        try await expect(sales.send("POST", "msdyn_warehouses", body: ["msdyn_warehouseidentifier": "11"]), 204)
        for (index, product) in products.enumerated() {
            try await expect(
                fno.send(
                    "POST", "CDSReleasedDistinctProducts?cross-company=true",
                    body: [
                        "dataAreaId": .string(company), "ProductNumber": .string(product),
                        "ProductName": .string("Product \(product)"),
                        "SalesPrice": .number("\(Document.price(index))"),
                    ]), 201)
        }
        for (index, account) in erpCustomers.enumerated() {
            try await expect(
                fno.send(
                    "POST", "CustomersV3?cross-company=true",
                    body: [
                        "dataAreaId": .string(company), "CustomerAccount": .string(account),
                        "PartyType": "Organization", "OrganizationName": .string("ERP customer \(index + 1)"),
                        "LanguageId": "en-us",
                    ]), 201)
        }
    }

    /// The sellers' accounts in Sales: customers (relationship type 3) and prospects (8).
    func accounts() async throws {
        for (index, number) in (accountNumbers + prospects).enumerated() {
            try await expect(
                sales.send(
                    "PATCH", "accounts(accountnumber='\(number)')",
                    body: [
                        "name": .string("Account \(index + 1)"),
                        "customertypecode": .number(prospects.contains(number) ? "8" : "3"),
                        "address1_addresstypecode": .number("2"), "address1_city": "Redmond",
                    ]), 204)
        }
    }

    /// Half the prospects sign: they become customers, and reach the ERP.
    func signProspects() async throws {
        for number in signed {
            try await expect(
                sales.send("PATCH", "accounts(accountnumber='\(number)')", body: ["customertypecode": .number("3")]),
                204)
        }
    }

    var quoteCount: Int { max(2, orders / 5) }
    var quoteLines: Int { (1...quoteCount).reduce(0) { $0 + Self.lineCount($1 + 1) } }

    /// A quote or an order: where it lives in each system.
    struct DocumentKind: Sendable {
        /// Sales: the table, its number column, its id (the lines' header lookup), the lines' table.
        var set: String
        var number: String
        var id: String
        var lineSet: String
        /// Header columns besides the number and the customer.
        var columns: JSONObject
        /// F&O: the headers' and lines' entity sets, the number and total properties.
        var erpHeaders: String
        var erpLines: String
        var erpNumber: String
        var erpTotal: String

        static let quote = DocumentKind(
            set: "quotes", number: "msdyn_quotenumber", id: "quoteid", lineSet: "quotedetails",
            columns: ["msdyn_ordertype": .number("192350000"), "statecode": .number("0")],
            erpHeaders: "CDSSalesQuotationHeaders", erpLines: "CDSSalesQuotationLines",
            erpNumber: "SalesQuotationNumber", erpTotal: "QuotationTotalAmount")
        static let order = DocumentKind(
            set: "salesorders", number: "msdyn_salesordernumber", id: "salesorderid", lineSet: "salesorderdetails",
            columns: ["msdyn_ordertype": .number("192350000")], erpHeaders: "CDSSalesOrderHeaders",
            erpLines: "CDSSalesOrderLines", erpNumber: "SalesOrderNumber", erpTotal: "OrderTotalAmount")
    }

    /// One document of the story: its customer and its lines' products (line n: quantity 2n).
    struct Document: Sendable {
        var kind: DocumentKind
        var number: String
        var customer: String
        var products: [Int]
        /// An order made from a won quote: the quote's number.
        var quote: String?

        /// The ERP's price of product `index`.
        static func price(_ index: Int) -> Int { 10 + index * 5 }

        /// Line n: quantity 2n at its product's price.
        var total: Int {
            products.enumerated().reduce(0) { $0 + Self.price($1.element) * ($1.offset + 1) * 2 }
        }
    }

    /// Draft quotes (`C1…`) and orders (`C…`), each for an account or an ERP customer, with 1 to 3 lines.
    var documents: [Document] {
        let customers = accountNumbers + erpCustomers
        func document(_ kind: DocumentKind, _ number: String, _ index: Int, lines: Int) -> Document {
            Document(
                kind: kind, number: number, customer: customers[index % customers.count],
                products: (1...lines).map { (index + $0) % products.count }, quote: nil)
        }
        return (1...quoteCount).map {
            document(.quote, "C1" + String(format: "%05d", $0), $0, lines: Self.lineCount($0 + 1))
        }
            + (1...orders).map { document(.order, "C" + String(format: "%06d", $0), $0, lines: Self.lineCount($0)) }
    }

    /// Half the quotes are won, each becoming an order (`C…` after the sellers' own) with its lines.
    var wonOrders: [Document] {
        documents.filter { $0.kind.set == DocumentKind.quote.set }.prefix(quoteCount / 2).enumerated().map {
            Document(
                kind: .order, number: "C" + String(format: "%06d", orders + $0.offset + 1),
                customer: $0.element.customer,
                products: $0.element.products, quote: $0.element.number)
        }
    }

    /// The sellers' quotes and orders in Sales.
    func salesDocuments() async throws {
        for document in documents { try await write(document) }
    }

    /// The sellers win half the quotes (the quote leaves the draft state, so it stays as the ERP has
    /// it) and make an order of each.
    func winQuotes() async throws {
        for order in wonOrders {
            try await expect(
                sales.send(
                    "PATCH", "quotes(msdyn_quotenumber='\(order.quote!)')", body: ["statecode": .number("2")]), 204)
            try await write(order)
        }
    }

    /// A document in Sales: the header, then its lines under it.
    private func write(_ document: Document) async throws {
        let kind = document.kind
        var header = kind.columns
        if let quote = document.quote { header["msdyn_quotationnumber"] = .string(quote) }
        header["customerid_account@odata.bind"] = .string("/accounts(accountnumber='\(document.customer)')")
        try await expect(sales.send("PATCH", "\(kind.set)(\(kind.number)='\(document.number)')", body: header), 204)
        let written = try await sales.get("\(kind.set)(\(kind.number)='\(document.number)')?$select=\(kind.id)")
        guard let id = written[kind.id]?.stringValue else { throw UsageError("\(document.number) not found") }
        for (index, product) in document.products.enumerated() {
            try await expect(
                sales.send(
                    "PATCH", "\(kind.lineSet)(_\(kind.id)_value=\(id),sequencenumber=\(index + 1))",
                    body: [
                        "productid@odata.bind": .string("/products(msdyn_productnumber='\(products[product])')"),
                        "quantity": .number("\((index + 1) * 2)"),
                    ]), 204)
        }
    }

    /// An order whose number follows neither side's sequence (`X…`): the workers refuse it.
    func plantOrderOutOfSequence() async throws {
        try await expect(
            sales.send(
                "PATCH", "salesorders(msdyn_salesordernumber='X900001')",
                body: [
                    "msdyn_ordertype": .number("192350000"),
                    "customerid_account@odata.bind": .string("/accounts(accountnumber='\(accountNumbers[0])')"),
                ]), 204)
    }

    func deleteOrderOutOfSequence() async throws {
        try await expect(sales.send("DELETE", "salesorders(msdyn_salesordernumber='X900001')"), 204)
    }

    /// The ERP prices each quote and order it received: each line at its product's price, then the total.
    func price() async throws {
        for document in documents + wonOrders {
            let kind = document.kind
            let key = "dataAreaId='\(company)',\(kind.erpNumber)='\(document.number)'"
            for (index, product) in document.products.enumerated() {
                let price = Document.price(product)
                let amount = price * (index + 1) * 2
                try await expect(
                    fno.send(
                        "PATCH", "\(kind.erpLines)(\(key),LineCreationSequenceNumber=\(index + 1))?cross-company=true",
                        body: ["SalesPrice": .number("\(price)"), "LineAmount": .number("\(amount)")]), 204)
            }
            try await expect(
                fno.send(
                    "PATCH", "\(kind.erpHeaders)(\(key))?cross-company=true",
                    body: [kind.erpTotal: .number("\(document.total)")]), 204)
        }
    }

    /// The ERP confirms, ships and invoices each order: its processing status moves to confirmed,
    /// delivered, then invoiced, and the invoice (`I…`, the order's number) is posted with a line per order line.
    func fulfil() async throws {
        for document in documents + wonOrders where document.kind.set == DocumentKind.order.set {
            let key = "dataAreaId='\(company)',SalesOrderNumber='\(document.number)'"
            for status in ["confirmed", "delivered", "invoiced"] {
                try await expect(
                    fno.send(
                        "PATCH", "CDSSalesOrderHeaders(\(key))?cross-company=true",
                        body: ["SalesOrderProcessingStatus": .string(status)]), 204)
            }
            let invoice = "I" + document.number.dropFirst()
            let posted: JSONObject = [
                "dataAreaId": .string(company), "InvoiceNumber": .string(invoice),
                "InvoiceDate": .string(Self.invoiceDate),
                "LedgerVoucher": .string("V" + invoice),
            ]
            var header = posted
            header["SalesOrderNumber"] = .string(document.number)
            header["InvoiceCustomerAccountNumber"] = .string(document.customer)
            header["TotalInvoiceAmount"] = .number("\(document.total)")
            try await expect(fno.send("POST", "SalesInvoiceHeadersV2?cross-company=true", body: header), 201)
            for (index, product) in document.products.enumerated() {
                var line = posted
                line["LineCreationSequenceNumber"] = .number("\(index + 1)")
                line["ProductNumber"] = .string(products[product])
                line["InvoicedQuantity"] = .number("\((index + 1) * 2)")
                line["SalesPrice"] = .number("\(Document.price(product))")
                line["LineAmount"] = .number("\(Document.price(product) * (index + 1) * 2)")
                try await expect(fno.send("POST", "SalesInvoiceV2Lines?cross-company=true", body: line), 201)
            }
        }
    }

    static let invoiceDate = "2026-11-30"

    private func expect(_ answer: ServiceClient.Answer, _ status: Int) throws {
        guard answer.status == status else {
            throw UsageError("the story's write answered \(answer.status): \(answer.json?.jsonText ?? "")")
        }
    }
}
