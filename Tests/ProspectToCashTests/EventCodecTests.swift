import Foundation
import ProspectToCash
import Testing
import Topology

@Suite("CloudEvents and JSON")
struct EventCodecTests {
    private let sample = CloudEvent(
        id: "crm.orders.changes/3/1042", source: "crm", type: "salesorderdetail.upserted", time: "2026-11-22T10:00:00Z",
        subject: "USMF/C000123", company: "USMF", origin: nil, causationID: "a1",
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        data: JSONObject([
            "quantity": .number("3"), "manualdiscountamount": .number("10.00"),
            "description": .string("Widget \"XL\" ✓"),
            "salesorderid": .object(JSONObject(["msdyn_salesordernumber": .string("C000123")])),
        ]))

    @Test("Binary mode: attributes in ce_ headers, the record in the value, and back unchanged")
    func binaryRoundTrip() throws {
        let headers = sample.headers
        #expect(headers.first?.name == "ce_specversion")
        #expect(headers.contains { $0.name == "content-type" && $0.value == Array("application/json".utf8) })
        #expect(!headers.contains { $0.name == "ce_origin" })
        let decoded = try CloudEvent(headers: headers.map { ($0.name, Optional($0.value)) }, value: sample.value)
        #expect(decoded == sample)
    }

    @Test("Binary mode in, binary mode out: the same outputs, headers and bytes as mapping the decoded event")
    func binaryMapping() throws {
        let mapper = try Mapper(configuration: testConfiguration())
        var attributes = CloudEvent.Attributes()
        for header in sample.headers { attributes.read(header: header.name, value: header.value) }
        let direct = mapper.map(attributes: attributes, value: sample.value, flow: .crmToERP, origin: sample.id)
        let decoded = mapper.map(
            try CloudEvent(headers: sample.headers.map { ($0.name, Optional($0.value)) }, value: sample.value),
            flow: .crmToERP)
        guard case .mapped(let outputs) = direct, case .mapped(let expected) = decoded else {
            Issue.record("not mapped: \(direct), \(decoded)")
            return
        }
        #expect(outputs == expected)
        let output = try #require(outputs.first)
        var headers: [(String, [UInt8])] = []
        output.forEachHeader { headers.append(($0, $1)) }
        #expect(headers.map(\.0) == output.attributes.headers.map(\.name))
        #expect(headers.map(\.1) == output.attributes.headers.map(\.value))
        #expect(output.attributes.causationID == sample.id)
        #expect(output.event.data["SALESORDERNUMBER"] == .string("C000123"))
        #expect(output.event.data["LINEDISCOUNTAMOUNT"] == .number("3.33"))
    }

    @Test("A long text with escapes and other scripts anywhere is copied to the output as it reads")
    func longValues() throws {
        let text = String(repeating: "Lagerplatz \"Süd\" \\ Reihe 7\n\t✓ ", count: 400) + "\u{01}end"
        var event = sample
        event.data["description"] = .string(text)
        let result = mapper.map(event, flow: .crmToERP)
        guard case .mapped(let outputs) = result else {
            Issue.record("not mapped: \(result)")
            return
        }
        let output = try #require(outputs.first)
        #expect(output.value.count > 12_000)
        #expect(output.event.data.fields.contains { $0.value == .string(text) })
        #expect(try JSONParser.parse(output.value) == .object(output.event.data))
    }

    @Test("Structured mode: one JSON object with data, and back unchanged")
    func structuredRoundTrip() throws {
        let text = sample.structured.jsonText
        #expect(text.hasPrefix(#"{"specversion":"1.0","id":"crm.orders.changes/3/1042""#))
        let decoded = try CloudEvent(structured: Array(text.utf8))
        #expect(decoded == sample)
    }

    @Test("Decimals keep their exact digits through parse and write")
    func exactDecimals() throws {
        let text = #"{"a":3.33,"b":-0.01,"c":10.00,"d":1e-7,"e":123456789012345678901234567890.123}"#
        let value = try JSONParser.parse(text)
        #expect(value.jsonText == text)
        #expect(value.objectValue?["a"]?.decimalNumber == DecimalNumber("3.33"))
        #expect(JSONValue.string("12.345").decimalNumber == DecimalNumber("12.345"))
        #expect(JSONValue.string("twelve").decimalNumber == nil)
    }

