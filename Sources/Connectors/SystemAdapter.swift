import Foundation
import ProspectToCash
import Topology

/// One system as capture, apply, bootstrap and reconcile use it. The `Dataverse` and
/// `FinanceOperations` modules each implement it; the code above it is written once, against this,
/// and never asks which system it holds.
public protocol SystemAdapter: Sendable {
    /// Which side of the sync the system is.
    var side: Side { get }
    /// How its `ServiceClient` speaks to it.
    var api: ServiceClient.API { get }
    /// Where its connection is configured: the configuration file's object (and how logs and
    /// `/metrics` name the system) and the prefix of its variables.
    var settingsKey: String { get }
    var variablePrefix: String { get }
    /// How `/metrics` names it (`system` label).
    var metricsName: String { get }
    /// Documents one write batch of apply holds unless configured. A `$batch` runs for the sum of
    /// its writes ("Service protection API limits": start with batches of about 10).
    var batchDocuments: Int { get }
    /// Records one read page may hold at most.
    var maxPageSize: Int { get }
    /// The field of a record's data that holds its company, as the maps carry it (nil: none).
    var companyField: String? { get }
    /// How capture hears of changes: the modes it offers, the first being the default.
    var changeModes: [String] { get }
    /// Whether a posted change may be read again later by its key (`recheckMs`): for changes
    /// posted in no documented order.
    var rechecksPosts: Bool { get }

    /// Asks the system who `client` is: a refused secret fails here. What to log of the answer.
    func identify(_ client: ServiceClient) async throws -> [(name: String, value: String)]
    /// How the system names the apply identities `clientIDs` in its changes; `missing` hears of
    /// each it does not know.
    func applyIdentities(
        _ clientIDs: [UUID], client: ServiceClient, missing: (UUID) -> Void
    ) async throws -> Set<UUID>

    /// The reads that load `kinds` (in their order) for `companies`; a table or entity set that
    /// several kinds share is read once. Throws a `UsageError` naming what the system needs.
    func steps(of kinds: [RecordKind], companies: [String]) throws -> [RecordStep]
    /// The cursor that resumes a step `skip` records in, when the system pages by count; nil when
    /// only a stored cursor can resume it.
    func cursor(skipping skip: Int) -> String?
    /// Its records page by page, as bootstrap and reconcile read them; `company` is the legal
    /// entity of rows that carry none, `bothWays` also reads the columns only the other way's maps
    /// write.
    func recordSource(
        client: ServiceClient, company: String, generation: MapGeneration, bothWays: Bool
    ) -> any RecordSource
    /// Its tables' changes as `p2c capture --mode poll` reads them, `pageSize` rows a page; nil
    /// when the system has no change feed to poll.
    func changeFeed(client: ServiceClient, pageSize: Int, generation: MapGeneration) -> (any ChangeFeed)?
    /// What a posted change holds, read back from the system (webhooks, data events).
    func contextReader(client: ServiceClient, streams: [SyncStream], generation: MapGeneration) -> any ContextReader
    /// Where apply writes documents: a sink per client (identity), sharing what they learn of the
    /// schema.
    func sinks(clients: [ServiceClient]) -> DocumentSinks
}

/// Apply's sinks into one system, and what they asked it besides their writes (for `/metrics`).
public struct DocumentSinks: Sendable {
    public var sinks: [any DocumentSink]
    public var requests: @Sendable () -> [(kind: String, value: Int)]

    public init(sinks: [any DocumentSink], requests: @escaping @Sendable () -> [(kind: String, value: Int)]) {
        self.sinks = sinks
        self.requests = requests
    }
}
