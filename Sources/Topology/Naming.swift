/// The system a topic belongs to.
public enum Side: String, Sendable, CaseIterable, Codable {
    case crm, erp

    /// The other system.
    public var other: Side { self == .crm ? .erp : .crm }
}

/// A prospect-to-cash stream: one kind of business record, flowing one or both ways.
public enum SyncStream: String, Sendable, CaseIterable, Codable {
    case customers, contacts, products, quotes, orders, invoices, origins
    /// The party and global address book streams, synced only by the `party` generation of the maps:
    /// parties (names), postal addresses (locations, their history, and which party uses which),
    /// electronic addresses (e-mail, phone, URL).
    case parties, postaladdresses, electronicaddresses

    /// The sides whose changes this stream carries to the other side (the direction the stream table of the README
    /// gives).
    public var sources: Set<Side> {
        switch self {
        case .customers, .contacts, .quotes, .orders, .parties, .postaladdresses, .electronicaddresses: [.crm, .erp]
        case .products, .invoices, .origins: [.erp]
        }
    }

    /// Whether only the party generation of the maps syncs this stream.
    public var isParty: Bool { [.parties, .postaladdresses, .electronicaddresses].contains(self) }
}

/// What a topic holds.
public enum Role: String, Sendable, CaseIterable, Codable {
    /// A system's own changes, read by the workers.
    case changes
    /// What the workers publish for a system to apply.
    case inbound
    /// Dead letters of a changes topic, with the reason they were refused.
    case dlq
    /// Writes of an inbound topic the target system refused, with its status and error code.
    case inboundDLQ = "inbound-dlq"
    /// p2c's own state, compacted: capture's delta links (`p2c.capture.state`).
    case state

    /// The name a topic of this role has for `side` and `stream`.
    public func topicName(side: Side, stream: SyncStream) -> String {
        switch self {
        case .changes: "\(side.rawValue).\(stream.rawValue).changes"
        case .inbound: "\(side.rawValue).\(stream.rawValue).inbound"
        case .dlq: "\(side.rawValue).\(stream.rawValue).changes.dlq"
        case .inboundDLQ: "\(side.rawValue).\(stream.rawValue).inbound.dlq"
        case .state: "p2c.state"
        }
    }
}

/// A direction of sync, run by its own consumer group of workers.
public enum Flow: String, Sendable, CaseIterable, Codable {
    case crmToERP = "crm-to-erp"
    case erpToCRM = "erp-to-crm"

    /// The side whose changes the flow reads.
    public var source: Side { self == .crmToERP ? .crm : .erp }
    /// The side the flow writes to.
    public var target: Side { source.other }

    /// The flow that reads `side`'s changes.
    public init(source side: Side) { self = side == .crm ? .crmToERP : .erpToCRM }
}
