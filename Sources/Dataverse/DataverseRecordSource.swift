import Connectors
import Foundation
import ProspectToCash

/// Dataverse's tables: a change-tracking snapshot read page by page ("Use change tracking to synchronize data with
/// external systems", "Page results using OData"), lookups as natural keys ("Query schema definitions"); the cursor
/// is the next link. Totals by `$count` (the service counts up to 5,000, so a bigger table's progress is an
/// estimate until it is read).
struct DataverseRecordSource: RecordSource {
    let client: ServiceClient
    let records: DataverseRecords
    let company: String

    init(client: ServiceClient, company: String, generation: MapGeneration, bothWays: Bool = false) {
        self.client = client
        records = DataverseRecords(
            client: client, schema: DataverseSchema(client: client), generation: generation, bothWays: bothWays)
        self.company = company
    }

    func total(_ step: RecordStep) async throws -> Int {
        let shape = try await records.shape(of: step.kind)
        let answer = try await client.get(
            "\(shape.table.entitySet)?$select=\(shape.table.primaryID)&$count=true&$top=1")
        return answer["@odata.count"].flatMap { Int($0.stringValue ?? $0.jsonText) } ?? 0
    }

    func page(
        _ step: RecordStep, cursor: String?, size: Int
    ) async throws -> (records: [SourceRecord], next: String?) {
        let shape = try await records.shape(of: step.kind)
        var reader = DataverseChangeReader(client: client)
        reader.pageSize = min(size, 5_000)
        let page = try await reader.page(cursor, entitySet: shape.table.entitySet, select: shape.select)
        var result: [SourceRecord] = []
        for case .row(let row) in page.changes {
            let data = try await records.record(of: row, shape: shape)
            guard let id = row[shape.table.primaryID]?.stringValue else { continue }
            let version = row["versionnumber"].map { $0.stringValue ?? $0.jsonText } ?? ""
            result.append(SourceRecord(data: data, company: company, id: "\(id)/\(version)"))
        }
        if case .page(let next) = page.next { return (result, next) }
        return (result, nil)
    }
}
