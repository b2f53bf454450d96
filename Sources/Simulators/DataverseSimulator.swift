import Foundation
import OData
import ProspectToCash
import Runtime
import Synchronization

/// A simulated Dataverse environment over HTTP, implementing documented behaviour only (each piece
/// names the public page it follows): the Entra token endpoint for its application users, bearer
/// authentication, `WhoAmI`, application users found by their client id, the service protection
/// limits with 429 and `Retry-After`, and the prospect-to-cash tables with their alternate keys:
/// reads by key and by simple filter with paging, upserts and conditional writes, creates,
/// deletes, `@odata.bind`, `$batch` with atomic change sets, change tracking and webhooks.
public final class DataverseSimulator: Sendable {
    /// An Entra application registered in the environment as an application user ("Use single-tenant
    /// server-to-server authentication": one application user per registered application).
    public typealias Client = SimulatedClient

    public typealias Limits = ServiceLimits

    /// Injected faults: a share of requests answered 503, and added latency.
    public struct Faults: Sendable, Equatable {
        public var unavailable = 0.0
        public var latency = Duration.zero
        /// Delta tokens older than this are refused (the service keeps them 7 days by default, "Use change tracking
        /// to synchronize data with external systems"/"Organization table reference"; its answer to an expired one
        /// is not documented, so its status is a setting too). Default: never.
        public var deltaExpiry: Duration?
        public var deltaExpiredStatus = 400

        public init() {}

        /// `503=0.05,latency=20ms`.
        public init(parsing text: String) throws(UsageError) {
            for item in text.split(separator: ",") {
                let pair = item.split(separator: "=", maxSplits: 1).map(String.init)
                if pair.count == 2, pair[0] == "503", let share = Double(pair[1]), (0...1).contains(share) {
                    unavailable = share
                } else if pair.count == 2, pair[0] == "latency", pair[1].hasSuffix("ms"),
                    let milliseconds = Int(pair[1].dropLast(2)), milliseconds >= 0
                {
                    latency = .milliseconds(milliseconds)
                } else if pair.count == 2, pair[0] == "delta-expiry", pair[1].hasSuffix("s"),
                    let seconds = Int(pair[1].dropLast()), seconds > 0
                {
                    deltaExpiry = .seconds(seconds)
                } else if pair.count == 2, pair[0] == "delta-expired-status", let status = Int(pair[1]),
                    (400..<500).contains(status)
                {
                    deltaExpiredStatus = status
                } else {
                    throw UsageError(
                        "--faults expects 503=<share 0..1>, latency=<n>ms, delta-expiry=<n>s, delta-expired-status=<4xx>, got '\(item)'"
                    )
                }
            }
        }
    }

    public var tenantID: UUID { gate.tenantID }
    public let organizationID = UUID()
    public let businessUnitID = UUID()
    private let gate: ServiceGate
    private var clients: [Client] { gate.clients }
    private let faults: Faults
    let state = Mutex(State())
    let webhooks: [Webhook]
    private let server: HTTPServer

    struct State {
        /// When each delta token was handed out: a token is `<version>!<serial>`, the serial indexing this list, so
        /// a link handed out again for the same version is a new token (the service's tokens carry the time they
        /// were made: `919042!08/22/2017 08:10:44`, "Use change tracking to synchronize data with external
        /// systems").
        var deltaTokens: [ContinuousClock.Instant] = []
        /// The tables' rows and the change counters: what a change set rolls back.
        var data = Contents()
    }

    /// Rows per entity set (in creation order, indexed by id and by alternate key), deletions with
    /// their version for change tracking, the row version counter and the creation counter.
    struct Contents {
        var tables: [String: TableRows] = [:]
        var version = 1_000
        var deleted: [String: [(id: UUID, version: Int)]] = [:]
        var created = 0
        /// Changes to tell the registered webhooks about once the request (or change set) is done
        /// (kept only when a webhook is registered: nothing else drains it).
        var outbox: [Notification] = []
        var notifies = false
        /// Inside a change set: how to undo each of its changes, newest last. A journal, not a
        /// copy of the contents: a copy would be duplicated whole by the set's first change.
        private var journal: [Undo]?

        enum Undo {
            case inserted(DataverseTable, id: UUID)
            case updated(DataverseTable, before: Row)
            case removed(DataverseTable, position: Int, row: Row)
        }

        /// What a change set restores besides the rows.
        struct Checkpoint {
            var version: Int
            var created: Int
            var deleted: [String: [(id: UUID, version: Int)]]
            var notifications: Int
        }

        mutating func notify(_ notification: Notification) {
            if notifies { outbox.append(notification) }
        }

        mutating func insert(_ row: Row, _ table: DataverseTable) {
            tables[table.entitySet, default: TableRows()].insert(row, table)
            journal?.append(.inserted(table, id: row.id))
        }

        mutating func update(at index: Int, _ table: DataverseTable, _ change: (inout Row) -> Void) {
            if journal != nil, let before = tables[table.entitySet]?.rows[index] {
                journal?.append(.updated(table, before: before))
            }
            tables[table.entitySet, default: TableRows()].update(at: index, table, change)
        }

