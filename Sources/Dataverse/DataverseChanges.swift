import Connectors
import Foundation
import ProspectToCash
import Runtime

/// One page of a table's changes ("Use change tracking to synchronize data with external systems"), in the order
/// the service lists them: rows created or changed (with the `$select`ed columns) and rows deleted; and where to
/// read next.
public struct DataverseChangePage: Sendable {
    public var changes: [Change]
    /// The next page of this round (`@odata.nextLink`), or the delta link that starts the next
    /// round (`@odata.deltaLink`).
    public var next: Link

    public enum Change: Sendable {
        case row(JSONObject)
        case deleted(UUID)
    }

    public enum Link: Sendable, Equatable {
        case page(String)
        case delta(String)
    }
}

/// Reads a table's changes by change tracking ("Use change tracking to synchronize data with external systems"): a
/// snapshot with `Prefer: odata.track-changes`, paged by `odata.maxpagesize` ("Page results using OData"), then its
/// delta link, round after round.
public struct DataverseChangeReader: Sendable {
    public let client: ServiceClient
    public var pageSize = 500

    public init(client: ServiceClient) { self.client = client }

    /// What a link refused: an expired or unknown delta token (the service keeps them 7 days by
    /// default; its error is not documented, so any 4xx but 401 and 429 counts), after which the
    /// table starts over with a snapshot.
    public struct LinkRefused: Error, Sendable, CustomStringConvertible {
        public var error: ServiceError
        public var description: String { "delta link refused: \(error)" }
    }

    /// Reads `link` (a next or delta link as the service gave it), or when nil the first page of a
    /// new snapshot of `entitySet` with the `select` columns.
    public func page(_ link: String?, entitySet: String, select: [String]) async throws -> DataverseChangePage {
        let resource: String
        if let link {
            guard let range = link.range(of: "/api/data/v9.2/") else {
                throw ServiceError(status: 0, code: "bad_link", message: "not a Web API link: \(link)")
            }
            resource = String(link[range.upperBound...])
        } else {
            resource = "\(entitySet)?$select=\(select.joined(separator: ","))"
        }
        let answer = try await client.send(
            "GET", resource,
            headers: HTTPHeaders([("Prefer", "odata.track-changes,odata.maxpagesize=\(pageSize)")]))
        guard answer.status == 200, let json = answer.json else {
            let error = ServiceError(answer)
            if link != nil && (400..<500).contains(answer.status) && answer.status != 401 && answer.status != 429 {
                throw LinkRefused(error: error)
            }
            throw error
        }
        var page = DataverseChangePage(changes: [], next: .page(""))
        if case .array(let values)? = json["value"] {
            for case .object(let value) in values {
                // A removed row: its context ends in $deletedEntity and it carries only its id.
                if value["@odata.context"]?.stringValue?.hasSuffix("$deletedEntity") == true {
                    if let id = value["id"]?.stringValue.flatMap(UUID.init(uuidString:)) {
                        page.changes.append(.deleted(id))
                    }
                } else {
                    page.changes.append(.row(value))
                }
            }
        }
        if let next = json["@odata.nextLink"]?.stringValue {
            page.next = .page(next)
        } else if let delta = json["@odata.deltaLink"]?.stringValue {
            page.next = .delta(delta)
        } else {
            throw ServiceError(
                status: 200, code: "unexpected_answer", message: "\(entitySet): neither a next nor a delta link")
        }
        return page
    }
}
