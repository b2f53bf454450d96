import Kafka
import ProspectToCash
import Runtime
import Topology

/// Everything one capture member needs besides the system's credentials.
public struct CaptureConfiguration: Sendable {
    /// The system read: `crm` (Dataverse change tracking). Default: `crm`.
    public var side: Side = .crm
    /// The streams captured; empty means every stream the side is a source of. Default: empty.
    public var streams: [SyncStream] = []
    public var kafka = KafkaConfiguration()
    /// The capture group: the state topic's partitions are divided among its members, and with
    /// them the tables. Default: `p2c-capture-<side>`.
    public var groupID: String?
    /// The legal entity (dataAreaId) the captured rows belong to: `ce_company` and the key's
    /// `<company>/`. Required.
    public var company = ""
    /// A table whose delta came back empty is read again after this long. Default: 5 s.
    public var pollInterval: Duration = .seconds(5)
    /// Rows per page (`odata.maxpagesize`; "Page results using OData": at most 5 000). Default: 500.
    public var pageSize: Int = 500
    /// `--side erp`: each record published is read again this long after, and its state then
    /// published again if it changed meanwhile (several receivers may publish one record's events
    /// in either order: F&O's data events carry no version). Zero: off. Default: zero.
    public var recheckAfter: Duration = .zero
    /// The address the webhook receiver listens on (an IPv4 address; 0.0.0.0: every interface).
    /// Default: 0.0.0.0.
    public var listenAddress = "0.0.0.0"
    /// The largest webhook post taken, in bytes: twice the 256 KB above which Dataverse strips a
    /// context's images and parameters ("Use webhooks to create external handlers for server
    /// events", Microsoft Learn). Default: 524 288.
    public var webhookMaxBodyBytes = 512 * 1024
    /// Webhook posts read and handled at once (more wait their turn): with
    /// `webhookMaxBodyBytes`, the most memory posts' bodies take. Default: 16.
    public var webhookMaxRequests = 16
    /// The generation of the maps the workers run: which columns a change event carries.
    public var generation: MapGeneration = .classic
    /// Session timeout of the consumer group member. Default: 45 s.
    public var sessionTimeout: Duration = .seconds(45)
    /// From SIGTERM to the end of `run()`: the page in hand is committed or given up (it is read
    /// again by the table's next owner). Default: 8 s.
    public var shutdownTimeout: Duration = .seconds(8)
    /// Unique per live member. Default: `p2c-capture-<side>-<host>-<random>`.
    public var transactionalID: String?

    public init() {}

    public var resolvedGroupID: String { groupID ?? "p2c-capture-\(side.rawValue)" }

    /// The compacted topic holding each table's delta link and its rows' keys.
    public static let stateTopic = "p2c.capture.state"

    /// After a failed read of a system (the HTTP client retried already), capture and bootstrap
    /// pause 500 ms, doubling to at most 30 s, and read again.
    public static let retryBackoff = Backoff(initial: .milliseconds(500), maximum: .seconds(30), jitter: false)
}
