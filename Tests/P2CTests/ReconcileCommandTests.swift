import Connectors
import FinanceOperations
import Foundation
import Kafka
import ProspectToCash
import Runtime
import TestSupport
import Testing

/// `p2c reconcile` against both simulated systems, as an operator runs it: agreement first, then
/// drift planted on each side, found field by field, and repaired by change events.
@Suite("p2c reconcile, against p2c simulate dataverse and finance-operations", .serialized, .timeLimit(.minutes(3)))
struct ReconcileCommandTests {
    let person = "7c1e0c3d-0000-4000-8000-0000000000a1"
    let reader = "7c1e0c3d-0000-4000-8000-0000000000a2"

    @Test(
        "Both systems agree: exit 0; then a customer changed in F&O only, one only in Sales and one only in F&O: each found, field by field, exit 1; --repair --prefer erp publishes the missing ones from their side and F&O's version of the changed one"
    )
    func driftOnEachSide() async throws {
        let broker = try TestBroker()
        defer { broker.stop() }
        let sales = try SimulatorProcess([
            "dataverse", "--client", "\(person):person-secret", "--client", "\(reader):reader-secret",
        ])
        defer { sales.stop() }
        let fno = try SimulatorProcess([
            "finance-operations", "--client", "\(person):person-secret", "--client", "\(reader):reader-secret",
            "--company", "USMF",
        ])
        defer { fno.stop() }
        let seller = sales.client(person, "person-secret", api: .dataverse)
        let clerk = fno.client(person, "person-secret", api: .financeOperations)
        let writer = FinanceOperationsSink(client: clerk, schema: FinanceOperationsSchema(client: clerk))
        let mapper = try Mapper()

        /// An account in Sales; unless `salesOnly`, the customer the maps make of it in F&O.
        func customer(_ number: String, name: String, salesOnly: Bool = false, financeOnly: Bool = false) async throws {
            let account: JSONObject = [
                "accountnumber": .string(number), "name": .string(name), "customertypecode": .number("3"),
                "address1_addresstypecode": .number("2"), "address1_city": "Redmond",
            ]
            if !financeOnly {
                var body = account
                body["accountnumber"] = nil
                let answer = try await seller.send("PATCH", "accounts(accountnumber='\(number)')", body: body)
                #expect(answer.status == 204)
            }
            guard !salesOnly else { return }
            let event = CloudEvent(
                id: "seed-\(number)", source: "crm", type: "account.upserted", subject: "USMF/\(number)",
                company: "USMF", data: account)
            guard case .mapped(let outputs) = mapper.map(event, flow: .crmToERP) else {
                Issue.record("the seed account does not map")
                return
            }
            let outcomes = await writer.apply([
                [ApplyItem(table: "CustomersV3", deleted: false, record: outputs[0].event.data, company: "USMF")]
            ])
            #expect("\(outcomes)".contains("applied"), "\(outcomes)")
        }

        let environment = broker.environment.merging([
            "P2C_DATAVERSE_URL": sales.url, "P2C_DATAVERSE_TENANT_ID": sales.tenant,
            "P2C_DATAVERSE_CLIENT_ID": reader, "P2C_DATAVERSE_CLIENT_SECRET": "reader-secret",
            "P2C_DATAVERSE_AUTHORITY": sales.url, "P2C_FNO_URL": fno.url, "P2C_FNO_TENANT_ID": fno.tenant,
            "P2C_FNO_CLIENT_ID": reader, "P2C_FNO_CLIENT_SECRET": "reader-secret", "P2C_FNO_AUTHORITY": fno.url,
        ]) { $1 }
        func reconcile(_ extra: [String] = []) throws -> (status: Int32, stdout: String, stderr: String) {
            try Spawned(
                p2cBinary, ["reconcile", "--company", "USMF", "--topics", topicsDirectory] + extra,
                environment: environment
            ).finish()
        }

        try await customer("US-1", name: "Litware, Inc.")
        let agreeing = try reconcile()
        #expect(agreeing.status == 0, "\(agreeing.stdout)\n\(agreeing.stderr)")
        #expect(agreeing.stdout.contains("result: the systems agree"))
        let row = agreeing.stdout.split(separator: "\n").first { $0.hasPrefix("  customers ") }
        #expect(row?.split(separator: " ").compactMap { Int($0) } == [1, 1, 2, 0, 0, 0], "\(row ?? "")")

        // Drift: changed in F&O behind the sync's back; only in Sales; only in F&O.
        try await customer("US-2", name: "Fabrikam")
        let changed = try await clerk.send(
            "PATCH", "CustomersV3(dataAreaId='USMF',CustomerAccount='US-2')?cross-company=true",
            body: ["OrganizationName": "Fabrikam Holdings"])
        #expect(changed.status == 204)
        try await customer("US-3", name: "Contoso", salesOnly: true)
        try await customer("US-4", name: "Northwind", financeOnly: true)

        let drifted = try reconcile(["--show", "50"])
        #expect(drifted.status == 1, "\(drifted.stdout)\n\(drifted.stderr)")
        #expect(drifted.stdout.contains("result: the systems differ"))
        let counts = drifted.stdout.split(separator: "\n").first { $0.hasPrefix("  customers ") }?
            .split(separator: " ").compactMap { Int($0) }
        // 3 accounts, 3 customers; 6 compared; US-3 and US-4 missing; US-2 different both ways.
        #expect(counts == [3, 3, 6, 2, 2, 0], "\(drifted.stdout)")
        #expect(
            drifted.stdout.contains(
                #"crm account USMF/US-2: ORGANIZATIONNAME should be "Fabrikam", erp has "Fabrikam Holdings""#),
            "\(drifted.stdout)")
        #expect(drifted.stdout.contains("crm account USMF/US-3: erp has no CustomersV3 USMF/US-3"))
        #expect(drifted.stdout.contains("erp CustomersV3 USMF/US-4: crm has no account USMF/US-4"))

        let repaired = try reconcile(["--repair", "--prefer", "erp"])
        #expect(repaired.status == 1)
        #expect(repaired.stdout.contains("repair: published 3 change events"), "\(repaired.stdout)")
        let fromSales = try broker.read("crm.customers.changes", partitions: 6)
        #expect(fromSales.map { $0.header("ce_subject")?.text } == ["USMF/US-3"])
        #expect(fromSales.first?.header("ce_type")?.text == "account.upserted")
        let fromFinance = try broker.read("erp.customers.changes", partitions: 6)
        #expect(Set(fromFinance.compactMap { $0.header("ce_subject")?.text }) == ["USMF/US-2", "USMF/US-4"])
        let record = try #require(fromFinance.first { $0.header("ce_subject")?.text == "USMF/US-2" })
        let data = try JSONParser.parse(record.value ?? []).objectValue
        #expect(data?["ORGANIZATIONNAME"] == .string("Fabrikam Holdings"))
    }

    @Test("A missing company, a bad --prefer or --prefer without --repair fails with one line naming it and exit 2")
    func badSettings() throws {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("P2C_") }
        environment["P2C_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
        for (arguments, message) in [
            ([String](), "--company (or \"company\" in the file) is required"),
            (["--company", "USMF", "--repair", "--prefer", "both"], "--prefer must be crm or erp, got 'both'"),
            (["--company", "USMF", "--prefer", "crm"], "--prefer goes with --repair"),
            (["--company", "USMF"], "P2C_DATAVERSE_URL (or dataverse.url in the file) is required"),
        ] {
            let result = try Spawned(
                p2cBinary, ["reconcile", "--topics", topicsDirectory] + arguments, environment: environment
            ).finish()
            #expect(result.status == 2, "\(arguments)")
            #expect(result.stderr.contains(message), "\(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1)
        }
    }
}
