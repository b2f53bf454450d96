import Connectors
import Foundation
import Kafka
import OData
import ProspectToCash
import Runtime
import TestSupport
import Testing

@Suite("p2c bootstrap, against the simulated F&O and Dataverse", .serialized, .timeLimit(.minutes(4)))
struct BootstrapCommandTests {
    let loadClient = "7c1e0c3d-0000-4000-8000-00000000b001"
    let personClient = "7c1e0c3d-0000-4000-8000-00000000b002"

    @Test(
        "20,000 records (customers and orders with lines, two companies) are loaded; kill -9 in the middle, run again: every record published once, headers before their lines, progress printed"
    )
    func killAndResume() async throws {
        let broker = try TestBroker()
        defer { broker.stop() }
        let simulator = try SimulatorProcess([
            "finance-operations", "--client", "\(loadClient):load-secret", "--client",
            "\(personClient):person-secret", "--faults", "latency=200ms",
        ])
        defer { simulator.stop() }
        let (url, tenant) = (simulator.url, simulator.tenant)
        let person = simulator.client(personClient, "person-secret", api: .financeOperations)
        // The people's records: 4,000 customers, 3,200 orders of 4 lines, in two companies.
        var creates: [ODataMessage] = []
        func create(_ set: String, _ body: JSONObject) {
            creates.append(
                ODataMessage(
                    method: "POST", url: "\(set)?cross-company=true",
                    headers: HTTPHeaders([("Content-Type", "application/json")]), body: body.jsonBytes))
        }
        for company in ["USMF", "DEMF"] {
            for number in 1...2_000 {
                create("CustomersV3", ["dataAreaId": .string(company), "CustomerAccount": .string("C-\(number)")])
            }
            for number in 1...1_600 {
                create(
                    "CDSSalesOrderHeaders",
                    [
                        "dataAreaId": .string(company), "SalesOrderNumber": .string("S-\(number)"),
                        "OrderingCustomerAccountNumber": .string("C-\(number)"),
                    ])
                for line in 1...4 {
                    create(
                        "CDSSalesOrderLines",
                        [
                            "dataAreaId": .string(company), "SalesOrderNumber": .string("S-\(number)"),
                            "LineCreationSequenceNumber": .number(String(line)), "ProductNumber": .string("D-\(line)"),
                        ])
                }
            }
        }
        #expect(creates.count == 20_000)
        for start in stride(from: 0, to: creates.count, by: 1_000) {
            let batch = ODataBatch(creates[start..<min(start + 1_000, creates.count)].map { .single($0) }).encoded()
            let answer = try await person.sendRaw(
                "POST", "$batch", body: batch.body, headers: HTTPHeaders([("Content-Type", batch.contentType)]))
            #expect(answer.status == 200)
        }
        let environment = broker.environment.merging([
            "P2C_FNO_URL": url, "P2C_FNO_TENANT_ID": tenant, "P2C_FNO_CLIENT_ID": loadClient,
            "P2C_FNO_CLIENT_SECRET": "load-secret", "P2C_FNO_AUTHORITY": url,
        ]) { $1 }
        func start() throws -> Spawned {
            try Spawned(
                p2cBinary,
                [
                    "bootstrap", "--side", "erp", "--topics", topicsDirectory, "--streams", "customers,orders",
                    "--page-size", "250",
                ], environment: environment)
        }
        @Sendable func published() throws -> [KafkaRecord] {
            try broker.read("erp.customers.changes", partitions: 6)
                + broker.read("erp.orders.changes", partitions: 24)
        }

        // Killed once part of the load is published (200 ms a request: its 80 pages outlast the
        // watch, which reads Kafka, on a loaded machine).
        var load = try start()
        let deadline = ContinuousClock.now + .seconds(90)
        while try await AsyncBridge.onThread({ try published().count }) < 1_000 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(load.stop(SIGKILL) != 0)
        let before = try published().count
        #expect(before < 20_000, "killed in the middle of the load")
        load = try start()
        let result = load.finish()
        #expect(result.status == 0, "\(result.stderr.suffix(500))")
        #expect(result.stdout.contains("records/s"), "progress is printed")
        #expect(result.stdout.contains("loaded"), "\(result.stdout.suffix(300))")

        let records = try published()
        let ids = records.compactMap { $0.header("ce_id")?.text }
        #expect(Set(ids).count == 20_000, "none lost")
        // A page is delivered before the position after it: killed in between, the page is read
        // again, and its first delivery stays in an aborted transaction, which Kafka hides from
        // read_committed readers and the 2.0.2 mock does not.
        #expect(ids.count - Set(ids).count <= 250, "at most the killed run's last page again")
        if ids.count != Set(ids).count {
            withKnownIssue("librdkafka 2.0.2's mock shows aborted transactions to read_committed readers") {
                #expect(Set(ids).count == ids.count, "none published twice")
            }
        }
        // Per document, the header before its lines.
        let orders = try broker.read("erp.orders.changes", partitions: 24)
        var seen = Set<String>()
        var linesBeforeHeader = 0
        for record in orders {
            let subject = record.header("ce_subject")?.text ?? ""
            if record.header("ce_type")?.text == "SalesOrderHeader.upserted" {
                seen.insert(subject)
            } else if !seen.contains(subject) {
                linesBeforeHeader += 1
            }
        }
        #expect(linesBeforeHeader == 0)
        let customer = try #require(
            records.first {
                $0.header("ce_subject")?.text == "DEMF/C-17" && $0.header("ce_type")?.text == "CustomersV3.upserted"
            })
        #expect((try JSONParser.parse(customer.value ?? [])).objectValue?["CUSTOMERACCOUNT"] == "C-17")
    }

    @Test(
        "The CRM's initial load: accounts and orders with lines in Dataverse published with lookups as natural keys, headers before lines; stopped midway and run again, nothing twice, nothing lost"
    )
    func crmLoad() async throws {
        let broker = try TestBroker()
        defer { broker.stop() }
        let simulator = try SimulatorProcess([
            "dataverse", "--client", "\(loadClient):load-secret", "--client", "\(personClient):person-secret",
            "--faults", "latency=120ms",
        ])
        defer { simulator.stop() }
        let person = simulator.client(personClient, "person-secret", api: .dataverse)
        for number in 1...150 {
            let answer = try await person.send(
                "PATCH", "accounts(accountnumber='A-\(number)')", body: ["customertypecode": .number("3")])
            #expect(answer.status == 204)
        }
        for number in 1...20 {
            _ = try await person.send(
                "PATCH", "salesorders(msdyn_salesordernumber='S-\(number)')",
                body: ["customerid_account@odata.bind": .string("/accounts(accountnumber='A-\(number)')")])
            let header = try await person.get("salesorders(msdyn_salesordernumber='S-\(number)')?$select=salesorderid")
            let id = try #require(header["salesorderid"]?.stringValue)
            for line in 1...3 {
                _ = try await person.send(
                    "PATCH", "salesorderdetails(_salesorderid_value=\(id),sequencenumber=\(line))",
                    body: ["quantity": .number(String(line))])
            }
        }
        let environment = broker.environment.merging([
            "P2C_DATAVERSE_URL": simulator.url, "P2C_DATAVERSE_TENANT_ID": simulator.tenant,
            "P2C_DATAVERSE_CLIENT_ID": loadClient, "P2C_DATAVERSE_CLIENT_SECRET": "load-secret",
            "P2C_DATAVERSE_AUTHORITY": simulator.url,
        ]) { $1 }
        func start() throws -> Spawned {
            try Spawned(
                p2cBinary,
                [
                    "bootstrap", "--side", "crm", "--companies", "USMF", "--topics", topicsDirectory, "--streams",
                    "customers,orders", "--page-size", "5",
                ], environment: environment)
        }
        @Sendable func published() throws -> [KafkaRecord] {
            try broker.read("crm.customers.changes", partitions: 6) + broker.read("crm.orders.changes", partitions: 24)
        }
        // Stopped once part of the load is published, then run again.
        var load = try start()
        let deadline = ContinuousClock.now + .seconds(60)
        while try await AsyncBridge.onThread({ try published().count }) < 20 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(load.stop(SIGTERM) == 0)
        #expect(try published().count < 230, "stopped in the middle of the load")
        load = try start()
        let result = load.finish()
        #expect(result.status == 0, "\(result.stderr.suffix(500))")
        let records = try published()
        let ids = records.compactMap { $0.header("ce_id")?.text }
        #expect(Set(ids).count == ids.count, "none published twice")
        #expect(records.count == 150 + 20 + 60, "none lost")
        let orders = try broker.read("crm.orders.changes", partitions: 24)
        var seen = Set<String>()
        var linesBeforeHeader = 0
        for record in orders {
            let subject = record.header("ce_subject")?.text ?? ""
            if record.header("ce_type")?.text == "salesorder.upserted" {
                seen.insert(subject)
            } else if !seen.contains(subject) {
                linesBeforeHeader += 1
            }
        }
        #expect(linesBeforeHeader == 0)
        let order = try #require(orders.first { $0.header("ce_subject")?.text == "USMF/S-7" })
        #expect(
            (try JSONParser.parse(order.value ?? [])).objectValue?["customerid"]
                == .object(["accountnumber": "A-7"]), "lookups as natural keys")
    }

    @Test("A bad side, position or page size fails with one line naming it and exit 2")
    func badFlags() throws {
        var clean = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("P2C_") }
        clean["P2C_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
        for (arguments, message) in [
            (["--side", "sap"], "--side must be one of crm, erp, got 'sap'"),
            (["--side", "crm"], "--side crm needs --companies with the one legal entity of the rows"),
            (["--side", "crm", "--companies", "USMF", "--from", "1:20"], "--from on crm takes <step>:0"),
            (["--from", "x"], "--from expects <step>:<records>, got 'x'"),
            (["--page-size", "0"], "--page-size"),
            ([], "P2C_FNO_URL (or fno.url in the file) is required"),
        ] {
            let result = try Spawned(
                p2cBinary, ["bootstrap", "--topics", topicsDirectory] + arguments, environment: clean
            )
            .finish()
            #expect(result.status == 2)
            #expect(result.stderr.contains(message), "\(result.stderr)")
        }
        // The file's fno object is read (and a secret in it refused).
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("fno-\(UUID()).json")
        defer { try? FileManager.default.removeItem(at: file) }
        for (object, message) in [
            (#"{"fno": {"url": "ftp://x"}}"#, "P2C_FNO_URL: not an http(s) URL: ftp://x"),
            (#"{"fno": {"clientSecret": "s"}}"#, "fno.clientSecret: secrets are not read from the file"),
        ] {
            try Data(object.utf8).write(to: file)
            let result = try Spawned(
                p2cBinary, ["bootstrap", "--topics", topicsDirectory, "--config", file.path], environment: clean
            ).finish()
            #expect(result.status == 2)
            #expect(result.stderr.contains(message), "\(result.stderr)")
        }
    }
}
