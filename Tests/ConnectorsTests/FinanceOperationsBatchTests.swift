import Connectors
import Foundation
import OData
import ProspectToCash
import Runtime
import Simulators
import Testing

@Suite("F&O $batch over HTTP: a change set is atomic, all or none (Open Data Protocol (OData))")
struct FinanceOperationsBatchTests {
    let apply = FinanceOperationsSimulator.Client(id: UUID(), secret: "apply")

    func client(_ simulator: FinanceOperationsSimulator) -> ServiceClient {
        var settings = ServiceClient.Settings(
            url: simulator.baseURL, tenantID: simulator.tenantID.uuidString.lowercased(),
            clientID: apply.id.uuidString.lowercased(), clientSecret: apply.secret)
        settings.authority = simulator.baseURL
        return ServiceClient(settings: settings, http: HTTPClient(), api: .financeOperations)
    }

    func customer(_ account: String) -> String {
        "/data/CustomersV3(dataAreaId='USMF',CustomerAccount='\(account)')?cross-company=true"
    }

    @Test(
        "A change set whose last write is refused undoes its update, delete and create: every customer is as it was, and writable by its key"
    )
    func failedChangeSetUndoesEverything() async throws {
        let simulator = try FinanceOperationsSimulator(clients: [apply])
        defer { simulator.stop() }
        let fno = client(simulator)
        for (account, memo) in [("C-1", "first"), ("C-2", "second")] {
            let created = try await fno.send(
                "POST", "CustomersV3?cross-company=true",
                body: ["dataAreaId": "USMF", "CustomerAccount": .string(account), "SalesMemo": .string(memo)])
            #expect(created.status == 201)
        }
        let json = HTTPHeaders([("Content-Type", "application/json")])
        let batch = ODataBatch([
            .changeSet([
                ODataMessage(
                    method: "PATCH", url: customer("C-1"), headers: json, body: Array(#"{"SalesMemo":"changed"}"#.utf8)),
                ODataMessage(method: "DELETE", url: customer("C-2"), headers: json, body: []),
                ODataMessage(
                    method: "POST", url: "/data/CustomersV3?cross-company=true", headers: json,
                    body: Array(#"{"dataAreaId":"USMF","CustomerAccount":"C-3"}"#.utf8)),
                // A value not of its property's type (Edm.Decimal): refused, so the set is undone.
                ODataMessage(
                    method: "POST", url: "/data/CustomersV3?cross-company=true", headers: json,
                    body: Array(#"{"dataAreaId":"USMF","CustomerAccount":"C-4","CreditLimit":"lots"}"#.utf8)),
            ])
        ]).encoded()
        let answer = try await fno.sendRaw(
            "POST", "$batch", body: batch.body, headers: HTTPHeaders([("Content-Type", batch.contentType)]))
        let parts = try ODataBatch.decode(contentType: answer.headers["Content-Type"] ?? "", body: answer.body)
        #expect(parts.messages.last?.status == 400)
        let first = try await fno.send("GET", "CustomersV3(dataAreaId='USMF',CustomerAccount='C-1')?cross-company=true")
        #expect(first.json?["SalesMemo"] == .string("first"))
        let second = try await fno.send(
            "GET", "CustomersV3(dataAreaId='USMF',CustomerAccount='C-2')?cross-company=true")
        #expect(second.json?["SalesMemo"] == .string("second"))
        for account in ["C-3", "C-4"] {
            let gone = try await fno.send(
                "GET", "CustomersV3(dataAreaId='USMF',CustomerAccount='\(account)')?cross-company=true")
            #expect(gone.status == 404)
        }
        // The restored rows are found by key: an update of the one deleted and put back succeeds.
        let updated = try await fno.send(
            "PATCH", "CustomersV3(dataAreaId='USMF',CustomerAccount='C-2')?cross-company=true",
            body: ["SalesMemo": "again"])
        #expect(updated.status == 204)
        let listed = try await fno.send("GET", "CustomersV3?cross-company=true&$count=true")
        #expect(listed.json?["@odata.count"] == .number("2"))
    }
}