        mutating func remove(at index: Int, _ table: DataverseTable) {
            if journal != nil, let row = tables[table.entitySet]?.rows[index] {
                journal?.append(.removed(table, position: index, row: row))
            }
            tables[table.entitySet]?.remove(at: index, table)
        }

        mutating func beginChangeSet() -> Checkpoint {
            journal = []
            return Checkpoint(version: version, created: created, deleted: deleted, notifications: outbox.count)
        }

        mutating func endChangeSet(rollingBackTo checkpoint: Checkpoint?) {
            defer { journal = nil }
            guard let checkpoint else { return }
            for undo in (journal ?? []).reversed() {
                switch undo {
                case .inserted(let table, let id):
                    if let index = tables[table.entitySet]?.index(of: id) {
                        tables[table.entitySet]?.remove(at: index, table)
                    }
                case .updated(let table, let before):
                    if let index = tables[table.entitySet]?.index(of: before.id) {
                        tables[table.entitySet]?.update(at: index, table) { $0 = before }
                    }
                case .removed(let table, let position, let row):
                    tables[table.entitySet, default: TableRows()].insert(row, at: position, table)
                }
            }
            version = checkpoint.version
            created = checkpoint.created
            deleted = checkpoint.deleted
            outbox.removeSubrange(min(checkpoint.notifications, outbox.count)...)
        }
    }

    /// One table's rows, found by id or by an alternate key without a scan.
    struct TableRows {
        private(set) var rows: [Row] = []
        private var positions: [UUID: Int] = [:]
        private var keys: [String: UUID] = [:]

        func index(of id: UUID) -> Int? { positions[id] }

        /// The row whose `columns` hold `values`.
        func index(key columns: [String], values: [JSONValue]) -> Int? {
            keys[Self.keyText(columns, values)].flatMap { positions[$0] }
        }

        mutating func insert(_ row: Row, _ table: DataverseTable) {
            positions[row.id] = rows.count
            rows.append(row)
            index(rows.count - 1, table, adding: true)
        }

        /// Sets `fields` of the row at `index`, its new version and who changed it.
        mutating func update(at index: Int, _ table: DataverseTable, _ change: (inout Row) -> Void) {
            self.index(index, table, adding: false)
            change(&rows[index])
            self.index(index, table, adding: true)
        }

        /// Puts a removed row back where it was.
        mutating func insert(_ row: Row, at position: Int, _ table: DataverseTable) {
            rows.insert(row, at: position)
            for index in position..<rows.count { positions[rows[index].id] = index }
            self.index(position, table, adding: true)
        }

        mutating func remove(at index: Int, _ table: DataverseTable) {
            self.index(index, table, adding: false)
            positions[rows[index].id] = nil
            rows.remove(at: index)
            for position in index..<rows.count { positions[rows[position].id] = position }
        }

        private mutating func index(_ position: Int, _ table: DataverseTable, adding: Bool) {
            let fields = rows[position].fields
            for columns in table.alternateKeys {
                let values = columns.compactMap { fields[$0] }
                guard values.count == columns.count, !values.contains(.null) else { continue }
                keys[Self.keyText(columns, values)] = adding ? rows[position].id : nil
            }
        }

        private static func keyText(_ columns: [String], _ values: [JSONValue]) -> String {
            zip(columns, values).map { "\($0)=\($1.jsonText)" }.joined(separator: ",")
        }
    }

    /// One row: its primary id, its columns (lookups as `_<navigation property>_value`) and its
    /// row version (`versionnumber`, the ETag's value).
    struct Row: Sendable {
        var id: UUID
        var fields: JSONObject
        /// The table each lookup points to (a polymorphic lookup's target), for webhook contexts.
        var targets: [String: String] = [:]
        var version: Int
        /// Creation order, which a snapshot pages by.
        var sequence = 0
    }

    /// Held by each write and for a whole change set, so a change set is atomic.
    private let writes = NSLock()

    private static let tables = Dictionary(uniqueKeysWithValues: DataverseTable.p2c.map { ($0.entitySet, $0) })

    /// Starts the simulator on `port` of 127.0.0.1 (0 picks one).
    public init(
        clients: [Client], limits: Limits = Limits(), faults: Faults = Faults(), tenantID: UUID = UUID(), port: Int = 0,
        webhooks: [Webhook] = []
    ) throws {
        gate = ServiceGate(tenantID: tenantID, clients: clients, limits: limits)
        self.webhooks = webhooks
        state.withLock { $0.data.notifies = !webhooks.isEmpty }
        self.faults = faults
        let box = Handler()
        server = try HTTPServer(port: port, host: "127.0.0.1") { request in box.handle(request) }
        box.simulator.withLock { $0 = self }
    }

    /// `http://127.0.0.1:<port>`: the environment URL (`/api/data/v9.2/...`) and the authority
    /// (`/<tenant>/oauth2/v2.0/token`) in one.
    public var baseURL: URL { URL(string: "http://127.0.0.1:\(server.port)")! }

