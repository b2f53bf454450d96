import Foundation
import ProspectToCash
import Testing
import Topology

/// Every row of every map p2c runs, in each generation of the maps, as one test case: the field
/// arrives where the row says, and a one-way row never flows backwards.
struct RowCase: Sendable, CustomTestStringConvertible {
    let generation: MapGeneration
    let kind: RecordKind
    let row: TableMap.Row
    var testDescription: String {
        "\(generation): \(kind.mapName): \(row.erpField) \(row.type.rawValue) \(row.crmColumn)"
    }
    var maps: [String: TableMap] { TableMap.maps(for: generation) }
    var mapper: Mapper { mappers[generation]! }

    static let all: [RowCase] = MapGeneration.allCases.flatMap { generation in
        RecordKind.kinds(for: generation).flatMap { kind in
            TableMap.maps(for: generation)[kind.mapName]!.rows.map {
                RowCase(generation: generation, kind: kind, row: $0)
            }
        }
    }
}

/// A mapper of each generation, with the test configuration.
let mappers: [MapGeneration: Mapper] = {
    var mappers: [MapGeneration: Mapper] = [:]
    for generation in MapGeneration.allCases {
        var configuration = testConfiguration()
        configuration.generation = generation
        do {
            mappers[generation] = try Mapper(configuration: configuration)
        } catch {
            fatalError("\(error)")
        }
    }
    return mappers
}()

/// ERP-owned fields never flow CRM → ERP (the line discount goes through the split instead).
let erpOwned: Set<String> = [
    "SALESPRICE", "SALESPRICEQUANTITY", "LINEDISCOUNTAMOUNT", "LINEDISCOUNTPERCENTAGE", "MULTILINEDISCOUNTAMOUNT",
    "MULTILINEDISCOUNTPERCENTAGE", "FIXEDPRICECHARGES", "TOTALDISCOUNTAMOUNT", "TOTALDISCOUNTPERCENTAGE",
]

/// Fields a business rule computes on the way, so a single-field test cannot see the row alone.
let ruleFields: Set<String> = ["SALESORDERPROCESSINGSTATUS"]

@Suite("Every map row")
struct MapRowTests {
    @Test("The maps hold what the reference lists")
    func mapCounts() {
        // The 13 prospect-to-cash maps and, for the party streams, CDS Parties and 4 party maps.
        #expect(TableMap.builtIn.count == 18)
        #expect(RowCase.all.filter { $0.generation == .party }.count == 488 + 30 + 2 + 14 + 5 + 12)
        #expect(TableMap.builtIn["CDS sales order lines -> salesorderdetails"]?.rows.count == 56)
        #expect(TableMap.classic.count == 18)
        // Classic: the current rows, plus the 37 account and 50 contact rows the party model took
        // out of the customer maps, less the party contact row of Customers V3 -> contacts.
        #expect(RowCase.all.filter { $0.generation == .classic }.count == 488 + 37 + 50 - 1)
        let accounts = TableMap.classic["Customers V3 -> accounts"]!.rows
        #expect(accounts.contains { $0.erpField == "ORGANIZATIONNAME" && $0.crmColumn == "name" })
        #expect(accounts.contains { $0.erpField == "PARTYNUMBER" && $0.crmColumn == "msdyn_partynumber" })
        for header in ["CDS sales quotation header -> quotes", "CDS sales order headers -> salesorders"] {
            let contact = TableMap.classic[header]!.rows.filter { $0.erpField == "CONTACTPERSONID" }
            #expect(contact.map(\.crmColumn) == ["msdyn_contactperson.msdyn_contactpersonid"])
            // Otherwise today's rows: the classic file's later drift is not taken.
            #expect(TableMap.classic[header]!.rows.count == TableMap.builtIn[header]!.rows.count)
        }
    }

