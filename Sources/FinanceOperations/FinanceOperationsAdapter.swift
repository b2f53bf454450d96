import Connectors
import Foundation
import ProspectToCash
import Runtime
import Topology

/// Dynamics 365 Finance and Operations through its OData data entities: the ERP side of the sync.
/// Its records carry their legal entity (`dataAreaId`) and are read across companies or for the
/// companies named; entity sets page by count, so a load resumes from the records it had done.
public struct FinanceOperationsAdapter: SystemAdapter {
    public init() {}

    public var side: Side { .erp }
    public var api: ServiceClient.API { .financeOperations }
    public var settingsKey: String { "fno" }
    public var variablePrefix: String { "P2C_FNO" }
    public var metricsName: String { "fno" }
    /// A document's header and lines go in one change set, about twice the writes of a
    /// Dataverse round for as many documents: 10.
    public var batchDocuments: Int { 10 }
    /// `$top` at most 10,000 a page ("Open Data Protocol (OData)").
    public var maxPageSize: Int { 10_000 }
    public var companyField: String? { "dataAreaId" }
    /// Data events posted to the receiver.
    public var changeModes: [String] { ["webhook"] }
    /// Data events come in no documented order: a record may be read again later.
    public var rechecksPosts: Bool { true }

    /// F&O has no "who am I": one record read proves the identity.
    public func identify(_ client: ServiceClient) async throws -> [(name: String, value: String)] {
        _ = try await client.get("SalesOrderOriginCodes?cross-company=true&$top=1&$select=OriginCode")
        return []
    }

    /// Data events name the Entra application that made a change by its client id.
    public func applyIdentities(
        _ clientIDs: [UUID], client: ServiceClient, missing: (UUID) -> Void
    ) async throws -> Set<UUID> {
        Set(clientIDs)
    }

    public func steps(of kinds: [RecordKind], companies: [String]) throws -> [RecordStep] {
        var sets = Set<String>()
        let scopes: [String?] = companies.isEmpty ? [nil] : companies
        return kinds.compactMap { kind in kind.erpEntitySet.map { (kind, $0) } }
            .filter { sets.insert($0.1).inserted }
            .flatMap { kind, set in
                scopes.map { RecordStep(kind: kind, set: set, company: $0, description: "\(set)@\($0 ?? "*")") }
            }
    }

    public func cursor(skipping skip: Int) -> String? { String(skip) }

    public func recordSource(
        client: ServiceClient, company: String, generation: MapGeneration, bothWays: Bool
    ) -> any RecordSource {
        FinanceOperationsRecordSource(client: client)
    }

    public func changeFeed(
        client: ServiceClient, pageSize: Int, generation: MapGeneration
    ) -> (any ChangeFeed)? {
        nil
    }

    public func contextReader(
        client: ServiceClient, streams: [SyncStream], generation: MapGeneration
    ) -> any ContextReader {
        FinanceOperationsContextReader(schema: FinanceOperationsSchema(client: client), streams: streams)
    }

    public func sinks(clients: [ServiceClient]) -> DocumentSinks {
        guard let first = clients.first else { return DocumentSinks(sinks: [], requests: { [] }) }
        let schema = FinanceOperationsSchema(client: first)
        let sinks = clients.map { FinanceOperationsSink(client: $0, schema: schema) }
        return DocumentSinks(sinks: sinks) {
            [
                ("metadata", schema.reads.value), ("existence_reads", sinks.reduce(0) { $0 + $1.existenceReads.value }),
                ("batches", sinks.reduce(0) { $0 + $1.batches.value }),
            ]
        }
    }
}
