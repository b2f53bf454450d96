import Foundation
import ProspectToCash
import Topology

/// A configuration with the defaults a demo company would have.
func testConfiguration() -> MappingConfiguration {
    var configuration = MappingConfiguration()
    configuration.companyDefaults["USMF"] = .init(site: "1", warehouse: "13", writeInCategory: "Write-in")
    configuration.numberSequences = .init(crm: #"C\d+"#, erp: #"F\d+"#)
    return configuration
}

let mapper: Mapper = {
    do {
        return try Mapper(configuration: testConfiguration())
    } catch {
        fatalError("\(error)")
    }
}()

/// The smallest valid record of `kind` on `side`: its number, and what its filters and rules need.
func baseRecord(_ kind: RecordKind, side: Side, number: String) -> JSONObject {
    var data = JSONObject()
    if side == .erp {
        data[kind.erpKey] = .string(number)
        if kind.erpName == "CustomersV3" {
            data["PARTYTYPE"] = .string(kind.crmName == "account" ? "Organization" : "Person")
        }
        if kind.stream == .invoices { data["SALESORDERNUMBER"] = .string("C000001") }
    } else {
        data.set(path: kind.crmKey, to: .string(number))
        switch kind.crmName {
        case "account": data["customertypecode"] = .number("3")
        case "contact": data["msdyn_sellable"] = .bool(true)
        case "salesorderdetail", "quotedetail":
            data["productid"] = .object(JSONObject(["msdyn_productnumber": .string("D0001")]))
        default: break
        }
    }
    return data
}

func number(for kind: RecordKind) -> String {
    switch kind.stream {
    case .orders, .quotes: "C000123"
    default: "N-42"
    }
}

func event(
    _ kind: RecordKind, side: Side, data: JSONObject, action: String = "upserted", company: String = "USMF"
)
    -> CloudEvent
{
    CloudEvent(
        id: "test-1", source: side.rawValue, type: "\(kind.name(on: side)).\(action)", time: "2026-11-22T10:00:00Z",
        company: company, data: data)
}

/// Maps and returns the first output's data, or nil when filtered or refused.
func mapped(_ input: CloudEvent, _ flow: Flow, using mapper: Mapper = mapper) -> JSONObject? {
    if case .mapped(let outputs) = mapper.map(input, flow: flow) { return outputs.first?.event.data }
    return nil
}

func outcome(_ input: CloudEvent, _ flow: Flow, using mapper: Mapper = mapper) -> MappingOutcome {
    mapper.map(input, flow: flow)
}

extension MappingOutcome {
    var errorCode: MappingError.Code? {
        if case .refused(let error) = self { return error.code }
        return nil
    }

    var isFiltered: Bool {
        if case .filtered = self { return true }
        return false
    }
}

/// Splits a column like `transactioncurrencyid.isocurrencycode` as the maps do.
func columnPath(_ column: String) -> [String] {
    if let range = column.range(of: ".Account(") { return [String(column[..<range.lowerBound])] }
    return column.split(separator: ".").map(String.init)
}
