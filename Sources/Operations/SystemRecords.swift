import Connectors
import ProspectToCash
import Topology

/// Every record of a system's streams read through its API, as the workers' events carry them: by
/// record name (`ce_type` prefix), then `<company>/<number>` (a line: `#<sequence>` after it). What
/// `p2c reconcile` compares; the same reads as `p2c bootstrap`.
public enum SystemRecords {
    public typealias Records = [String: [String: JSONObject]]

    /// Reads the records of `kinds` from `adapter`'s system (on Dataverse every column the maps
    /// name, both ways), for `company` (the Dataverse rows' legal entity; the one F&O company
    /// read), `pageSize` a page.
    public static func read(
        _ adapter: any SystemAdapter, client: ServiceClient, kinds: [RecordKind], company: String,
        generation: MapGeneration, pageSize: Int = 1_000
    ) async throws -> Records {
        let side = adapter.side
        let source = adapter.recordSource(client: client, company: company, generation: generation, bothWays: true)
        var records: Records = [:]
        // Every kind, also of streams the side only receives: they are compared too.
        for step in try adapter.steps(of: kinds, companies: [company]) {
            var cursor: String?
            repeat {
                let page = try await source.page(step, cursor: cursor, size: pageSize)
                for record in page.records {
                    guard let key = key(of: record.data, kind: step.kind, side: side, company: record.company) else {
                        continue
                    }
                    var data = record.data
                    // The company field, as the maps carry it.
                    if let field = adapter.companyField, data[field] == nil { data[field] = .string(record.company) }
                    records[step.kind.name(on: side), default: [:]][key] = data
                }
                cursor = page.next
            } while cursor != nil
        }
        return records
    }

    /// `<company>/<number>`, a line's with `#<sequence>`: nil without a number.
    static func key(of data: JSONObject, kind: RecordKind, side: Side, company: String) -> String? {
        guard let text = data.value(at: kind.keyPath(on: side)).flatMap(\.keyText), !text.isEmpty else { return nil }
        var key = "\(company)/\(text)"
        if kind.role == .line, let line = data[RecordKind.lineNumberField(on: side)]?.keyText { key += "#" + line }
        return key
    }
}