    /// The rows of `entitySet` as a read returns them (with their primary id), in creation order:
    /// what the tests and the demo look at.
    public func rows(_ entitySet: String) -> [JSONObject] {
        guard let table = Self.tables[entitySet] else { return [] }
        return state.withLock { $0.data.tables[entitySet]?.rows ?? [] }.map { representation($0, table, select: nil) }
    }

    /// The most requests of one application user in progress at once so far.
    public var peakConcurrent: Int { gate.peakConcurrent }

    /// Requests answered 429 so far.
    public var throttledCount: Int { gate.throttled }

    /// Requests of the users so far (token requests aside).
    public var requestCount: Int { gate.received }

    public func stop() { server.stop() }

    /// Routes requests to the simulator once it is built (the server starts inside its init).
    private final class Handler: Sendable {
        let simulator = Mutex<DataverseSimulator?>(nil)
        func handle(_ request: HTTPRequest) -> HTTPResponse {
            guard let simulator = simulator.withLock({ $0 }) else { return HTTPResponse(status: 503) }
            return simulator.handle(request)
        }
    }

    private static let api = "/api/data/v9.2/"

    private func handle(_ request: HTTPRequest) -> HTTPResponse {
        if faults.latency > .zero { Thread.sleep(forTimeInterval: faults.latency.seconds) }
        if request.path == gate.tokenPath && request.method == "POST" { return gate.token(request) }
        guard request.path.hasPrefix(Self.api) else {
            return error(404, "0x8006088a", "Resource not found for the segment '\(request.path)'.")
        }
        // Bearer authentication ("Compose HTTP requests and handle errors": 401 for a missing or expired ticket).
        guard let user = gate.client(of: request) else {
            return error(401, "0x80072243", "ExpiredAuthTicket: the access token is missing, unknown or expired.")
        }
        if let refusal = gate.admit(user.systemUserID) {
            var response = error(429, refusal.code, refusal.text)
            response.headers.set("Retry-After", refusal.retryAfterHeader)
            return response
        }
        defer { gate.finish(user.systemUserID) }
        gate.execute(request, user: user.systemUserID)
        if faults.unavailable > 0 && Double.random(in: 0..<1) < faults.unavailable {
            return error(503, "0x80040216", "The service is temporarily unavailable.")
        }
        let resource = String(request.path.dropFirst(Self.api.count))
        // What this request changed reaches the webhooks once it is done (a rolled-back change set
        // takes its notifications back with it).
        defer { notifyWebhooks() }
        switch (request.method, resource) {
        case ("GET", "WhoAmI"):
            // WhoAmI returns the caller's user id ("Use OAuth authentication with Dataverse").
            return json(
                200,
                [
                    "@odata.context": .string("\(baseURL)\(Self.api)$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"),
                    "BusinessUnitId": .string(businessUnitID.uuidString.lowercased()),
                    "UserId": .string(user.systemUserID.uuidString.lowercased()),
                    "OrganizationId": .string(organizationID.uuidString.lowercased()),
                ])
        case ("GET", "systemusers"):
            return systemUsers(request)
        case ("POST", "$batch"):
            return batch(request, user: user.systemUserID)
        case ("GET", _) where resource.hasPrefix("EntityDefinitions("):
            return definition(resource)
        default:
            return table(request, resource: resource, user: user.systemUserID)
        }
    }

    // MARK: - $batch

    /// `POST $batch` ("Execute batch operations using the Web API"): parts run in order; a change set is atomic (a
    /// failing request undoes the set, which answers with that request's error); without `Prefer:
    /// odata.continue-on-error` the batch stops at the first error and answers 400, with it 200 and every part's
    /// answer. At most 1,000 requests.
    private func batch(_ request: HTTPRequest, user: UUID) -> HTTPResponse {
        let parsed: ODataBatch
        do {
            parsed = try ODataBatch.decode(contentType: request.headers["Content-Type"] ?? "", body: request.body)
        } catch {
            return self.error(400, "0x80060888", "The batch body cannot be read: \(error)")
        }
        guard parsed.messages.count <= 1_000 else {
            return error(400, "0x80060888", "Number of requests in a batch exceeded the limit of 1000.")
        }
        let continueOnError = request.headers["Prefer"]?.contains("odata.continue-on-error") ?? false
        var answers: [ODataBatch.Part] = []
        var failed = false
        for part in parsed.parts {
            switch part {
            case .single(let message):
                let response = table(Self.request(message), resource: Self.resource(message.url), user: user)
                answers.append(.single(Self.message(response, contentID: message.contentID)))
                failed = response.status >= 400
            case .changeSet(let messages):
                writes.lock()
                let checkpoint = state.withLock { $0.data.beginChangeSet() }
                var responses: [ODataMessage] = []
                var failure: ODataMessage?
                for message in messages {
                    let response = table(
                        Self.request(message), resource: Self.resource(message.url), user: user, gated: false)
                    let answer = Self.message(response, contentID: message.contentID)
                    if response.status >= 400 {
                        failure = answer
                        break
                    }
                    responses.append(answer)
                }
                state.withLock { $0.data.endChangeSet(rollingBackTo: failure != nil ? checkpoint : nil) }
                writes.unlock()
                answers.append(failure.map { .single($0) } ?? .changeSet(responses))
                failed = failure != nil
            }
            if failed && !continueOnError { break }
        }
        let (contentType, body) = ODataBatch(answers).encoded(
            boundary: "batchresponse_" + UUID().uuidString.lowercased())
        return HTTPResponse(
            status: failed && !continueOnError ? 400 : 200,
            headers: HTTPHeaders([("Content-Type", contentType), ("OData-Version", "4.0")]), body: body)
    }

