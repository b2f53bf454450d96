import Foundation
import OData
import Runtime
import Testing

@Suite("OData pieces: key paths, @odata.bind, $batch bodies")
struct ODataTests {
    @Test(
        "Key paths quote strings with doubled quotes and percent-encode what a path cannot carry",
        arguments: [
            // Alternate key (Dataverse "Use an alternate key", "Use an alternate key to reference a record"):
            // accounts(accountnumber='ABC123').
            ("accounts", [("accountnumber", ODataLiteral.string("ABC123"))], "accounts(accountnumber='ABC123')"),
            // A quote inside a string literal is doubled (OData ABNF, SQUOTE-in-string).
            ("accounts", [("accountnumber", .string("O'Brien"))], "accounts(accountnumber='O''Brien')"),
            // Composite keys, F&O style with dataAreaId first.
            (
                "CustomersV3", [("dataAreaId", .string("usmf")), ("CustomerAccount", .string("US-001"))],
                "CustomersV3(dataAreaId='usmf',CustomerAccount='US-001')"
            ),
            (
                "example_records", [("example_key1", .integer(3)), ("example_key2", .integer(3))],
                "example_records(example_key1=3,example_key2=3)"
            ),
            ("orders", [("number", .string("A B#1/2?%"))], "orders(number='A%20B%231%2F2%3F%25')"),
            (
                "accounts", [("", .guid(UUID(uuidString: "00000000-0000-0000-0000-0000000000AB")!))],
                "accounts(00000000-0000-0000-0000-0000000000ab)"
            ),
            ("products", [("name", .string("Größe"))], "products(name='Gr%C3%B6%C3%9Fe')"),
        ] as [(String, [(String, ODataLiteral)], String)])
    func keyPaths(set: String, key: [(String, ODataLiteral)], expected: String) {
        #expect(ODataPath.entity(set, key: key.map { (name: $0.0, value: $0.1) }) == expected)
    }

    @Test("@odata.bind points at the entity from the service root")
    func bind() {
        #expect(
            ODataPath.bind("accounts", key: [(name: "accountnumber", value: .string("US-001"))])
                == "/accounts(accountnumber='US-001')")
    }

    @Test("A batch with a change set is written as Dataverse documents it, and reads back the same")
    func batchRoundTrip() throws {
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("If-None-Match", "null")])
        let batch = ODataBatch([
            .changeSet([
                ODataMessage(
                    method: "PATCH", url: "/api/data/v9.2/salesorders(ordernumber='C000123')", headers: headers,
                    body: Array(#"{"name":"Order C000123"}"#.utf8)),
                ODataMessage(
                    method: "PATCH", url: "/api/data/v9.2/salesorderdetails(lineitemnumber=1)", headers: headers,
                    body: Array(
                        #"{"salesorderid@odata.bind":"/salesorders(ordernumber='C000123')","quantity":3}"#.utf8)),
            ]),
            .single(
                ODataMessage(
                    method: "GET", url: "/api/data/v9.2/WhoAmI", headers: HTTPHeaders([("Accept", "application/json")]))
            ),
        ])
        let (contentType, body) = batch.encoded(boundary: "batch_p2c")
        #expect(contentType == "multipart/mixed; boundary=batch_p2c")
        let text = String(decoding: body, as: UTF8.self)
        #expect(text.hasPrefix("--batch_p2c\r\nContent-Type: multipart/mixed; boundary=changeset_"))
        #expect(
            text.contains(
                "Content-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nPATCH /api/data/v9.2/salesorders(ordernumber='C000123') HTTP/1.1\r\n"
            ))
        #expect(text.contains("Content-ID: 2\r\n"))
        #expect(text.hasSuffix("--batch_p2c--\r\n"))
        let read = try ODataBatch.decode(contentType: contentType, body: body)
        headers.add("Content-ID", "1")
        #expect(read.messages.count == 3)
        #expect(
            read.messages[0]
                == ODataMessage(
                    method: "PATCH", url: "/api/data/v9.2/salesorders(ordernumber='C000123')", headers: headers,
                    body: Array(#"{"name":"Order C000123"}"#.utf8)))
        #expect(read.messages[1].contentID == "2")
        #expect(read.messages[2].method == "GET" && read.messages[2].body.isEmpty)
        guard case .changeSet(let changes) = read.parts[0] else {
            Issue.record("the first part is not a change set")
            return
        }
        #expect(changes.count == 2)
    }

    @Test("A batch response in the documented shape: change set results and a GET's JSON, statuses and bodies")
    func batchResponse() throws {
        // The shape of the response example of "Execute batch operations using the Web API" ("Execute batch
        // operations using the Web API").
        let response = [
            "--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f",
            "Content-Type: multipart/mixed; boundary=changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abb",
            "",
            "--changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abb",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "Content-ID: 1",
            "",
            "HTTP/1.1 204 No Content",
            "OData-Version: 4.0",
            "Location: https://org.crm.dynamics.com/api/data/v9.2/tasks(a59c24e6-2f4b-ee11-be6f-000d3a993550)",
            "OData-EntityId: https://org.crm.dynamics.com/api/data/v9.2/tasks(a59c24e6-2f4b-ee11-be6f-000d3a993550)",
            "",
            "",
            "--changesetresponse_ff83b4f1-ab48-430c-b81c-926a2c596abb--",
            "--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "HTTP/1.1 400 Bad Request",
            "Content-Type: application/json; odata.metadata=minimal",
            "OData-Version: 4.0",
            "",
            #"{"error":{"code":"0x80040333","message":"A record with matching key values already exists."}}"#,
            "--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f--",
            "",
        ].joined(separator: "\r\n")
        let batch = try ODataBatch.decode(
            contentType: "multipart/mixed; boundary=batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f",
            body: Array(response.utf8))
        #expect(batch.messages.map(\.status) == [204, 400])
        #expect(batch.messages[0].contentID == "1")
        #expect(
            batch.messages[0].headers["OData-EntityId"]?.hasSuffix("tasks(a59c24e6-2f4b-ee11-be6f-000d3a993550)")
                == true)
        #expect(String(decoding: batch.messages[1].body, as: UTF8.self).contains(#""code":"0x80040333""#))
    }

    @Test(
        "A batch body that is not one says why",
        arguments: [
            ("multipart/mixed", "--b\r\n\r\nGET / HTTP/1.1\r\n\r\n--b--\r\n", "no boundary"),
            ("multipart/mixed; boundary=b", "--b\r\n\r\nGET / HTTP/1.1\r\n\r\n", "no closing delimiter"),
            (
                "multipart/mixed; boundary=b", "--b\r\nContent-Type: application/http\r\n\r\nNONSENSE\r\n--b--\r\n",
                "malformed start line"
            ),
        ])
    func malformed(contentType: String, body: String, message: String) {
        let error = #expect(throws: ODataBatch.FormatError.self) {
            try ODataBatch.decode(contentType: contentType, body: Array(body.utf8))
        }
        #expect(error?.description.contains(message) == true)
    }
}
