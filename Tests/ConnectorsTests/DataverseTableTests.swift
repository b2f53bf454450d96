import Connectors
import Foundation
import OData
import ProspectToCash
import Runtime
import Simulators
import Testing

private func client(_ simulator: DataverseSimulator, _ user: DataverseSimulator.Client) -> DataverseClient {
    var settings = DataverseClient.Settings(
        url: simulator.baseURL, tenantID: simulator.tenantID.uuidString.lowercased(),
        clientID: user.id.uuidString.lowercased(), clientSecret: user.secret)
    settings.authority = simulator.baseURL
    return DataverseClient(settings: settings, http: HTTPClient())
}

private let representation = HTTPHeaders([("Prefer", "return=representation")])

@Suite("Dataverse tables over HTTP: the documented upsert, conditional writes, lookups and reads")
struct DataverseTableTests {
    let apply = DataverseSimulator.Client(id: UUID(), secret: "apply")
    let person = DataverseSimulator.Client(id: UUID(), secret: "person")

    @Test(
        "PATCH to an alternate-key URL creates (201) then updates (200), or answers 204 without a representation (DV-UPSERT)"
    )
    func upsert() async throws {
        let simulator = try DataverseSimulator(clients: [apply])
        defer { simulator.stop() }
        let dataverse = client(simulator, apply)
        let path = ODataPath.entity("accounts", key: [(name: "accountnumber", value: .string("O'Brien-1"))])
        let created = try await dataverse.send("PATCH", path, body: ["name": "O'Brien Ltd."], headers: representation)
        #expect(created.status == 201)
        #expect(created.json?["accountnumber"] == .string("O'Brien-1"))
        #expect(created.json?["name"] == .string("O'Brien Ltd."))
        let updated = try await dataverse.send("PATCH", path, body: ["telephone1": "555-0100"], headers: representation)
        #expect(updated.status == 200)
        #expect(updated.json?["name"] == .string("O'Brien Ltd."))
        #expect(updated.json?["@odata.etag"] != created.json?["@odata.etag"])
        let quiet = try await dataverse.send("PATCH", path, body: ["fax": "555-0101"])
        #expect(quiet.status == 204)
        #expect(quiet.headers["OData-EntityId"]?.contains("/api/data/v9.2/accounts(") == true)
        let read = try await dataverse.get(path + "?$select=name,fax")
        #expect(read["fax"] == .string("555-0101"))
        #expect(read["telephone1"] == nil)
        #expect(read["_modifiedby_value"] == nil)
    }

    @Test(
        "If-None-Match: * creates only (412), If-Match: * updates only (404), a stale ETag is refused (412) (DV-COND)")
    func conditionalWrites() async throws {
        let simulator = try DataverseSimulator(clients: [apply])
        defer { simulator.stop() }
        let dataverse = client(simulator, apply)
        let path = "accounts(accountnumber='US-001')"
        let missing = try await dataverse.send(
            "PATCH", path, body: ["name": "x"], headers: HTTPHeaders([("If-Match", "*")]))
        #expect(missing.status == 404)
        #expect(DataverseError(missing).message.hasSuffix("Does Not Exist"))
        let first = try await dataverse.send(
            "PATCH", path, body: ["name": "Contoso"], headers: HTTPHeaders([("If-None-Match", "*")]))
        #expect(first.status == 204)
        let again = try await dataverse.send(
            "PATCH", path, body: ["name": "Contoso"], headers: HTTPHeaders([("If-None-Match", "*")]))
        #expect(again.status == 412)
        #expect(DataverseError(again).message == "A record with matching key values already exists.")
        let stale = try await dataverse.send(
            "PATCH", path, body: ["name": "y"], headers: HTTPHeaders([("If-Match", "W/\"1\"")]))
        #expect(stale.status == 412)
        #expect(DataverseError(stale).message.hasPrefix("The version of the existing record doesn't match"))
        let etag = try await dataverse.get(path)["@odata.etag"]?.stringValue ?? ""
        let current = try await dataverse.send(
            "PATCH", path, body: ["name": "z"], headers: HTTPHeaders([("If-Match", etag)]))
        #expect(current.status == 204)
    }