    /// A batch part's request as if it had come on its own.
    private static func request(_ message: ODataMessage) -> HTTPRequest {
        let query = message.url.firstIndex(of: "?").map { String(message.url[$0...]) } ?? ""
        return HTTPRequest(
            method: message.method, target: api + resource(message.url) + query, headers: message.headers,
            body: message.body)
    }

    /// The path of a batch URL after the service root (absolute, `/api/data/v9.2/…` or relative),
    /// without its query.
    private static func resource(_ url: String) -> String {
        let path = String(url.prefix { $0 != "?" })
        if let root = path.range(of: api) { return String(path[root.upperBound...]) }
        return path.hasPrefix("/") ? String(path.dropFirst()) : path
    }

    private static func message(_ response: HTTPResponse, contentID: String?) -> ODataMessage {
        var headers = response.headers
        if let contentID { headers.set("Content-ID", contentID) }
        return ODataMessage(status: response.status, headers: headers, body: response.body)
    }

    // MARK: - Tables

    /// `<set>`, `<set>(<key>)`: reads, upserts, creates and deletes of the P2C tables.
    private func table(_ request: HTTPRequest, resource: String, user: UUID, gated: Bool = true) -> HTTPResponse {
        let setName = String(resource.prefix { $0 != "(" })
        guard let table = Self.tables[setName] else {
            // The documented answer to an unknown segment (web-api-client-errors: 0x8006088a).
            return error(404, "0x8006088a", "Resource not found for the segment '\(setName)'.")
        }
        var key: KeyPredicate?
        if resource.count > setName.count {
            guard resource.hasSuffix(")"),
                let parsed = KeyPredicate.parse(String(resource.dropFirst(setName.count + 1).dropLast()))
            else { return error(400, "0x80060888", "Bad key in '\(resource)'.") }
            key = parsed
        }
        switch (request.method, key) {
        case ("GET", let key?): return read(table, key: key, request: request)
        case ("GET", nil): return list(table, request: request)
        case ("PATCH", let key?):
            if gated { writes.lock() }
            defer { if gated { writes.unlock() } }
            return write(table, key: key, request: request, user: user)
        case ("POST", nil):
            if gated { writes.lock() }
            defer { if gated { writes.unlock() } }
            return write(table, key: nil, request: request, user: user)
        case ("DELETE", let key?):
            if gated { writes.lock() }
            defer { if gated { writes.unlock() } }
            return delete(table, key: key, user: user)
        default: return error(405, "0x80060888", "\(request.method) is not allowed on '\(resource)'.")
        }
    }

    /// The index of the row `key` names, nil when there is none; an error when the key is not one
    /// of the table's ("Use an alternate key to reference a record": only defined alternate keys can be used).
    private func find(_ key: KeyPredicate, in table: DataverseTable, rows: TableRows) -> Result<Int?, HTTPResponseError>
    {
        switch key {
        case .id(let id):
            return .success(rows.index(of: id))
        case .values(let values):
            if values.count == 1, case .guid(let id)? = values[table.primaryID] {
                return .success(rows.index(of: id))
            }
            guard let columns = table.alternateKeys.first(where: { Set($0) == Set(values.keys) }) else {
                return .failure(
                    HTTPResponseError(
                        error(400, "0x80040217", "\(table.logicalName) has no alternate key \(values.keys.sorted())")))
            }
            return .success(rows.index(key: columns, values: columns.map { values[$0]!.json }))
        }
    }

    /// The row as the Web API returns it: its ETag, its primary id, its columns (`$select`ed ones only).
    private func representation(_ row: Row, _ table: DataverseTable, select: [String]?) -> JSONObject {
        var object: JSONObject = [
            "@odata.etag": .string("W/\"\(row.version)\""), table.primaryID: .string(row.id.uuidString.lowercased()),
        ]
        for field in row.fields.fields where select == nil || select!.contains(field.key) {
            object[field.key] = field.value
        }
        object["versionnumber"] = .number(String(row.version))
        return object
    }

    private func read(_ table: DataverseTable, key: KeyPredicate, request: HTTPRequest) -> HTTPResponse {
        let outcome = state.withLock { state -> Result<Row?, HTTPResponseError> in
            let rows = state.data.tables[table.entitySet] ?? TableRows()
            return find(key, in: table, rows: rows).map { $0.map { rows.rows[$0] } }
        }
        switch outcome {
        case .failure(let failure): return failure.response
        case .success(nil): return notFound(table, key)
        case .success(let row?): return json(200, representation(row, table, select: Self.select(request)))
        }
    }

