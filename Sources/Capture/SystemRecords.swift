import Connectors
import ProspectToCash
import Topology

/// Every record of a side's streams read through its API, as the workers' events carry them: by
/// record name (`ce_type` prefix), then `<company>/<number>` (a line: `#<sequence>` after it). What
/// `p2c reconcile` compares; the same reads as `p2c bootstrap`.
public enum SystemRecords {
    public typealias Records = [String: [String: JSONObject]]

    /// Reads `side`'s records of `kinds` (on Dataverse every column the maps name, both ways), for `company` (the CRM rows' legal entity; the ERP's one
    /// company read), `pageSize` a page.
    public static func read(
        side: Side, client: ServiceClient, kinds: [RecordKind], company: String, generation: MapGeneration,
        pageSize: Int = 1_000
    ) async throws -> Records {
        let source: any BootstrapSource =
            side == .erp
            ? FinanceOperationsBootstrapSource(client: client)
            : DataverseBootstrapSource(client: client, company: company, generation: generation, bothWays: true)
        var records: Records = [:]
        var read = Set<String>()
        // Every kind, also of streams the side only receives: they are compared too.
        for kind in kinds {
            if side == .erp && kind.erpEntitySet == nil { continue }
            // An entity set (customers: accounts and contacts) is read once.
            guard read.insert(side == .erp ? kind.erpEntitySet! : kind.crmName).inserted else { continue }
            let step = Bootstrap.Step(kind: kind, side: side, company: side == .erp ? company : nil)
            var cursor: String?
            repeat {
                let page = try await source.page(step, cursor: cursor, size: pageSize)
                for record in page.records {
                    guard let key = key(of: record.data, kind: kind, side: side, company: record.company) else {
                        continue
                    }
                    var data = record.data
                    // F&O's company field, as the maps carry it.
                    if side == .erp && data["dataAreaId"] == nil { data["dataAreaId"] = .string(record.company) }
                    records[kind.name(on: side), default: [:]][key] = data
                }
                cursor = page.next
            } while cursor != nil
        }
        return records
    }

    /// `<company>/<number>`, a line's with `#<sequence>`: nil without a number.
    static func key(of data: JSONObject, kind: RecordKind, side: Side, company: String) -> String? {
        let number = side == .erp ? data[kind.erpKey] : data.value(at: kind.crmKey)
        guard let text = number.flatMap(\.keyText), !text.isEmpty else { return nil }
        var key = "\(company)/\(text)"
        if kind.role == .line, let line = data[RecordKind.lineNumberField(on: side)]?.keyText { key += "#" + line }
        return key
    }
}
