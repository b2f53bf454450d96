import Connectors
import Foundation
import ProspectToCash
import Runtime
import Topology

/// Dynamics 365 Sales through the Dataverse Web API: the CRM side of the sync. Its rows carry no
/// legal entity of their own here, so a deployment names the one its rows belong to; a table is read
/// whole (change tracking's snapshot), so a load resumes only from a stored next link.
public struct DataverseAdapter: SystemAdapter {
    public init() {}

    public var side: Side { .crm }
    public var api: ServiceClient.API { .dataverse }
    public var settingsKey: String { "dataverse" }
    public var variablePrefix: String { "P2C_DATAVERSE" }
    public var metricsName: String { "dataverse" }
    /// A round writes its headers first and their lines in the next `$batch`, so 20 documents.
    public var batchDocuments: Int { 20 }
    /// `odata.maxpagesize` at most 5,000 ("Page results using OData").
    public var maxPageSize: Int { 5_000 }
    public var companyField: String? { nil }
    /// Change tracking polled, or webhooks posted to the receiver.
    public var changeModes: [String] { ["poll", "webhook"] }
    /// A post is read back by its row's id when it is taken.
    public var rechecksPosts: Bool { false }

    /// `WhoAmI` ("Use OAuth authentication with Dataverse").
    public func identify(_ client: ServiceClient) async throws -> [(name: String, value: String)] {
        [("user_id", try await client.whoAmI().uuidString.lowercased())]
    }

    /// Their application users' `systemuserid`s: who a change's `modifiedby` names.
    public func applyIdentities(
        _ clientIDs: [UUID], client: ServiceClient, missing: (UUID) -> Void
    ) async throws -> Set<UUID> {
        var users = Set<UUID>()
        for id in clientIDs {
            if let user = try await client.applicationUser(clientID: id) { users.insert(user) } else { missing(id) }
        }
        return users
    }

    public func steps(of kinds: [RecordKind], companies: [String]) throws -> [RecordStep] {
        guard companies.count == 1 else {
            throw UsageError("--companies must name the one legal entity of the CRM rows")
        }
        var tables = Set<String>()
        return kinds.filter { tables.insert($0.crmName).inserted }.map {
            RecordStep(kind: $0, set: $0.crmName, company: companies[0], description: $0.crmName)
        }
    }

    public func cursor(skipping skip: Int) -> String? { nil }

    public func recordSource(
        client: ServiceClient, company: String, generation: MapGeneration, bothWays: Bool
    ) -> any RecordSource {
        DataverseRecordSource(client: client, company: company, generation: generation, bothWays: bothWays)
    }

    public func changeFeed(
        client: ServiceClient, pageSize: Int, generation: MapGeneration
    ) -> (any ChangeFeed)? {
        DataverseChangeFeed(client: client, pageSize: pageSize, generation: generation)
    }

    public func contextReader(
        client: ServiceClient, streams: [SyncStream], generation: MapGeneration
    ) -> any ContextReader {
        DataverseContextReader(client: client, streams: streams, generation: generation)
    }

    public func sinks(clients: [ServiceClient]) -> DocumentSinks {
        guard let first = clients.first else { return DocumentSinks(sinks: [], requests: { [] }) }
        let schema = DataverseSchema(client: first)
        let sinks = clients.map { DataverseSink(client: $0, schema: schema) }
        return DocumentSinks(sinks: sinks) {
            [
                ("table_definitions", schema.reads.value), ("id_reads", sinks.reduce(0) { $0 + $1.idReads.value }),
                ("batches", sinks.reduce(0) { $0 + $1.batches.value }),
            ]
        }
    }
}
