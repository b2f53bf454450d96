import Connectors
import Foundation
import OData
import ProspectToCash
import Runtime
import Simulators
import Testing

private let representation = HTTPHeaders([("Prefer", "return=representation")])

@Suite("Dataverse tables over HTTP: the documented upsert, conditional writes, lookups and reads")
struct DataverseTableTests {
    let apply = DataverseSimulator.Client(id: UUID(), secret: "apply")
    let person = DataverseSimulator.Client(id: UUID(), secret: "person")

    @Test(
        "PATCH to an alternate-key URL creates (201) then updates (200), or answers 204 without a representation (Use Upsert to Create or Update a record)"
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
        "If-None-Match: * creates only (412), If-Match: * updates only (404), a stale ETag is refused (412) (Perform conditional operations using the Web API)"
    )
    func conditionalWrites() async throws {
        let simulator = try DataverseSimulator(clients: [apply])
        defer { simulator.stop() }
        let dataverse = client(simulator, apply)
        let path = "accounts(accountnumber='US-001')"
        let missing = try await dataverse.send(
            "PATCH", path, body: ["name": "x"], headers: HTTPHeaders([("If-Match", "*")]))
        #expect(missing.status == 404)
        #expect(ServiceError(missing).message.hasSuffix("Does Not Exist"))
        let first = try await dataverse.send(
            "PATCH", path, body: ["name": "Contoso"], headers: HTTPHeaders([("If-None-Match", "*")]))
        #expect(first.status == 204)
        let again = try await dataverse.send(
            "PATCH", path, body: ["name": "Contoso"], headers: HTTPHeaders([("If-None-Match", "*")]))
        #expect(again.status == 412)
        #expect(ServiceError(again).message == "A record with matching key values already exists.")
        let stale = try await dataverse.send(
            "PATCH", path, body: ["name": "y"], headers: HTTPHeaders([("If-Match", "W/\"1\"")]))
        #expect(stale.status == 412)
        #expect(ServiceError(stale).message.hasPrefix("The version of the existing record doesn't match"))
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
        #expect(ServiceError(early).code == "0x80040217")
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
        // The line's alternate key uses the lookup property ("Use an alternate key to reference a record").
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

    @Test(
        "Who changed a row is kept: _modifiedby_value is the application user that wrote last (Use an alternate key to reference a record)"
    )
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
        "A filtered read pages by odata.maxpagesize and @odata.nextLink (Page results using OData); DELETE removes; an unknown set is 404 0x8006088a"
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
        #expect(ServiceError(unknown).code == "0x8006088a")
    }
}

@Suite(
    "Dataverse $batch over HTTP: change sets are atomic, errors stop the batch unless continue-on-error (Execute batch operations using the Web API)"
)
struct DataverseBatchTests {
    let apply = DataverseSimulator.Client(id: UUID(), secret: "apply")

