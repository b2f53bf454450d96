import Foundation
import ProspectToCash
import Testing
import Topology

/// Every row of every map p2c runs, as one test case: the field arrives where the row says, and a
/// one-way row never flows backwards.
struct RowCase: Sendable, CustomTestStringConvertible {
    let kind: RecordKind
    let row: TableMap.Row
    var testDescription: String { "\(kind.mapName): \(row.erpField) \(row.type.rawValue) \(row.crmColumn)" }

    static let all: [RowCase] = RecordKind.all.flatMap { kind in
        TableMap.builtIn[kind.mapName]!.rows.map { RowCase(kind: kind, row: $0) }
    }
}

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
        #expect(TableMap.builtIn.count == 13)
        #expect(RowCase.all.count == 488)
        #expect(TableMap.builtIn["CDS sales order lines -> salesorderdetails"]?.rows.count == 56)
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
                mapped(event(kind, side: .erp, data: baseRecord(kind, side: .erp, number: "F000001")), .erpToCRM))
            #expect(output.value(at: crmPath)?.lookupTextForTest == constant.lowercased())
            return
        }
        guard row.crmColumn != "none", row.erpField != kind.erpKey else { return }
        var data = baseRecord(kind, side: .erp, number: "F000001")
        let (input, expected) = sample(row, toCRM: true)
        data[row.erpField] = input
        let output = try #require(mapped(event(kind, side: .erp, data: data), .erpToCRM))
        if row.type.flowsToCRM {
            if !ruleFields.contains(row.erpField) {
                #expect(output.value(at: crmPath) == expected)
            }
        } else {
            let others = TableMap.builtIn[kind.mapName]!.rows.filter {
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
                    event(kind, side: .crm, data: baseRecord(kind, side: .crm, number: number(for: kind))), .crmToERP))
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
        let result = outcome(event(kind, side: .crm, data: data), .crmToERP)
        guard case .mapped(let outputs) = result else {
            Issue.record("not mapped: \(result)")
            return
        }
        let output = outputs[0].event.data
        let owned = (kind.role == .line || kind.role == .header) && erpOwned.contains(row.erpField)
        if row.type.flowsToERP && !owned {
            #expect(output[row.erpField] == expected)
        } else if !owned || kind.role == .header {
            let others = TableMap.builtIn[kind.mapName]!.rows.filter {
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
