import Connectors
import ProspectToCash
import Runtime
import Synchronization

/// Dataverse's tables by change tracking ("Use change tracking to synchronize data with external
/// systems"): the columns the maps read, lookups as the natural keys of the rows they point to,
/// each row's version (`versionnumber`, else `modifiedon`) and who changed it (`modifiedby`).
public final class DataverseChangeFeed: ChangeFeed {
    private let reader: DataverseChangeReader
    private let records: DataverseRecords
    private let shapes = Mutex<[String: DataverseRecords.Shape]>([:])

    /// `pageSize` rows a page (`odata.maxpagesize`).
    public init(client: ServiceClient, pageSize: Int, generation: MapGeneration) {
        var reader = DataverseChangeReader(client: client)
        reader.pageSize = pageSize
        self.reader = reader
        records = DataverseRecords(client: client, schema: DataverseSchema(client: client), generation: generation)
    }

    public var requests: [(kind: String, value: Int)] { records.requests }

    public func page(of kind: RecordKind, from link: String?) async throws -> ChangePage {
        let shape = try await shape(of: kind)
        let page: DataverseChangePage
        do {
            page = try await reader.page(link, entitySet: shape.table.entitySet, select: shape.select)
        } catch let refused as DataverseChangeReader.LinkRefused {
            throw ChangeLinkRefused(refused.error.description)
        }
        var changes: [ChangePage.Change] = []
        for change in page.changes {
            switch change {
            case .row(let row):
                // The service always lists the primary id; a row without one is not a row.
                guard let id = row[shape.table.primaryID]?.stringValue else { continue }
                let record = try await records.record(of: row, shape: shape)
                let version =
                    row["versionnumber"].map { $0.stringValue ?? $0.jsonText } ?? row["modifiedon"]?.stringValue ?? ""
                changes.append(
                    .row(
                        ChangePage.Row(
                            id: id, version: version, record: record,
                            modifiedBy: row["_modifiedby_value"]?.stringValue, time: row["modifiedon"]?.stringValue)))
            case .deleted(let id):
                changes.append(.deleted(id: id.uuidString.lowercased()))
            }
        }
        switch page.next {
        case .page(let next): return ChangePage(changes: changes, next: .page(next))
        case .delta(let delta): return ChangePage(changes: changes, next: .delta(delta))
        }
    }

    private func shape(of kind: RecordKind) async throws -> DataverseRecords.Shape {
        if let known = shapes.withLock({ $0[kind.crmName] }) { return known }
        let shape = try await records.shape(of: kind)
        shapes.withLock { $0[kind.crmName] = shape }
        return shape
    }
}