    @Test(
        "A lookup by @odata.bind to an alternate-key URL is read back as _<navigation>_value; a line keyed by its header and number"
    )
    func lookups() async throws {
        let simulator = try DataverseSimulator(clients: [apply])
        defer { simulator.stop() }
        let dataverse = client(simulator, apply)
        // A line whose header is not there yet is refused: the connectors retry it later.
        let early = try await dataverse.send(
            "POST", "salesorderdetails",
            body: [
                "salesorderid@odata.bind": "/salesorders(msdyn_salesordernumber='C000123')",
                "sequencenumber": .number("1"),
            ])
        #expect(early.status == 404)
        #expect(DataverseError(early).code == "0x80040217")
        let header = try await dataverse.send(
            "PATCH", "salesorders(msdyn_salesordernumber='C000123')", body: ["name": "C000123"], headers: representation
        )
        let headerID = try #require(header.json?["salesorderid"]?.stringValue)
        let line = try await dataverse.send(
            "POST", "salesorderdetails",
            body: [
                "salesorderid@odata.bind": "/salesorders(msdyn_salesordernumber='C000123')",
                "sequencenumber": .number("1"),
                "quantity": .number("3"),
            ], headers: representation)
        #expect(line.status == 201)
        #expect(line.json?["_salesorderid_value"] == .string(headerID))
        // The line's alternate key uses the lookup property (DV-AK).
        let byKey = try await dataverse.get("salesorderdetails(_salesorderid_value=\(headerID),sequencenumber=1)")
        #expect(byKey["quantity"] == .number("3"))
        let duplicate = try await dataverse.send(
            "POST", "salesorderdetails",
            body: [
                "salesorderid@odata.bind": "/salesorders(msdyn_salesordernumber='C000123')",
                "sequencenumber": .number("1"),
            ])
        #expect(duplicate.status == 412)
    }

    @Test("Who changed a row is kept: _modifiedby_value is the application user that wrote last")
    func modifiedBy() async throws {
        let simulator = try DataverseSimulator(clients: [apply, person])
        defer { simulator.stop() }
        let path = "accounts(accountnumber='US-002')"
        _ = try await client(simulator, person).send("PATCH", path, body: ["name": "Fabrikam"])
        #expect(
            try await client(simulator, apply).get(path)["_modifiedby_value"]
                == .string(person.systemUserID.uuidString.lowercased()))
        _ = try await client(simulator, apply).send("PATCH", path, body: ["name": "Fabrikam, Inc."])
        let row = try await client(simulator, apply).get(path)
        #expect(row["_modifiedby_value"] == .string(apply.systemUserID.uuidString.lowercased()))
        #expect(row["_createdby_value"] == .string(person.systemUserID.uuidString.lowercased()))
    }

    @Test(
        "A filtered read pages by odata.maxpagesize and @odata.nextLink (DV-PAGE); DELETE removes; an unknown set is 404 0x8006088a"
    )
    func readsAndDeletes() async throws {
        let simulator = try DataverseSimulator(clients: [apply])
        defer { simulator.stop() }
        let dataverse = client(simulator, apply)
        for index in 1...5 {
            _ = try await dataverse.send(
                "PATCH", "accounts(accountnumber='A\(index)')", body: ["name": .string(index % 2 == 0 ? "even" : "odd")]
            )
        }
        var names: [String] = []
        var next: String? = "accounts?$select=accountnumber&$filter=name%20eq%20'odd'"
        var pages = 0
        while let resource = next {
            let answer = try await dataverse.send(
                "GET", resource, headers: HTTPHeaders([("Prefer", "odata.maxpagesize=2")]))
            pages += 1
            if case .array(let rows)? = answer.json?["value"] {
                names += rows.compactMap { $0.objectValue?["accountnumber"]?.stringValue }
            }
            next = answer.json?["@odata.nextLink"]?.stringValue.map {
                String($0[$0.range(of: "/api/data/v9.2/")!.upperBound...])
            }
        }
        #expect(names == ["A1", "A3", "A5"])
        #expect(pages == 2)
        #expect(try await dataverse.send("DELETE", "accounts(accountnumber='A1')").status == 204)
        #expect(try await dataverse.send("DELETE", "accounts(accountnumber='A1')").status == 404)
        let unknown = try await dataverse.send("GET", "Account")
        #expect(unknown.status == 404)
        #expect(DataverseError(unknown).code == "0x8006088a")
    }
}