    @Test(
        "ERP → CRM: the row's field arrives at its column, or nothing when the row flows the other way",
        arguments: RowCase.all.filter { $0.kind.stream.sources.contains(.erp) })
    func erpToCRM(_ test: RowCase) throws {
        let row = test.row, kind = test.kind
        let crmPath = columnPath(row.crmColumn)
        if row.erpField == "none" {
            guard row.type.flowsToCRM, let constant = row.constant else { return }
            let output = try #require(
                mapped(
                    event(kind, side: .erp, data: baseRecord(kind, side: .erp, number: "F000001")), .erpToCRM,
                    using: test.mapper))
            #expect(output.value(at: crmPath)?.lookupTextForTest == constant.lowercased())
            return
        }
        guard row.crmColumn != "none", row.erpField != kind.erpKey else { return }
        var data = baseRecord(kind, side: .erp, number: "F000001")
        let (input, expected) = sample(row, toCRM: true)
        data[row.erpField] = input
        let output = try #require(mapped(event(kind, side: .erp, data: data), .erpToCRM, using: test.mapper))
        if row.type.flowsToCRM {
            if !ruleFields.contains(row.erpField) {
                #expect(output.value(at: crmPath) == expected)
            }
        } else {
            let others = test.maps[kind.mapName]!.rows.filter {
                $0.erpField == row.erpField && $0.type.flowsToCRM && columnPath($0.crmColumn) == crmPath
            }
            if others.isEmpty { #expect(output.value(at: crmPath) == nil, "a CRM → ERP row flowed ERP → CRM") }
        }
    }

    @Test(
        "CRM → ERP: the row's column arrives at its field, or nothing when the row is one-way or ERP-owned",
        arguments: RowCase.all.filter { $0.kind.stream.sources.contains(.crm) })
    func crmToERP(_ test: RowCase) throws {
        let row = test.row, kind = test.kind
        if row.crmColumn == "none" {
            guard row.type.flowsToERP, let constant = row.constant else { return }
            let output = try #require(
                mapped(
                    event(kind, side: .crm, data: baseRecord(kind, side: .crm, number: number(for: kind))), .crmToERP,
                    using: test.mapper))
            #expect(output[row.erpField] == .string(constant))
            return
        }
        let crmPath = columnPath(row.crmColumn)
        // The line discount goes through the split rule, tested on its own (LineDiscountTests).
        guard row.erpField != "none", crmPath != kind.crmKey, row.crmColumn != "manualdiscountamount" else { return }
        var data = baseRecord(kind, side: .crm, number: number(for: kind))
        let (input, expected) = sample(row, toCRM: false)
        if crmPath.count > 1, var lookup = data[crmPath[0]]?.objectValue {
            lookup.set(path: Array(crmPath.dropFirst()), to: input)
            data[crmPath[0]] = .object(lookup)
        } else {
            data.set(path: crmPath, to: input)
        }
        let result = outcome(event(kind, side: .crm, data: data), .crmToERP, using: test.mapper)
        guard case .mapped(let outputs) = result else {
            Issue.record("not mapped: \(result)")
            return
        }
        let output = outputs[0].event.data
        let owned = (kind.role == .line || kind.role == .header) && erpOwned.contains(row.erpField)
        if row.type.flowsToERP && !owned {
            #expect(output[row.erpField] == expected)
        } else if !owned || kind.role == .header {
            let others = test.maps[kind.mapName]!.rows.filter {
                $0.erpField == row.erpField && $0.type.flowsToERP && !erpOwned.contains($0.erpField)
            }
            if others.isEmpty { #expect(output[row.erpField] == nil, "an ERP → CRM row flowed CRM → ERP") }
        }
    }

    /// A source value for the row and what the target must hold.
    private func sample(_ row: TableMap.Row, toCRM: Bool) -> (input: JSONValue, expected: JSONValue) {
        if row.crmColumn.contains(".Account(") {
            return toCRM
                ? (.string("US-001"), .object(JSONObject(["accountnumber": .string("US-001")])))
                : (.object(JSONObject(["accountnumber": .string("US-001")])), .string("US-001"))
        }
        if let pair = row.valueMap.last {
            return toCRM ? (.string(pair.erp), crmTyped(pair.crm)) : (crmTyped(pair.crm), .string(pair.erp))
        }
        let text = "v-\(row.erpField.lowercased())"
        return (.string(text), .string(text))
    }

    private func crmTyped(_ text: String) -> JSONValue {
        switch text.lowercased() {
        case "true": .bool(true)
        case "false": .bool(false)
        default: Int(text) != nil ? .number(text) : .string(text)
        }
    }
}

extension JSONValue {
    var lookupTextForTest: String? {
        switch self {
        case .string(let text): text.lowercased()
        case .number(let text): text
        case .bool(let flag): flag ? "true" : "false"
        default: nil
        }
    }
}
