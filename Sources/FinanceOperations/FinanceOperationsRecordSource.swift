import Connectors
import Foundation
import ProspectToCash

/// F&O's entity sets in key order, `$skip`/`$top` pages: the cursor is the records done.
struct FinanceOperationsRecordSource: RecordSource {
    let schema: FinanceOperationsSchema
    let reader: FinanceOperationsReader

    init(client: ServiceClient) {
        schema = FinanceOperationsSchema(client: client)
        reader = FinanceOperationsReader(client: client)
    }

    func total(_ step: RecordStep) async throws -> Int {
        let entity = try await schema.entity(of: step.kind)
        return try await reader.page(entity, company: step.company, select: [], skip: 0, top: 0, count: true).total ?? 0
    }

    func page(
        _ step: RecordStep, cursor: String?, size: Int
    ) async throws -> (records: [SourceRecord], next: String?) {
        let entity = try await schema.entity(of: step.kind)
        let known = FinanceOperationsRecords.fields[entity.set] ?? []
        let select = Set(
            entity.keys.map(\.name)
                + entity.properties.values.filter { known.contains($0.name.uppercased()) }.map(\.name))
        let skip = cursor.flatMap { Int($0) } ?? 0
        let page = try await reader.page(entity, company: step.company, select: select.sorted(), skip: skip, top: size)
        let records = page.records.compactMap { record -> SourceRecord? in
            let (data, company) = FinanceOperationsRecords.record(
                record.fields.map { (name: $0.key, value: $0.value) }, entitySet: entity.set)
            guard let company else { return nil }
            let key = entity.keys.map { key in record[key.name].map { $0.stringValue ?? $0.jsonText } ?? "" }
                .joined(separator: "/")
            return SourceRecord(
                data: data, company: company, id: "\(key)/\(record["@odata.etag"]?.stringValue ?? "")")
        }
        return (records, page.records.isEmpty ? nil : String(skip + page.records.count))
    }
}