    @Test("Strings: escapes, surrogate pairs and control characters survive a round trip")
    func strings() throws {
        let value = try JSONParser.parse(#"["a\"b\\c\/d\n\t\u00e9\ud83d\ude00\u0001"]"#)
        #expect(value == .array([.string("a\"b\\c/d\n\té😀\u{01}")]))
        #expect(try JSONParser.parse(value.jsonText) == value)
    }

    @Test(
        "Malformed JSON is refused with where, never a crash",
        arguments: [
            "", "{", "[1,]", "{\"a\":}", "{\"a\" 1}", "01", "1.", "-", "tru", "\"unterminated", "\"\\x\"",
            "\"\\ud800\"",
            "{\"a\":1,\"a\":2}", "[1] 2", String(repeating: "[", count: 100) + String(repeating: "]", count: 100),
            "\"\u{01}\"", "nan",
        ])
    func malformedJSON(text: String) {
        #expect(throws: JSONParseError.self) { _ = try JSONParser.parse(text) }
    }

    @Test("Nested objects: many keys scan in place; a duplicate key among them is refused, escaped or not")
    func nestedDuplicateKeys() throws {
        let keys = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        for text in [#"{"a":{"# + keys + "}}", #"{"a":[{"# + keys + #"}],"b":{"k":1}}"#] {
            let value = try JSONParser.parseLazily(Array(text.utf8))
            #expect(value.objectValue?.fields.count == (text.hasPrefix(#"{"a":["#) ? 2 : 1))
        }
        for text in [
            #"{"a":{"# + keys + #","k17":0}}"#, #"{"a":{"# + keys + #","k\u0031\u0037":0}}"#,
            #"{"a":[{"k":1,"k":2}]}"#,
        ] {
            #expect(throws: JSONParseError.self) { _ = try JSONParser.parseLazily(Array(text.utf8)) }
        }
    }

    @Test("A lookup of one member maps the same in every spelling; a broken one is refused")
    func singleMemberLookups() throws {
        let mapper = try Mapper(configuration: testConfiguration())
        var attributes = CloudEvent.Attributes()
        for header in sample.headers { attributes.read(header: header.name, value: header.value) }
        func outcome(_ lookup: String) -> MappingOutcome {
            let value =
                #"{"quantity":3,"manualdiscountamount":10.00,"salesorderid":"# + lookup
                + #","productid":{"msdyn_productnumber":"D0001"}}"#
            return mapper.map(attributes: attributes, value: Array(value.utf8), flow: .crmToERP, origin: "t/0/1")
        }
        let plain = outcome(#"{"msdyn_salesordernumber":"C000123"}"#)
        guard case .mapped(let outputs) = plain else {
            Issue.record("not mapped: \(plain)")
            return
        }
        #expect(outputs[0].event.data["SALESORDERNUMBER"] == .string("C000123"))
        #expect(outputs[0].event.data["PRODUCTNUMBER"] == .string("D0001"))
        for spelling in [
            #"{ "msdyn_salesordernumber" : "C000123" }"#, #"{"msdyn_salesordernumber":"C\u0030\u0030\u0030123"}"#,
            #"{"msdyn_salesordernumber":"C000123","name":"x"}"#, #"{"name":"x","msdyn_salesordernumber":"C000123"}"#,
            #"{"msdyn_salesorde\u0072number":"C000123"}"#,
        ] {
            // The same record (an escaped value is copied as it is written: equal text, other bytes).
            guard case .mapped(let spelled) = outcome(spelling) else {
                Issue.record("not mapped: \(spelling)")
                continue
            }
            #expect(spelled.map(\.event) == outputs.map(\.event), "\(spelling)")
        }
        for broken in [
            #"{"msdyn_salesordernumber":"C000123""#, #"{"msdyn_salesordernumber":"C000123"]"#,
            #"{"msdyn_salesordernumber":"C000123",}"#, #"{"msdyn_salesordernumber":"C000\q"}"#,
            "{\"msdyn_salesordernumber\":\"C00\u{01}\"}",
        ] {
            guard case .refused(let error) = outcome(broken) else {
                Issue.record("not refused: \(broken)")
                continue
            }
            #expect(error.code == .malformedJSON, "\(broken)")
        }
    }

    @Test("Invalid UTF-8 in a string is refused")
    func invalidUTF8() {
        #expect(throws: JSONParseError.self) { _ = try JSONParser.parse([0x22, 0xC3, 0x28, 0x22]) }
    }
}

/// A corpus of bad events, each with the code it must be refused with.
@Suite("Refused events")
struct RefusedEventTests {
    static let corpus: [(label: String, line: String, flow: Flow, code: MappingError.Code)] = [
        ("not JSON", "{oops", .crmToERP, .malformedJSON),
        ("an array", "[1,2]", .crmToERP, .notAnObject),
        (
            "data not an object",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"salesorder.upserted","data":[1]}"#, .crmToERP,
            .notAnObject
        ),
        (
            "no data", #"{"specversion":"1.0","id":"1","source":"crm","type":"salesorder.upserted"}"#, .crmToERP,
            .notAnObject
        ),
        (
            "no id", #"{"specversion":"1.0","source":"crm","type":"salesorder.upserted","data":{}}"#, .crmToERP,
            .missingAttribute
        ),
        (
            "no specversion", #"{"id":"1","source":"crm","type":"salesorder.upserted","data":{}}"#, .crmToERP,
            .missingAttribute
        ),
        (
            "specversion 0.3", #"{"specversion":"0.3","id":"1","source":"crm","type":"x.upserted","data":{}}"#,
            .crmToERP, .unsupportedSpecVersion
        ),
        (
            "attribute not a string", #"{"specversion":"1.0","id":1,"source":"crm","type":"x.upserted","data":{}}"#,
            .crmToERP, .wrongFieldType
        ),
        (
            "unknown record",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"lead.upserted","company":"USMF","data":{}}"#,
            .crmToERP, .unknownType
        ),
        (
            "unknown action",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"salesorder.created","company":"USMF","data":{}}"#,
            .crmToERP, .unknownType
        ),
        (
            "wrong source",
            #"{"specversion":"1.0","id":"1","source":"erp","type":"salesorder.upserted","company":"USMF","data":{}}"#,
            .crmToERP, .wrongDirection
        ),
        (
            "products from the CRM",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"product.upserted","company":"USMF","data":{"msdyn_productnumber":"P1"}}"#,
            .crmToERP, .wrongDirection
        ),
        (
            "no company",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"salesorder.upserted","data":{"msdyn_salesordernumber":"C1"}}"#,
            .crmToERP, .missingCompany
        ),
        (
            "no key",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"salesorder.upserted","company":"USMF","data":{"name":"x"}}"#,
            .crmToERP, .missingKey
        ),
        (
            "empty key",
            #"{"specversion":"1.0","id":"1","source":"erp","type":"SalesOrderHeader.upserted","company":"USMF","data":{"SALESORDERNUMBER":""}}"#,
            .erpToCRM, .missingKey
        ),
        (
            "key not a string",
            #"{"specversion":"1.0","id":"1","source":"erp","type":"SalesOrderHeader.upserted","company":"USMF","data":{"SALESORDERNUMBER":42}}"#,
            .erpToCRM, .wrongFieldType
        ),
        (
            "subject mismatch",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"salesorder.upserted","company":"USMF","subject":"DEMF/C1","data":{"msdyn_salesordernumber":"C1"}}"#,
            .crmToERP, .keyMismatch
        ),
        (
            "dataAreaId disagrees",
            #"{"specversion":"1.0","id":"1","source":"erp","type":"SalesOrderHeader.upserted","company":"USMF","data":{"SALESORDERNUMBER":"F1","dataAreaId":"DEMF"}}"#,
            .erpToCRM, .keyMismatch
        ),
        (
            "lookup as a string",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"salesorder.upserted","company":"USMF","data":{"msdyn_salesordernumber":"C1","transactioncurrencyid":"USD"}}"#,
            .crmToERP, .wrongFieldType
        ),
        (
            "object in a plain field",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"salesorder.upserted","company":"USMF","data":{"msdyn_salesordernumber":"C1","emailaddress":{"a":1}}}"#,
            .crmToERP, .wrongFieldType
        ),
        (
            "unknown option value",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"salesorder.upserted","company":"USMF","data":{"msdyn_salesordernumber":"C1","msdyn_salesorderpromisingmethod":7}}"#,
            .crmToERP, .unknownEnumValue
        ),
        (
            "unknown ERP enum",
            #"{"specversion":"1.0","id":"1","source":"erp","type":"SalesOrderHeader.upserted","company":"USMF","data":{"SALESORDERNUMBER":"F1","SALESORDERPROCESSINGSTATUS":"teleported"}}"#,
            .erpToCRM, .unknownEnumValue
        ),
        (
            "bad decimal",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"salesorderdetail.upserted","company":"USMF","data":{"salesorderid":{"msdyn_salesordernumber":"C1"},"productid":{"msdyn_productnumber":"P"},"quantity":"lots","manualdiscountamount":1}}"#,
            .crmToERP, .badDecimal
        ),
        (
            "no party type",
            #"{"specversion":"1.0","id":"1","source":"erp","type":"CustomersV3.upserted","company":"USMF","data":{"CUSTOMERACCOUNT":"US-1"}}"#,
            .erpToCRM, .missingField
        ),
        (
            "number clash",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"quote.upserted","company":"USMF","data":{"msdyn_quotenumber":"Q-9"}}"#,
            .crmToERP, .numberSequenceClash
        ),
        (
            "company not allowed",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"salesorder.upserted","company":"ZZZZ","data":{"msdyn_salesordernumber":"C1"}}"#,
            .crmToERP, .companyNotAllowed
        ),
        (
            "no warehouse",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"quotedetail.upserted","company":"DEMF","data":{"quoteid":{"msdyn_quotenumber":"C1"},"productid":{"msdyn_productnumber":"P"}}}"#,
            .crmToERP, .missingSiteOrWarehouse
        ),
        (
            "zero quantity discount",
            #"{"specversion":"1.0","id":"1","source":"crm","type":"quotedetail.upserted","company":"USMF","data":{"quoteid":{"msdyn_quotenumber":"C1"},"productid":{"msdyn_productnumber":"P"},"quantity":0,"manualdiscountamount":1}}"#,
            .crmToERP, .invalidQuantity
        ),
    ]

    @Test("Each bad event is refused with its code", arguments: corpus.indices)
    func refused(index: Int) throws {
        let entry = Self.corpus[index]
        var configuration = testConfiguration()
        configuration.companies = ["USMF", "DEMF"]
        let strict = try Mapper(configuration: configuration)
        let result: MappingOutcome
        do {
            let event = try CloudEvent(structured: Array(entry.line.utf8))
            result = strict.map(event, flow: entry.flow, origin: "t/0/1")
            // The worker's way in: headers and value bytes, read in place. Same outcome.
            var attributes = CloudEvent.Attributes()
            for header in event.headers { attributes.read(header: header.name, value: header.value) }
            #expect(
                strict.map(attributes: attributes, value: event.value, flow: entry.flow, origin: "t/0/1") == result,
                "\(entry.label)")
        } catch {
            result = .refused(error)
        }
        #expect(result.errorCode == entry.code, "\(entry.label)")
    }

    @Test("A Kafka value that is empty, not JSON or not an object is refused in binary mode too")
    func refusedValues() throws {
        let mapper = try Mapper(configuration: testConfiguration())
        var attributes = CloudEvent.Attributes()
        for (name, value) in [
            ("ce_specversion", "1.0"), ("ce_id", "1"), ("ce_source", "crm"), ("ce_type", "salesorder.upserted"),
        ] {
            attributes.read(header: name, value: Array(value.utf8))
        }
        for (value, code) in [
            (nil, MappingError.Code.notAnObject), ([], .notAnObject), (Array("{oops".utf8), .malformedJSON),
            (Array("[1]".utf8), .notAnObject), (Array(#"{"a":1,"a":2}"#.utf8), .malformedJSON),
            (Array(#"{"a":"\u00e9","\u0061":2}"#.utf8), .malformedJSON),
        ] as [([UInt8]?, MappingError.Code)] {
            let outcome = mapper.map(attributes: attributes, value: value, flow: .crmToERP, origin: "t/0/1")
            #expect(outcome.errorCode == code, "\(String(decoding: value ?? [], as: UTF8.self))")
        }
    }

    @Test("The corpus covers every refusal code but one that needs a write-in line without a category")
    func corpusCoversCodes() {
        let covered = Set(Self.corpus.map(\.code))
        #expect(Set(MappingError.Code.allCases).subtracting(covered) == [.writeInWithoutCategory])
    }
}
