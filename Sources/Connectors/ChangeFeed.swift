import ProspectToCash

/// A system's tables read by change tracking, as `p2c capture --mode poll` polls them: a snapshot
/// page by page, then round after round of what changed since.
public protocol ChangeFeed: Sendable {
    /// One page of `kind`'s changes from `link` (nil: the first page of a new snapshot). Throws
    /// `ChangeLinkRefused` when the system no longer takes `link`: the table starts over.
    func page(of kind: RecordKind, from link: String?) async throws -> ChangePage
    /// What it asked the system besides the change reads, for `/metrics`.
    var requests: [(kind: String, value: Int)] { get }
}

/// One page of a table's changes, in the order the system lists them, and where to read next.
public struct ChangePage: Sendable {
    public var changes: [Change]
    public var next: Next

    /// A row created or changed, as the record of a change event; or a row removed, of which the
    /// system says only its id.
    public enum Change: Sendable {
        case row(Row)
        case deleted(id: String)
    }

    public struct Row: Sendable {
        /// The row's id in the system.
        public var id: String
        /// Its version (empty: unknown): a row listed again at the same version is the same change.
        public var version: String
        public var record: JSONObject
        /// Who made the change: a capture ignores its own fleet's writes by it.
        public var modifiedBy: String?
        /// When it changed, as the system stamped it.
        public var time: String?

        public init(id: String, version: String, record: JSONObject, modifiedBy: String?, time: String?) {
            self.id = id
            self.version = version
            self.record = record
            self.modifiedBy = modifiedBy
            self.time = time
        }
    }

    /// The next page of this round, or the link that starts the next round.
    public enum Next: Sendable, Equatable {
        case page(String)
        case delta(String)
    }

    public init(changes: [Change], next: Next) {
        self.changes = changes
        self.next = next
    }
}

/// A link the system no longer takes (an expired or unknown delta token): the table starts over
/// with a snapshot.
public struct ChangeLinkRefused: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "link refused: \(reason)" }
}