    /// A collection read with `$select`, `$filter` of `column eq literal` conditions joined by
    /// `and`, and paging by `Prefer: odata.maxpagesize` ("Page results using OData": default and maximum 5,000;
    /// `@odata.nextLink` to follow unmodified).
    private func list(_ table: DataverseTable, request: HTTPRequest) -> HTTPResponse {
        let query = request.query ?? ""
        if (request.headers["Prefer"] ?? "").contains("odata.track-changes") || query.contains("$deltatoken=") {
            return changes(table, request: request)
        }
        var conditions: [(String, ODataLiteral)] = []
        var skip = 0
        for item in (request.query ?? "").split(separator: "&") {
            let pair = item.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? "" }
            guard pair.count == 2 else { continue }
            if pair[0] == "$filter" {
                for condition in pair[1].components(separatedBy: " and ") {
                    let words = condition.split(separator: " ", maxSplits: 2).map(String.init)
                    guard words.count == 3, words[1] == "eq",
                        case .values(let value)? = KeyPredicate.parse("x=\(words[2])"),
                        let literal = value["x"]
                    else {
                        return error(400, "0x80060888", "Only column eq literal conditions are simulated in $filter.")
                    }
                    conditions.append((words[0], literal))
                }
            } else if pair[0] == "$skiptoken" {
                skip = Int(pair[1]) ?? 0
            }
        }
        let pageSize = min(5_000, Self.maxPageSize(request) ?? 5_000)
        let select = Self.select(request)
        let matching = state.withLock { state in
            (state.data.tables[table.entitySet]?.rows ?? []).filter { row in
                conditions.allSatisfy { row.fields[$0.0] == $0.1.json }
            }
        }
        let top = (request.query ?? "").split(separator: "&").first { $0.hasPrefix("$top=") }
            .flatMap { Int($0.dropFirst("$top=".count)) }
        let page = matching.dropFirst(skip).prefix(min(pageSize, top ?? pageSize))
        var answer: JSONObject = [
            "@odata.context": .string("\(baseURL)\(Self.api)$metadata#\(table.entitySet)")
        ]
        // `$count=true`: the matching rows, counted up to 5,000 whatever the page size (Web API
        // "Count rows using OData", webapi/query/count-rows).
        if (request.query ?? "").contains("$count=true") {
            answer["@odata.count"] = .number(String(min(matching.count, 5_000)))
        }
        answer["value"] = .array(page.map { JSONValue.object(representation($0, table, select: select)) })
        if top == nil && skip + page.count < matching.count {
            let others = (request.query ?? "").split(separator: "&").filter { !$0.hasPrefix("$skiptoken=") }
            let query = (others + ["$skiptoken=\(skip + page.count)"]).joined(separator: "&")
            answer["@odata.nextLink"] = .string("\(baseURL)\(Self.api)\(table.entitySet)?\(query)")
        }
        return json(200, answer)
    }

    /// Change tracking ("Use change tracking to synchronize data with external systems"): with `Prefer:
    /// odata.track-changes` a snapshot of the table, paged ("Page results using OData"), whose last page carries
    /// `@odata.deltaLink`; the delta link answers the rows changed since and the deleted ones (`$deletedEntity`
    /// with reason `deleted`) in the order they changed, paged the same way, the last page with a new delta link
    /// (an empty result when nothing changed). `$filter`, `$orderby`, `$expand` and `$top` are refused with
    /// track-changes. Delta tokens expire only under the `delta-expiry` fault (the service keeps them 7 days by
    /// default; its error for an expired one is not documented).
    private func changes(_ table: DataverseTable, request: HTTPRequest) -> HTTPResponse {
        var select: String?
        var since: Int?
        var deltaToken = ""
        var after = 0
        /// The version when the snapshot began: its delta link starts there, so a row changed
        /// while the snapshot was paged through is reported again by the first delta.
        var snapshotVersion: Int?
        for item in (request.query ?? "").split(separator: "&") {
            let pair = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else { continue }
            switch pair[0] {
            case "$select": select = pair[1]
            case "$deltatoken":
                let token = (pair[1].removingPercentEncoding ?? pair[1]).split(separator: "!")
                guard token.count == 2, let version = Int(token[0]), let serial = Int(token[1]),
                    let issued = state.withLock({ serial < $0.deltaTokens.count ? $0.deltaTokens[serial] : nil })
                else {
                    return error(400, "0x0", "The delta token is not valid.")
                }
                since = version
                deltaToken = pair[1]
                // A token handed out longer ago than the expiry is refused.
                if let expiry = faults.deltaExpiry, ContinuousClock.now - issued > expiry {
                    return error(faults.deltaExpiredStatus, "0x0", "The delta token has expired.")
                }
            case "$skiptoken":
                let parts = pair[1].split(separator: "-")
                after = parts.first.flatMap { Int($0) } ?? 0
                snapshotVersion = parts.count == 2 ? Int(parts[1]) : nil
            case "$filter", "$orderby", "$expand", "$top":
                return error(
                    400, "0x80060888", "The \(pair[0]) query parameter isn't supported when Change Tracking is enabled")
            default: continue
            }
        }
        let pageSize = min(5_000, Self.maxPageSize(request) ?? 5_000)
        let columns = select?.split(separator: ",").map { String($0).removingPercentEncoding ?? "" }
        let (rows, deleted, current) = state.withLock { state in
            (
                state.data.tables[table.entitySet]?.rows ?? [], state.data.deleted[table.entitySet, default: []],
                state.data.version
            )
        }
        var value: [JSONValue] = []
        var answer: JSONObject = ["@odata.context": .string("\(baseURL)\(Self.api)$metadata#\(table.entitySet)")]
        let selectPart = select.map { "$select=\($0)&" } ?? ""
        if let since {
            // Changes and deletions by version, paged like any result ("Page results using OData"): a next link
            // continues after the page's last version, the last page carries the delta link.
            let after = max(since, after)
            var changes: [(version: Int, value: JSONValue)] = rows.filter { $0.version > after }.map {
                ($0.version, .object(representation($0, table, select: columns)))
            }
            for gone in deleted where gone.version > after {
                changes.append(
                    (
                        gone.version,
                        .object([
                            "@odata.context": .string(
                                "\(baseURL)\(Self.api)$metadata#\(table.entitySet)/$deletedEntity"),
                            "id": .string(gone.id.uuidString.lowercased()), "reason": "deleted",
                        ])
                    ))
            }
            changes.sort { $0.version < $1.version }
            let page = changes.prefix(pageSize)
            value = page.map(\.value)
            if let last = page.last, changes.count > page.count {
                answer["@odata.nextLink"] = .string(
                    "\(baseURL)\(Self.api)\(table.entitySet)?\(selectPart)$deltatoken=\(deltaToken)&$skiptoken=\(last.version)"
                )
            } else {
                let token = issueDeltaToken(version: max(current, page.last?.version ?? 0))
                answer["@odata.deltaLink"] = .string(
                    "\(baseURL)\(Self.api)\(table.entitySet)?\(selectPart)$deltatoken=\(token)")
            }
        } else {
            let page = rows.filter { $0.sequence > after }.sorted { $0.sequence < $1.sequence }.prefix(pageSize)
            value = page.map { .object(representation($0, table, select: columns)) }
            let start = snapshotVersion ?? current
            if let last = page.last, rows.contains(where: { $0.sequence > last.sequence }) {
                answer["@odata.nextLink"] = .string(
                    "\(baseURL)\(Self.api)\(table.entitySet)?\(selectPart)$skiptoken=\(last.sequence)-\(start)")
            } else {
                let token = issueDeltaToken(version: start)
                answer["@odata.deltaLink"] = .string(
                    "\(baseURL)\(Self.api)\(table.entitySet)?\(selectPart)$deltatoken=\(token)")
            }
        }
        answer["value"] = .array(value)
        var response = json(200, answer)
        response.headers.set("Preference-Applied", "odata.track-changes")
        return response
    }

    /// A new delta token for changes after `version` (`!` percent-encoded, as the service's are).
    private func issueDeltaToken(version: Int) -> String {
        let serial = state.withLock { state in
            state.deltaTokens.append(.now)
            return state.deltaTokens.count - 1
        }
        return "\(version)%21\(serial)"
    }

    /// PATCH to a key URL upserts ("Use Upsert to Create or Update a record"), with `If-Match: *` update only,
    /// `If-None-Match: *` create only and `If-Match: W/"<version>"` optimistic concurrency ("Perform conditional
    /// operations using the Web API"); POST creates. `Prefer: return=representation` answers 201 (created) or 200
    /// (updated) with the row, otherwise 204 with `OData-EntityId` ("Compose HTTP requests and handle errors").
    private func write(_ table: DataverseTable, key: KeyPredicate?, request: HTTPRequest, user: UUID) -> HTTPResponse {
        guard let body = (try? JSONParser.parse(request.body))?.objectValue else {
            return error(400, "0x80060888", "The request body is not a JSON object.")
        }
        // Lookups first: every `<navigation property>@odata.bind` must name an existing row.
        var columns = JSONObject()
        var targets: [String: String] = [:]
        for field in body.fields {
            guard field.key.hasSuffix("@odata.bind") else {
                // A property the table does not have (web-api-client-errors: 400, "Could not find a
                // property named … on type 'Microsoft.Dynamics.CRM.<table>'").
                if let known = table.columns, !known.contains(field.key), field.key != table.primaryID {
                    return error(
                        400, "0x0",
                        "Could not find a property named '\(field.key)' on type 'Microsoft.Dynamics.CRM.\(table.logicalName)'."
                    )
                }
                columns[field.key] = field.value
                continue
            }
            let navigation = String(field.key.dropLast("@odata.bind".count))
            // Only the table's single-valued navigation properties can be bound ("Create a table row using the Web
            // API", "Query schema definitions").
            guard let lookup = table.lookup(navigation: navigation) else {
                return error(
                    400, "0x80060888",
                    "An undeclared property '\(navigation)' which only has property annotations in the payload.")
            }
            guard let target = field.value.stringValue, let (id, boundTable) = resolve(target),
                boundTable == lookup.target
            else {
                // Binding to a row that does not exist (yet): the connectors wait and retry on this.
                return error(
                    404, "0x80040217",
                    "\(field.value.stringValue ?? "the bound record") Does Not Exist (\(navigation)@odata.bind).")
            }
            columns["_\(lookup.attribute)_value"] = .string(id.uuidString.lowercased())
            targets[lookup.attribute] = lookup.target
        }
        let ifMatch = request.headers["If-Match"]
        let ifNoneMatch = request.headers["If-None-Match"]
        let representationWanted = request.headers["Prefer"]?.contains("return=representation") ?? false
        let now = Date().formatted(.iso8601)
        let outcome = state.withLock { state -> Result<(Row, created: Bool), HTTPResponseError> in
            // No copy of the table is kept while it changes (it would be copied whole).
            var index: Int?
            if let key {
                switch find(key, in: table, rows: state.data.tables[table.entitySet] ?? TableRows()) {
                case .failure(let failure): return .failure(failure)
                case .success(let found): index = found
                }
            } else {
                // A create: the body's alternate key values must be new.
                for keyColumns in table.alternateKeys where keyColumns.allSatisfy({ columns[$0] != nil }) {
                    let values = keyColumns.map { columns[$0]! }
                    if state.data.tables[table.entitySet]?.index(key: keyColumns, values: values) != nil {
                        return .failure(
                            HTTPResponseError(
                                error(412, "0x80040237", "A record with matching key values already exists.")))
                    }
                }
            }
            if let index {
                if ifNoneMatch == "*" {
                    return .failure(
                        HTTPResponseError(error(412, "0x80040237", "A record with matching key values already exists."))
                    )
                }
                let current = state.data.tables[table.entitySet]!.rows[index].version
                if let ifMatch, ifMatch != "*", ifMatch != "W/\"\(current)\"" {
                    return .failure(
                        HTTPResponseError(
                            error(
                                412, "0x80060882",
                                "The version of the existing record doesn't match the RowVersion property provided.")))
                }
                state.data.version += 1
                let version = state.data.version
                state.data.update(at: index, table) { row in
                    for field in columns.fields { row.fields[field.key] = field.value }
                    row.targets.merge(targets) { $1 }
                    row.fields["_modifiedby_value"] = .string(user.uuidString.lowercased())
                    row.fields["modifiedon"] = .string(now)
                    row.version = version
                }
                let row = state.data.tables[table.entitySet]!.rows[index]
                state.data.notify(
                    Notification(message: "Update", table: table, row: row, changed: columns, user: user))
                return .success((row, false))
            }
            if ifMatch != nil {
                return .failure(HTTPResponseError(notFound(table, key)))
            }
            state.data.version += 1
            var fields = columns
            var id = UUID()
            switch key {
            case .id(let given)?: id = given
            case .values(let values)?:
                // A create through a key URL takes the key's values (they are not repeated in the body).
                for (name, literal) in values { fields[name] = literal.json }
            case nil:
                if let given = columns[table.primaryID]?.stringValue.flatMap(UUID.init(uuidString:)) { id = given }
            }
            fields[table.primaryID] = nil
            for (name, value) in [
                ("_createdby_value", JSONValue.string(user.uuidString.lowercased())),
                ("_modifiedby_value", .string(user.uuidString.lowercased())), ("createdon", .string(now)),
                ("modifiedon", .string(now)),
            ] {
                fields[name] = value
            }
            state.data.created += 1
            let row = Row(
                id: id, fields: fields, targets: targets, version: state.data.version, sequence: state.data.created)
            state.data.insert(row, table)
            state.data.notify(
                Notification(message: "Create", table: table, row: row, changed: fields, user: user))
            return .success((row, true))
        }
        switch outcome {
        case .failure(let failure):
            return failure.response
        case .success(let (row, created)):
            if representationWanted {
                var response = json(created ? 201 : 200, representation(row, table, select: Self.select(request)))
                response.headers.set("ETag", "W/\"\(row.version)\"")
                return response
            }
            var response = HTTPResponse(status: 204)
            response.headers.set("OData-Version", "4.0")
            response.headers.set(
                "OData-EntityId", "\(baseURL)\(Self.api)\(table.entitySet)(\(row.id.uuidString.lowercased()))")
            return response
        }
    }

    private func delete(_ table: DataverseTable, key: KeyPredicate, user: UUID) -> HTTPResponse {
        let outcome = state.withLock { state -> Result<Bool, HTTPResponseError> in
            switch find(key, in: table, rows: state.data.tables[table.entitySet] ?? TableRows()) {
            case .failure(let failure): return .failure(failure)
            case .success(nil): return .success(false)
            case .success(let index?):
                state.data.version += 1
                let row = state.data.tables[table.entitySet]!.rows[index]
                state.data.deleted[table.entitySet, default: []].append((row.id, state.data.version))
                state.data.notify(
                    Notification(message: "Delete", table: table, row: row, changed: [:], user: user))
                state.data.remove(at: index, table)
                return .success(true)
            }
        }
        switch outcome {
        case .failure(let failure): return failure.response
        case .success(false): return notFound(table, key)
        case .success(true): return HTTPResponse(status: 204)
        }
    }

    /// `EntityDefinitions(LogicalName='<table>')` ("Query schema definitions"): the table's entity set, primary id,
    /// alternate keys (`Keys`, each with its `KeyAttributes`, lookups by their attribute name) and
    /// lookups (`ManyToOneRelationships`), whatever `$select` / `$expand` ask.
    private func definition(_ resource: String) -> HTTPResponse {
        let inside = resource.dropFirst("EntityDefinitions(".count).prefix { $0 != ")" }
        guard case .values(let values)? = KeyPredicate.parse(String(inside)),
            case .string(let name)? = values["LogicalName"]
        else { return error(400, "0x80060888", "Bad key in '\(resource)'.") }
        guard let table = Self.tables.values.first(where: { $0.logicalName == name }) else {
            return error(404, "0x80040217", "Could not find an entity with name \(name).")
        }
        func attribute(_ column: String) -> String {
            column.hasPrefix("_") && column.hasSuffix("_value") ? String(column.dropFirst().dropLast(6)) : column
        }
        let keys = table.alternateKeys.map { key -> JSONValue in
            .object(["KeyAttributes": .array(key.map { .string(attribute($0)) })])
        }
        let lookups = table.lookups.map { lookup -> JSONValue in
            .object([
                "ReferencingAttribute": .string(lookup.attribute), "ReferencedEntity": .string(lookup.target),
                "ReferencingEntityNavigationPropertyName": .string(lookup.navigation),
            ])
        }
        return json(
            200,
            [
                "LogicalName": .string(table.logicalName), "EntitySetName": .string(table.entitySet),
                "PrimaryIdAttribute": .string(table.primaryID), "Keys": .array(keys),
                "ManyToOneRelationships": .array(lookups),
            ])
    }

    /// The id and table of the row an `@odata.bind` value (`/set(key)`, leading slash optional) names.
    private func resolve(_ target: String) -> (UUID, String)? {
        let path = target.hasPrefix("/") ? String(target.dropFirst()) : target
        let setName = String(path.prefix { $0 != "(" })
        guard let table = Self.tables[setName], path.hasSuffix(")"), path.count > setName.count + 2,
            let key = KeyPredicate.parse(String(path.dropFirst(setName.count + 1).dropLast()))
        else { return nil }
        return state.withLock { state in
            let rows = state.data.tables[table.entitySet] ?? TableRows()
            guard case .success(let index?) = find(key, in: table, rows: rows) else { return nil }
            return (rows.rows[index].id, table.logicalName)
        }
    }

    /// 404 for a key that names no row ("Perform conditional operations using the Web API": "… Does Not Exist"; the
    /// code is the SDK's ObjectDoesNotExist, -2147220969).
    private func notFound(_ table: DataverseTable, _ key: KeyPredicate?) -> HTTPResponse {
        error(404, "0x80040217", "\(table.logicalName) With Ids = \(key.map { "\($0)" } ?? "") Does Not Exist")
    }

    private static func select(_ request: HTTPRequest) -> [String]? {
        for item in (request.query ?? "").split(separator: "&") where item.hasPrefix("$select=") {
            return item.dropFirst("$select=".count).split(separator: ",").map {
                String($0).removingPercentEncoding ?? ""
            }
        }
        return nil
    }

    private static func maxPageSize(_ request: HTTPRequest) -> Int? {
        for preference in (request.headers["Prefer"] ?? "").split(separator: ",") {
            let pair = preference.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if pair.count == 2, pair[0] == "odata.maxpagesize", let size = Int(pair[1]), size > 0 { return size }
        }
        return nil
    }

    /// `systemusers?$filter=applicationid eq <guid>&$select=systemuserid`: the application user of
    /// an Entra application, as capture looks up the apply identities.
    private func systemUsers(_ request: HTTPRequest) -> HTTPResponse {
        let query = (request.query ?? "").removingPercentEncoding ?? ""
        var filter: UUID?
        for item in query.split(separator: "&") where item.hasPrefix("$filter=") {
            let condition = item.dropFirst("$filter=".count).split(separator: " ")
            guard condition.count == 3, condition[0] == "applicationid", condition[1] == "eq",
                let id = UUID(uuidString: String(condition[2]))
            else {
                return error(400, "0x80060888", "Only $filter=applicationid eq <guid> is simulated on systemusers.")
            }
            filter = id
        }
        let users = clients.filter { filter == nil || $0.id == filter }.map { client -> JSONValue in
            .object([
                "systemuserid": .string(client.systemUserID.uuidString.lowercased()),
                "applicationid": .string(client.id.uuidString.lowercased()),
            ])
        }
        return json(
            200,
            ["@odata.context": .string("\(baseURL)\(Self.api)$metadata#systemusers"), "value": .array(users)])
    }

    /// An error answer carried through a `Result`.
    struct HTTPResponseError: Error {
        let response: HTTPResponse
        init(_ response: HTTPResponse) { self.response = response }
    }

    /// The documented error body: `{"error":{"code":"0x…","message":"…"}}` ("Execute batch operations using the Web
    /// API").
    private func error(_ status: Int, _ code: String, _ message: String) -> HTTPResponse {
        json(status, ["error": .object(["code": .string(code), "message": .string(message)])])
    }

    private func json(_ status: Int, _ object: JSONObject) -> HTTPResponse { ServiceGate.json(status, object) }
}
