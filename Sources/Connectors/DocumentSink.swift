import OData
import ProspectToCash
import Runtime

/// A system that apply writes documents into: each document the events of one key, in order.
public protocol DocumentSink: Sendable {
    /// Writes `documents` in one round; one outcome per item, in the documents' order.
    func apply(_ documents: [[ApplyItem]]) async -> [[ApplyOutcome]]
}

/// One change event to write: its table (`ce_type` without the action), whether it deletes, and
/// its record.
public struct ApplyItem: Sendable {
    public var table: String
    public var deleted: Bool
    public var record: JSONObject
    /// The legal entity (`ce_company`): F&O's `dataAreaId`.
    public var company: String?
    /// It waited for a reference before: it goes alone, after its document's other writes.
    public var waiting = false

    public init(table: String, deleted: Bool, record: JSONObject, company: String? = nil, waiting: Bool = false) {
        self.table = table
        self.deleted = deleted
        self.record = record
        self.company = company
        self.waiting = waiting
    }
}

/// What became of one item.
public enum ApplyOutcome: Sendable, Equatable {
    case applied
    /// Refused for good: dead-letter it with `code` (`http_<status> <system code>` or p2c's own).
    case refused(code: String, message: String, request: String?)
    /// The service asked for a pause (429 / `Retry-After`): send again after it.
    case throttled(retryAfter: Duration)
    /// No answer, or a 5xx: send again after a backoff.
    case unavailable(String)
    /// A row it refers to does not exist yet (a line before its header): wait and send again.
    case referenceMissing(String)
    /// Not sent: it follows, in its document, a write to the same row (or one it refers to)
    /// that must land first.
    case notSent
}

/// A sink that writes in `$batch` requests and reads a failed answer into an outcome.
package protocol BatchingSink {
    var client: ServiceClient { get }
}

extension BatchingSink {
    /// An answer's outcome by its status: 429 a pause, 5xx and 401 (a token refused after its renewal) a retry, 404
    /// a row or record not there (a missing reference: "Does Not Exist" in "Perform conditional operations using
    /// the Web API"; on F&O one gone since it was read), any other 4xx a refusal with the service's error code when
    /// it gives one ("Compose HTTP requests and handle errors", "Execute batch operations using the Web API"; F&O's
    /// is often empty).
    package static func outcome(status: Int, headers: HTTPHeaders, body: [UInt8]) -> ApplyOutcome {
        let error = (try? JSONParser.parse(body))?.objectValue?["error"]?.objectValue
        let code = error?["code"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        let message = error?["message"]?.stringValue ?? "HTTP \(status)"
        switch status {
        case 429:
            return .throttled(retryAfter: headers["Retry-After"].flatMap(HTTPClient.retryAfter) ?? .seconds(1))
        case 404:
            return .referenceMissing(message)
        case 401, 408, 500...:
            return .unavailable("HTTP \(status)\(code.map { " \($0)" } ?? ""): \(message)")
        default:
            return .refused(code: "http_\(status)" + (code.map { " \($0)" } ?? ""), message: message, request: nil)
        }
    }

    /// The outcome of a request that got no answer to read: a 429 a pause, no answer, a 5xx or a
    /// 401 a retry, another status a refusal.
    package static func outcome(of error: any Error) -> ApplyOutcome {
        if let error = error as? ServiceError {
            if error.status == 429 { return .throttled(retryAfter: error.retryAfter ?? .seconds(1)) }
            if error.status == 0 || error.status >= 500 || error.status == 401 {
                return .unavailable(error.description)
            }
            return .refused(code: "http_\(error.status) \(error.code)", message: error.message, request: nil)
        }
        return .unavailable("\(error)")
    }

    /// The parts' answers of one `$batch`, or, when it has none, the outcome of all it carried.
    package func exchange(_ parts: [ODataBatch.Part]) async -> (parts: [ODataBatch.Part], failure: ApplyOutcome?) {
        do {
            switch try await client.batch(parts) {
            case .parts(let answered): return (answered, nil)
            case .refused(let response):
                return ([], Self.outcome(status: response.status, headers: response.headers, body: response.body))
            }
        } catch {
            return ([], Self.outcome(of: error))
        }
    }
}

/// Why an event cannot be written, for good: dead-lettered with `code` and `message`.
public struct WriteRefusal: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String

    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