    /// A change set writing an order header and its lines, in the Web API's multipart format.
    private func order(_ number: String, lines: [Int], bindTo header: String? = nil) -> ODataBatch.Part {
        let headers = HTTPHeaders([("Content-Type", "application/json")])
        var messages = [
            ODataMessage(
                method: "PATCH", url: "/api/data/v9.2/salesorders(msdyn_salesordernumber='\(number)')",
                headers: headers,
                body: Array(#"{"name":"\#(number)"}"#.utf8))
        ]
        for line in lines {
            messages.append(
                ODataMessage(
                    method: "POST", url: "/api/data/v9.2/salesorderdetails", headers: headers,
                    body: Array(
                        #"{"salesorderid@odata.bind":"/salesorders(msdyn_salesordernumber='\#(header ?? number)')","sequencenumber":\#(line)}"#
                            .utf8)))
        }
        return .changeSet(messages)
    }

    private func post(
        _ batch: ODataBatch, _ dataverse: ServiceClient, continueOnError: Bool = false
    ) async throws -> (
        Int, ODataBatch
    ) {
        // The batch goes through the same HTTP client, as apply sends it.
        let (contentType, body) = batch.encoded()
        var headers = HTTPHeaders([("Content-Type", contentType)])
        if continueOnError { headers.add("Prefer", "odata.continue-on-error") }
        let answer = try await dataverse.sendRaw("POST", "$batch", body: body, headers: headers)
        return (
            answer.status, try ODataBatch.decode(contentType: answer.headers["Content-Type"] ?? "", body: answer.body)
        )
    }

    @Test("A header and its lines in one change set are written together; a failing change set leaves nothing behind")
    func atomicChangeSets() async throws {
        let simulator = try DataverseSimulator(clients: [apply])
        defer { simulator.stop() }
        let dataverse = client(simulator, apply)
        let (status, answer) = try await post(ODataBatch([order("C1", lines: [1, 2])]), dataverse)
        #expect(status == 200)
        #expect(answer.messages.map(\.status) == [204, 204, 204])
        #expect(answer.messages.map(\.contentID) == ["1", "2", "3"])
        // The second set's last line binds to an order that does not exist: the whole set is undone.
        let (failedStatus, failed) = try await post(
            ODataBatch([order("C2", lines: [1, 2]), order("C3", lines: [1], bindTo: "C9")]), dataverse)
        #expect(failedStatus == 400)
        #expect(failed.messages.last?.status == 404)
        let failure = String(decoding: failed.messages.last?.body ?? [], as: UTF8.self)
        #expect(failure.contains("0x80040217"))
        #expect(try await dataverse.send("GET", "salesorders(msdyn_salesordernumber='C2')").status == 200)
        #expect(try await dataverse.send("GET", "salesorders(msdyn_salesordernumber='C3')").status == 404)
        // With continue-on-error every part is answered and the good ones are applied.
        let (continuedStatus, continued) = try await post(
            ODataBatch([order("C4", lines: [9], bindTo: "C9"), order("C5", lines: [1])]), dataverse,
            continueOnError: true)
        #expect(continuedStatus == 200)
        #expect(continued.messages.map(\.status) == [404, 204, 204])
        #expect(try await dataverse.send("GET", "salesorders(msdyn_salesordernumber='C4')").status == 404)
        #expect(try await dataverse.send("GET", "salesorders(msdyn_salesordernumber='C5')").status == 200)
    }

    @Test("A failing change set also undoes its updates and deletes: the rows are as they were, found by their keys")
    func failedChangeSetRestoresUpdatesAndDeletes() async throws {
        let simulator = try DataverseSimulator(clients: [apply])
        defer { simulator.stop() }
        let dataverse = client(simulator, apply)
        #expect(try await post(ODataBatch([order("D1", lines: [1]), order("D2", lines: [])]), dataverse).0 == 200)
        let headers = HTTPHeaders([("Content-Type", "application/json")])
        let header = "/api/data/v9.2/salesorders(msdyn_salesordernumber='D1')"
        let (status, answer) = try await post(
            ODataBatch([
                .changeSet([
                    ODataMessage(
                        method: "PATCH", url: header, headers: headers, body: Array(#"{"name":"renamed"}"#.utf8)),
                    ODataMessage(
                        method: "DELETE", url: "/api/data/v9.2/salesorders(msdyn_salesordernumber='D2')",
                        headers: headers, body: []),
                    ODataMessage(
                        method: "POST", url: "/api/data/v9.2/salesorderdetails", headers: headers,
                        body: Array(
                            #"{"salesorderid@odata.bind":"/salesorders(msdyn_salesordernumber='D9')","sequencenumber":1}"#
                                .utf8)),
                ])
            ]), dataverse)
        #expect(status == 400)
        #expect(answer.messages.last?.status == 404)
        let d1 = try await dataverse.send("GET", "salesorders(msdyn_salesordernumber='D1')")
        #expect(d1.status == 200)
        #expect(d1.json?["name"] == .string("D1"))
        #expect(try await dataverse.send("GET", "salesorders(msdyn_salesordernumber='D2')").status == 200)
        // Still writable by key after the rollback: the key index was restored with the rows.
        let (again, _) = try await post(ODataBatch([order("D2", lines: [1])]), dataverse)
        #expect(again == 200)
        let lines = try await dataverse.send("GET", "salesorderdetails?$select=sequencenumber")
        guard case .array(let rows)? = lines.json?["value"] else {
            Issue.record("no value array")
            return
        }
        #expect(rows.count == 2)
    }
}

@Suite(
    "Dataverse change tracking over HTTP: a paged snapshot, then delta links with changes and deletes (Use change tracking to synchronize data with external systems)"
)
struct DataverseChangeTrackingTests {
    let reader = DataverseSimulator.Client(id: UUID(), secret: "capture")
    let person = DataverseSimulator.Client(id: UUID(), secret: "person")

    /// Follows next links to the delta link: the rows (or deleted ids) read and the delta link.
    private func read(
        _ dataverse: ServiceClient, from resource: String
    ) async throws -> (
        rows: [JSONObject], deltaLink: String
    ) {
        var rows: [JSONObject] = []
        var next: String? = resource
        while let current = next {
            let answer = try await dataverse.send(
                "GET", current, headers: HTTPHeaders([("Prefer", "odata.track-changes,odata.maxpagesize=2")]))
            #expect(answer.status == 200)
            #expect(answer.headers["Preference-Applied"] == "odata.track-changes")
            if case .array(let values)? = answer.json?["value"] { rows += values.compactMap(\.objectValue) }
            next = answer.json?["@odata.nextLink"]?.stringValue.map(Self.relative)
            if next == nil {
                let delta = try #require(answer.json?["@odata.deltaLink"]?.stringValue)
                return (rows, Self.relative(delta))
            }
            #expect(answer.json?["@odata.deltaLink"] == nil, "the delta link comes with the last page only")
        }
        Issue.record("no delta link")
        return (rows, "")
    }

    private static func relative(_ link: String) -> String {
        String(link[link.range(of: "/api/data/v9.2/")!.upperBound...])
    }

    @Test(
        "A snapshot in pages, a change made meanwhile reported by the first delta, then changes by version and deletes")
    func deltas() async throws {
        let simulator = try DataverseSimulator(clients: [reader, person])
        defer { simulator.stop() }
        let capture = client(simulator, reader)
        let someone = client(simulator, person)
        for index in 1...3 {
            _ = try await someone.send("PATCH", "accounts(accountnumber='A\(index)')", body: ["name": "v1"])
        }
        // First page of the snapshot, then a change before the rest is read.
        let first = try await capture.send(
            "GET", "accounts?$select=accountnumber,name,_modifiedby_value",
            headers: HTTPHeaders([("Prefer", "odata.track-changes,odata.maxpagesize=2")]))
        let nextPage = try #require(first.json?["@odata.nextLink"]?.stringValue)
        _ = try await someone.send("PATCH", "accounts(accountnumber='A1')", body: ["name": "v2"])
        let rest = try await read(capture, from: String(nextPage[nextPage.range(of: "/api/data/v9.2/")!.upperBound...]))
        #expect(rest.rows.compactMap { $0["accountnumber"]?.stringValue } == ["A3"])
        // The first delta has the change made during the snapshot.
        let delta1 = try await read(capture, from: rest.deltaLink)
        #expect(delta1.rows.compactMap { $0["accountnumber"]?.stringValue } == ["A1"])
        #expect(delta1.rows.first?["name"] == .string("v2"))
        #expect(delta1.rows.first?["_modifiedby_value"] == .string(person.systemUserID.uuidString.lowercased()))
        // Changes in version order, then the deleted row as $deletedEntity.
        _ = try await someone.send("PATCH", "accounts(accountnumber='A3')", body: ["name": "v2"])
        _ = try await someone.send("PATCH", "accounts(accountnumber='A4')", body: ["name": "v1"])
        let deletedID = try await capture.get("accounts(accountnumber='A2')")["accountid"]?.stringValue
        _ = try await someone.send("DELETE", "accounts(accountnumber='A2')")
        let delta2 = try await read(capture, from: delta1.deltaLink)
        #expect(
            delta2.rows.map { $0["accountnumber"]?.stringValue ?? "deleted \($0["id"]?.stringValue ?? "")" } == [
                "A3", "A4", "deleted \(deletedID ?? "")",
            ])
        #expect(delta2.rows.last?["reason"] == .string("deleted"))
        #expect(delta2.rows.last?["@odata.context"]?.stringValue?.hasSuffix("accounts/$deletedEntity") == true)
        // Nothing changed since: an empty result and a delta link again.
        let delta3 = try await read(capture, from: delta2.deltaLink)
        #expect(delta3.rows.isEmpty)
    }

    @Test("$filter is refused with odata.track-changes, as documented")
    func filterRefused() async throws {
        let simulator = try DataverseSimulator(clients: [reader])
        defer { simulator.stop() }
        let answer = try await client(simulator, reader).send(
            "GET", "accounts?$filter=name%20eq%20'x'", headers: HTTPHeaders([("Prefer", "odata.track-changes")]))
        #expect(answer.status == 400)
        #expect(ServiceError(answer).message.contains("isn't supported when Change Tracking is enabled"))
    }
}
