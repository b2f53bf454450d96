import Foundation
import OData
import ProspectToCash
import Runtime
import Synchronization

/// A simulated Finance and Operations environment over HTTP, implementing documented behaviour
/// only, each with the public page it follows: the Entra token endpoint for its applications, each mapped to the
/// user its calls run as ("Service endpoints overview"); the P2C entity sets under `<base>/data/` with their composite
/// keys including `dataAreaId`, the user's default company unless `cross-company=true` ("Open Data Protocol (OData)");
/// `$metadata`; reads by key and by collection (`$select`, `$filter` of `eq` conditions joined by
/// `and`, `$orderby`, `$top`, `$skip`, `$count`, server-driven paging); POST, PATCH, DELETE; `$batch` with
/// atomic change sets; 429 with `Retry-After` ("Priority-based throttling"); and data events posted as
/// `RemoteExecutionContext` for every create, update and delete ("Data events").
///
/// What the docs leave open is a `Readings` setting: whether PATCH of a missing key creates it,
/// and whether a `$batch` goes on after a failed change set.
public final class FinanceOperationsSimulator: Sendable {
    public typealias Client = SimulatedClient
    public typealias Limits = ServiceLimits
    /// `503=<share>` and `latency=<n>ms` (the delta settings are Dataverse's).
    public typealias Faults = DataverseSimulator.Faults

    /// The behaviours F&O's documentation leaves open, each with its two readings.
    public struct Readings: Sendable, Equatable {
        /// PATCH of a key that does not exist: 404 (OData's reading) or a create (an upsert).
        public var patchCreates = false
        /// After a failed change set: stop the batch (OData 4.0 without `continue-on-error`) or
        /// go on with the next parts.
        public var batchContinues = false

        public init() {}

        /// `patch-missing=404|create,batch-on-error=stop|continue`.
        public init(parsing text: String) throws(UsageError) {
            for item in text.split(separator: ",") {
                switch item {
                case "patch-missing=404": patchCreates = false
                case "patch-missing=create": patchCreates = true
                case "batch-on-error=stop": batchContinues = false
                case "batch-on-error=continue": batchContinues = true
                default:
                    throw UsageError(
                        "--readings expects patch-missing=404|create, batch-on-error=stop|continue, got '\(item)'")
                }
            }
        }
    }

    /// A data-events endpoint ("Data events", "Manage business event endpoints"): an entity's create, update and
    /// delete events posted to `url`, with `key` as `?code=` the way a Dataverse webhook carries it.
    public struct DataEvents: Sendable, Equatable {
        /// The entity set or entity name (`CustomersV3`, `CustomerV3`).
        public var entity: String
        public var url: URL
        public var key: String?
        public var retryDelay = Duration.seconds(1)

        public init(entity: String, url: URL, key: String? = nil) {
            self.entity = entity
            self.url = url
            self.key = key
        }

        /// `<entity>:<url>[:<key>]`, as `--data-events` takes it.
        public init(parsing text: String) throws(UsageError) {
            guard let (entity, url, key) = DataverseSimulator.Webhook.registration(text) else {
                throw UsageError("--data-events expects <entity>:<http(s) url>[:<key>], got '\(text)'")
            }
            guard
                FinanceOperationsEntity.p2c.contains(where: {
                    $0.entitySet.lowercased() == entity.lowercased() || $0.typeName.lowercased() == entity.lowercased()
                })
            else {
                throw UsageError(
                    "--data-events: '\(entity)' is not a P2C entity (\(FinanceOperationsEntity.p2c.map(\.entitySet).joined(separator: ", ")))"
                )
            }
            self.init(entity: entity, url: url, key: key)
        }

        func matches(_ entity: FinanceOperationsEntity) -> Bool {
            self.entity.lowercased() == entity.entitySet.lowercased()
                || self.entity.lowercased() == entity.typeName.lowercased()
        }
    }

    /// The legal entity a request without `cross-company=true` sees (the user's default company).
    public let defaultCompany: String
    /// Server-driven paging: the most records a page holds ("Open Data Protocol (OData)": 10,000).
    public let pageSize: Int
    private let gate: ServiceGate
    private let faults: Faults
    private let readings: Readings
    private let dataEvents: [DataEvents]
    private let state = Mutex(Contents())
    private let writes = NSLock()
    private let server: HTTPServer

    static let namespace = "Microsoft.Dynamics.DataEntities"
    static let entities = Dictionary(uniqueKeysWithValues: FinanceOperationsEntity.p2c.map { ($0.entitySet, $0) })
    private static let metadata = CSDL(
        namespace: namespace, entitySets: entities.mapValues(\.type)
    ).encoded()

    /// Records per entity set in creation order, indexed by key; and the changes the data events
    /// have not been told yet. What a change set rolls back.
    struct Contents {
        var sets: [String: Records] = [:]
        var outbox: [Change] = []
        var requests = 0
        /// Inside a change set: how to undo each of its changes, newest last. A journal, not a
        /// copy of the contents: a copy would be duplicated whole by the set's first change.
        private var journal: [Undo]?

        enum Undo {
            case inserted(set: String, key: String)
            case updated(set: String, position: Int, before: Record)
            case removed(set: String, position: Int, record: Record)
        }

        mutating func insert(_ record: Record, into set: String) {
            sets[set, default: Records()].insert(record, at: sets[set]?.rows.count ?? 0)
            journal?.append(.inserted(set: set, key: record.key))
        }

        mutating func replace(at position: Int, in set: String, with record: Record) {
            guard let before = sets[set]?.rows[position] else { return }
            journal?.append(.updated(set: set, position: position, before: before))
            sets[set]!.rows[position] = record
        }

        mutating func remove(_ key: String, from set: String) {
            guard let position = sets[set]?.positions[key], let record = sets[set]?.rows[position] else { return }
            journal?.append(.removed(set: set, position: position, record: record))
            sets[set]!.remove(key)
        }

        /// Starts a change set: what `endChangeSet` rolls the changes to be told back to.
        mutating func beginChangeSet() -> Int {
            journal = []
            return outbox.count
        }

        mutating func endChangeSet(rollingBackTo changes: Int?) {
            defer { journal = nil }
            guard let changes else { return }
            for undo in (journal ?? []).reversed() {
                switch undo {
                case .inserted(let set, let key): sets[set]?.remove(key)
                case .updated(let set, let position, let before): sets[set]?.rows[position] = before
                case .removed(let set, let position, let record): sets[set]?.insert(record, at: position)
                }
            }
            outbox.removeSubrange(min(changes, outbox.count)...)
        }
    }

    struct Records {
        var rows: [Record] = []
        var positions: [String: Int] = [:]

        mutating func insert(_ record: Record, at position: Int) {
            rows.insert(record, at: position)
            for index in position..<rows.count { positions[rows[index].key] = index }
        }

        mutating func remove(_ key: String) {
            guard let position = positions.removeValue(forKey: key) else { return }
            rows.remove(at: position)
            for index in position..<rows.count { positions[rows[index].key] = index }
        }
    }

    struct Record {
        var key: String
        var fields: JSONObject
        var version: Int
        var createdBy: UUID
        var modifiedBy: UUID
    }

    /// A change to post to the data-events endpoints.
    struct Change: Sendable {
        var message: String
        var entity: String
        var before: JSONObject?
        var after: JSONObject?
        var user: UUID
    }

    /// Starts the simulator on `port` of 127.0.0.1 (0 picks one).
    public init(
        clients: [Client], limits: Limits = Limits(), faults: Faults = Faults(), readings: Readings = Readings(),
        tenantID: UUID = UUID(), port: Int = 0, dataEvents: [DataEvents] = [], defaultCompany: String = "DAT",
        pageSize: Int = 10_000
    ) throws {
        gate = ServiceGate(tenantID: tenantID, clients: clients, limits: limits)
        self.faults = faults
        self.readings = readings
        self.dataEvents = dataEvents
        self.defaultCompany = defaultCompany
        self.pageSize = pageSize
        let box = Box()
        server = try HTTPServer(port: port, host: "127.0.0.1") { request in box.handle(request) }
        box.simulator.withLock { $0 = self }
    }

    /// `http://127.0.0.1:<port>`: the environment URL (`/data/...`) and the authority in one.
    public var baseURL: URL { URL(string: "http://127.0.0.1:\(server.port)")! }

    public var tenantID: UUID { gate.tenantID }

    /// The records of `entitySet` in creation order, as a read returns them: what tests look at.
    public func records(_ entitySet: String) -> [JSONObject] {
        state.withLock { $0.sets[entitySet]?.rows.map(\.fields) ?? [] }
    }

    /// Who created and who last changed each record of `entitySet` (client ids), by key text.
    public func authors(_ entitySet: String) -> [(created: UUID, modified: UUID)] {
        state.withLock { $0.sets[entitySet]?.rows.map { ($0.createdBy, $0.modifiedBy) } ?? [] }
    }

    /// The most requests of one user in progress at once so far.
    public var peakConcurrent: Int { gate.peakConcurrent }

    /// Requests answered 429 so far.
    public var throttledCount: Int { gate.throttled }

    /// Requests admitted past authentication and the limits so far.
    public var requestCount: Int { state.withLock { $0.requests } }

    public func stop() { server.stop() }

    private final class Box: Sendable {
        let simulator = Mutex<FinanceOperationsSimulator?>(nil)
        func handle(_ request: HTTPRequest) -> HTTPResponse {
            guard let simulator = simulator.withLock({ $0 }) else { return HTTPResponse(status: 503) }
            return simulator.handle(request)
        }
    }

    static let root = "/data/"

    private func handle(_ request: HTTPRequest) -> HTTPResponse {
        if faults.latency > .zero { Thread.sleep(forTimeInterval: faults.latency.seconds) }
        if request.path == gate.tokenPath && request.method == "POST" { return gate.token(request) }
        guard request.path.hasPrefix(Self.root) else { return error(404, "No route data was found.") }
        guard let client = gate.client(of: request) else {
            return error(401, "The access token is missing, unknown or expired.")
        }
        if let refusal = gate.admit(client.id) {
            // "Priority-based throttling": 429 with the seconds to wait.
            var response = error(429, "Too many requests. \(refusal.text)")
            response.headers.set("Retry-After", refusal.retryAfterHeader)
            return response
        }
        defer { gate.finish(client.id) }
        gate.execute(request, user: client.id)
        state.withLock { $0.requests += 1 }
        if faults.unavailable > 0 && Double.random(in: 0..<1) < faults.unavailable {
            return error(503, "The service is temporarily unavailable.")
        }
        defer { notify() }
        let resource = String(request.path.dropFirst(Self.root.count))
        switch (request.method, resource) {
        case ("GET", "$metadata"):
            return HTTPResponse(
                status: 200, headers: HTTPHeaders([("Content-Type", "application/xml"), ("OData-Version", "4.0")]),
                body: Self.metadata)
        case ("POST", "$batch"):
            return batch(request, user: client.id)
        default:
            writes.lock()
            defer { writes.unlock() }
            return entity(request, resource: resource, user: client.id)
        }
    }

    // MARK: - $batch

    /// `POST $batch` ("Open Data Protocol (OData)"): parts in order, a change set atomic (a failing request undoes
    /// the set, which answers with that request's error); after a failure the batch stops or goes
    /// on as `readings.batchContinues` says. At most 5,000 operations ("Service protection API limits").
    private func batch(_ request: HTTPRequest, user: UUID) -> HTTPResponse {
        let parsed: ODataBatch
        do {
            parsed = try ODataBatch.decode(contentType: request.headers["Content-Type"] ?? "", body: request.body)
        } catch {
            return self.error(400, "The batch body cannot be read: \(error)")
        }
        guard parsed.messages.count <= 5_000 else {
            return error(400, "A batch can contain up to 5000 operations.")
        }
        var answers: [ODataBatch.Part] = []
        writes.lock()
        defer { writes.unlock() }
        for part in parsed.parts {
            var failed = false
            switch part {
            case .single(let message):
                let response = entity(Self.request(message), resource: Self.resource(message.url), user: user)
                answers.append(.single(Self.message(response, contentID: message.contentID)))
                failed = response.status >= 400 && message.method != "GET"
            case .changeSet(let messages):
                let changes = state.withLock { $0.beginChangeSet() }
                var responses: [ODataMessage] = []
                var failure: ODataMessage?
                for message in messages {
                    let response = entity(Self.request(message), resource: Self.resource(message.url), user: user)
                    let answer = Self.message(response, contentID: message.contentID)
                    if response.status >= 400 {
                        failure = answer
                        break
                    }
                    responses.append(answer)
                }
                state.withLock { $0.endChangeSet(rollingBackTo: failure != nil ? changes : nil) }
                answers.append(failure.map { .single($0) } ?? .changeSet(responses))
                failed = failure != nil
            }
            if failed && !readings.batchContinues { break }
        }
        let (contentType, body) = ODataBatch(answers).encoded(
            boundary: "batchresponse_" + UUID().uuidString.lowercased())
        return HTTPResponse(
            status: 200, headers: HTTPHeaders([("Content-Type", contentType), ("OData-Version", "4.0")]), body: body)
    }

    private static func request(_ message: ODataMessage) -> HTTPRequest {
        HTTPRequest(
            method: message.method, target: root + resource(message.url, query: true), headers: message.headers,
            body: message.body)
    }

    /// The part of a batch URL after the service root (absolute or relative), with or without its query.
    private static func resource(_ url: String, query: Bool = false) -> String {
        var rest = url
        if let root = url.range(of: root) { rest = String(url[root.upperBound...]) }
        if rest.hasPrefix("/") { rest.removeFirst() }
        return query ? rest : String(rest.prefix { $0 != "?" })
    }

    private static func message(_ response: HTTPResponse, contentID: String?) -> ODataMessage {
        var headers = response.headers
        if let contentID { headers.set("Content-ID", contentID) }
        return ODataMessage(status: response.status, headers: headers, body: response.body)
    }

    // MARK: - Entity sets

    /// `<set>`, `<set>(<key>)`: reads, creates, updates and deletes (callers hold `writes`).
    private func entity(_ request: HTTPRequest, resource: String, user: UUID) -> HTTPResponse {
        let path = String(resource.prefix { $0 != "?" })
        let setName = String(path.prefix { $0 != "(" })
        guard let entity = Self.entities[setName] else {
            return error(404, "Resource not found for the segment '\(setName)'.")
        }
        let query = Self.query(request)
        let crossCompany = query["cross-company"]?.lowercased() == "true"
        var key: [String: ODataLiteral]?
        if path.count > setName.count {
            // "Open Data Protocol (OData)": every key field, `dataAreaId` included (a partial key has no route).
            guard path.hasSuffix(")"),
                case .values(let values)? = KeyPredicate.parse(String(path.dropFirst(setName.count + 1).dropLast())),
                Set(values.keys) == Set(entity.keys)
            else { return error(404, "No route data was found for '\(path)'.") }
            key = values
        }
        switch (request.method, key) {
        case ("GET", let key?):
            guard let record = find(entity, key: key, crossCompany: crossCompany) else { return notFound(entity) }
            return json(200, representation(record, entity, select: Self.select(query)))
        case ("GET", nil):
            return list(entity, query: query, crossCompany: crossCompany)
        case ("POST", nil):
            return create(entity, request: request, user: user)
        case ("PATCH", let key?):
            return update(entity, key: key, request: request, user: user, crossCompany: crossCompany)
        case ("DELETE", let key?):
            guard let record = find(entity, key: key, crossCompany: crossCompany) else { return notFound(entity) }
            state.withLock { state in
                state.remove(record.key, from: entity.entitySet)
                state.outbox.append(
                    Change(message: "Delete", entity: entity.entitySet, before: record.fields, after: nil, user: user))
            }
            return HTTPResponse(status: 204)
        default:
            return error(405, "\(request.method) is not allowed on '\(path)'.")
        }
    }

    /// The record `key` names, if the caller's company view holds it.
    private func find(_ entity: FinanceOperationsEntity, key: [String: ODataLiteral], crossCompany: Bool) -> Record? {
        let values = entity.keys.map { key[$0]!.json }
        guard crossCompany || values.first?.stringValue?.lowercased() == defaultCompany.lowercased() else {
            return nil
        }
        let text = Self.keyText(values)
        return state.withLock { state in
            state.sets[entity.entitySet].flatMap { records in records.positions[text].map { records.rows[$0] } }
        }
    }

    /// A collection read: `$filter` (`Property eq literal` joined by `and`), `$orderby`, `$skip`,
    /// `$top`, `$select`, pages of `pageSize` with `@odata.nextLink`.
    private func list(_ entity: FinanceOperationsEntity, query: [String: String], crossCompany: Bool) -> HTTPResponse {
        var conditions: [(String, JSONValue)] = []
        if let filter = query["$filter"] {
            for condition in filter.components(separatedBy: " and ") {
                let words = condition.split(separator: " ", maxSplits: 2).map(String.init)
                guard words.count == 3, words[1] == "eq",
                    entity.properties.contains(where: { $0.name == words[0] }),
                    case .values(let value)? = KeyPredicate.parse("x=\(words[2])"), let literal = value["x"]
                else { return error(400, "Only 'Property eq literal' conditions joined by 'and' are simulated.") }
                conditions.append((words[0], literal.json))
            }
        }
        var rows = state.withLock { $0.sets[entity.entitySet]?.rows ?? [] }.filter { record in
            (crossCompany || record.fields["dataAreaId"]?.stringValue?.lowercased() == defaultCompany.lowercased())
                && conditions.allSatisfy { Self.same(record.fields[$0.0], $0.1) }
        }
        if let order = query["$orderby"] {
            let names = order.split(separator: ",").map { String($0.split(separator: " ")[0]) }
            rows.sort { left, right in
                for name in names {
                    let a = left.fields[name].map(Self.text) ?? ""
                    let b = right.fields[name].map(Self.text) ?? ""
                    if a != b { return Self.ordered(a, b) }
                }
                return false
            }
        }
        let skip = query["$skip"].flatMap(Int.init) ?? 0
        let top = query["$top"].flatMap(Int.init)
        let remaining = rows.dropFirst(skip).prefix(top ?? Int.max)
        let page = remaining.prefix(pageSize)
        let select = Self.select(query)
        var answer: JSONObject = [
            "@odata.context": .string("\(baseURL)\(Self.root)$metadata#\(entity.entitySet)")
        ]
        // `$count=true`: how many records the filter matches, whatever the paging ("Open Data Protocol (OData)").
        if query["$count"] == "true" { answer["@odata.count"] = .number(String(rows.count)) }
        answer["value"] = .array(page.map { .object(representation($0, entity, select: select)) })
        if remaining.count > page.count {
            var next = query
            next["$skip"] = String(skip + page.count)
            if let top { next["$top"] = String(top - page.count) }
            let text = next.sorted { $0.key < $1.key }.map {
                "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&="))) ?? $0.value)"
            }.joined(separator: "&")
            answer["@odata.nextLink"] = .string("\(baseURL)\(Self.root)\(entity.entitySet)?\(text)")
        }
        return json(200, answer)
    }

    /// POST: a new record with every key field (`dataAreaId` defaults to the user's company); a
    /// line only under an existing header; an existing key is refused.
    private func create(_ entity: FinanceOperationsEntity, request: HTTPRequest, user: UUID) -> HTTPResponse {
        guard var body = (try? JSONParser.parse(request.body))?.objectValue else {
            return error(400, "The request body is not a JSON object.")
        }
        if let unknown = unknownProperty(body, entity) { return unknown }
        if body["dataAreaId"] == nil { body["dataAreaId"] = .string(defaultCompany) }
        guard let values = keyValues(body, entity) else {
            return error(
                400, "Every key field of \(entity.typeName) is required: \(entity.keys.joined(separator: ", ")).")
        }
        if let header = entity.header, let headerEntity = Self.entities[header] {
            let headerKey = Self.keyText(Array(values.prefix(headerEntity.keys.count)))
            guard state.withLock({ $0.sets[header]?.positions[headerKey] != nil }) else {
                return error(
                    400,
                    "Write failed for table row of type '\(entity.typeName)'. The header \(headerKey.replacingOccurrences(of: "\u{0}", with: "/")) does not exist."
                )
            }
        }
        let text = Self.keyText(values)
        let created = state.withLock { state -> Record? in
            guard state.sets[entity.entitySet]?.positions[text] == nil else { return nil }
            let record = Record(key: text, fields: body, version: 1, createdBy: user, modifiedBy: user)
            state.insert(record, into: entity.entitySet)
            state.outbox.append(
                Change(message: "Create", entity: entity.entitySet, before: nil, after: body, user: user))
            return record
        }
        guard let created else {
            return error(
                400,
                "Write failed for table row of type '\(entity.typeName)'. Cannot create a record: the record already exists."
            )
        }
        var response = json(201, representation(created, entity, select: nil))
        response.headers.set("Location", "\(baseURL)\(Self.root)\(Self.path(entity, values))")
        return response
    }

    /// PATCH: the given fields of an existing record (its key cannot change); a missing key is a
    /// 404, or a create under `readings.patchCreates`.
    private func update(
        _ entity: FinanceOperationsEntity, key: [String: ODataLiteral], request: HTTPRequest, user: UUID,
        crossCompany: Bool
    ) -> HTTPResponse {
        guard let body = (try? JSONParser.parse(request.body))?.objectValue else {
            return error(400, "The request body is not a JSON object.")
        }
        if let unknown = unknownProperty(body, entity) { return unknown }
        for name in entity.keys where body[name] != nil && !Self.same(body[name], key[name]!.json) {
            return error(400, "The key field \(name) cannot be changed.")
        }
        guard let existing = find(entity, key: key, crossCompany: crossCompany) else {
            guard readings.patchCreates else { return notFound(entity) }
            var fields = body
            for name in entity.keys { fields[name] = key[name]!.json }
            var create = request
            create.body = fields.jsonBytes
            let response = self.create(entity, request: create, user: user)
            return response.status == 201 ? HTTPResponse(status: 204) : response
        }
        state.withLock { state in
            guard let position = state.sets[entity.entitySet]?.positions[existing.key] else { return }
            var record = state.sets[entity.entitySet]!.rows[position]
            for field in body.fields { record.fields[field.key] = field.value }
            record.version += 1
            record.modifiedBy = user
            state.replace(at: position, in: entity.entitySet, with: record)
            state.outbox.append(
                Change(
                    message: "Update", entity: entity.entitySet, before: existing.fields, after: record.fields,
                    user: user))
        }
        return HTTPResponse(status: 204)
    }

    /// F&O's property names are case-sensitive: one it does not have is refused; so is a value that
    /// is not of the property's type (OData JSON: numbers for Edm.Decimal and Edm.Int64).
    private func unknownProperty(_ body: JSONObject, _ entity: FinanceOperationsEntity) -> HTTPResponse? {
        for field in body.fields where !field.key.hasPrefix("@") {
            guard let property = entity.properties.first(where: { $0.name == field.key }) else {
                return error(
                    400,
                    "The property '\(field.key)' does not exist on type '\(Self.namespace).\(entity.typeName)'. Make sure to only use property names that are defined by the type."
                )
            }
            switch (property.type, field.value) {
            case ("Edm.Decimal", .number), ("Edm.Int64", .number), (_, .null): continue
            case ("Edm.Decimal", _), ("Edm.Int64", _):
                return error(
                    400,
                    "Cannot convert the literal '\(field.value.stringValue ?? field.value.jsonText)' to the expected type '\(property.type)' of property '\(field.key)'."
                )
            default: continue
            }
        }
        return nil
    }

    private func keyValues(_ body: JSONObject, _ entity: FinanceOperationsEntity) -> [JSONValue]? {
        var values: [JSONValue] = []
        for name in entity.keys {
            guard let value = body[name], value != .null, (value.stringValue.map { !$0.isEmpty } ?? true) else {
                return nil
            }
            values.append(value)
        }
        return values
    }

    private func representation(_ record: Record, _ entity: FinanceOperationsEntity, select: [String]?) -> JSONObject {
        var object: JSONObject = ["@odata.etag": .string("W/\"\(record.version)\"")]
        for field in record.fields.fields where select == nil || select!.contains(field.key) {
            object[field.key] = field.value
        }
        return object
    }

    private func notFound(_ entity: FinanceOperationsEntity) -> HTTPResponse {
        error(404, "No \(entity.typeName) record was found for the key in the current company view.")
    }

    // MARK: - Data events

    /// Posts what the request changed to the data-events endpoints of those entities.
    private func notify() {
        guard !dataEvents.isEmpty else {
            state.withLock { $0.outbox.removeAll() }
            return
        }
        let pending = state.withLock { state -> [Change] in
            defer { state.outbox.removeAll() }
            return state.outbox
        }
        for change in pending {
            guard let entity = Self.entities[change.entity] else { continue }
            for endpoint in dataEvents where endpoint.matches(entity) {
                let body = context(change, entity).jsonBytes
                var webhook = DataverseSimulator.Webhook(table: entity.typeName, url: endpoint.url, key: endpoint.key)
                webhook.retryDelay = endpoint.retryDelay
                Task {
                    await DataverseSimulator.post(body, to: webhook, entity: entity.typeName, message: change.message)
                }
            }
        }
    }

    /// The `RemoteExecutionContext` of a data event ("Data events"): the entity's fields in `Target` (the
    /// record after a create or update, the key fields of a deleted one) and, for updates and
    /// deletes, the record before in `PreImage`, both in `InputParameters`; null date-times
    /// omitted. Who made the change: the Entra application's id in `UserId` and
    /// `InitiatingUserId` (which field F&O fills for an application is not documented;
    /// capture checks both and `InitiatingUserApplicationId`).
    private func context(_ change: Change, _ entity: FinanceOperationsEntity) -> JSONObject {
        func image(_ fields: JSONObject) -> JSONValue {
            var attributes: [JSONValue] = []
            for field in fields.fields where field.value != .null {
                attributes.append(.object(["key": .string(field.key), "value": field.value]))
            }
            return .object(["Attributes": .array(attributes), "LogicalName": .string(entity.typeName)])
        }
        var target = change.after ?? JSONObject()
        if change.after == nil, let before = change.before {
            for name in entity.keys { target[name] = before[name] }
        }
        var parameters: [JSONValue] = [.object(["key": "Target", "value": image(target)])]
        if let before = change.before { parameters.append(.object(["key": "PreImage", "value": image(before)])) }
        let user = change.user.uuidString.lowercased()
        let id = Self.keyText(entity.keys.map { target[$0] ?? .null }).replacingOccurrences(of: "\u{0}", with: "/")
        return [
            "CorrelationId": .string(UUID().uuidString.lowercased()), "InitiatingUserId": .string(user),
            "UserId": .string(user), "InputParameters": .array(parameters), "MessageName": .string(change.message),
            "OperationCreatedOn": .string("/Date(\(Int64(Date().timeIntervalSince1970 * 1000)))/"),
            "OperationId": .string(UUID().uuidString.lowercased()), "PrimaryEntityId": .string(id),
            "PrimaryEntityName": .string(entity.typeName),
        ]
    }

    // MARK: - Helpers

    static func keyText(_ values: [JSONValue]) -> String {
        values.map { text($0).lowercased() }.joined(separator: "\u{0}")
    }

    static func path(_ entity: FinanceOperationsEntity, _ values: [JSONValue]) -> String {
        let literals = zip(entity.keys, values).map { name, value -> (name: String, value: ODataLiteral) in
            if case .number(let number) = value { return (name, .decimal(number)) }
            let text = value.stringValue ?? ""
            return (name, FinanceOperationsEntity.type(of: name) == "Edm.Date" ? .date(text) : .string(text))
        }
        return ODataPath.entity(entity.entitySet, key: literals)
    }

    private static func text(_ value: JSONValue) -> String { value.stringValue ?? value.jsonText }

    /// Values equal as F&O compares them: strings case-insensitively, numbers by value.
    private static func same(_ stored: JSONValue?, _ literal: JSONValue) -> Bool {
        guard let stored else { return literal == .null }
        if case .number(let a) = stored, case .number(let b) = literal {
            return Decimal(string: a) == Decimal(string: b)
        }
        return text(stored).lowercased() == text(literal).lowercased()
    }

    /// Numbers by value, the rest as text.
    private static func ordered(_ a: String, _ b: String) -> Bool {
        if let x = Decimal(string: a), let y = Decimal(string: b), !a.isEmpty, !b.isEmpty,
            a.allSatisfy({ $0.isNumber || $0 == "." || $0 == "-" }),
            b.allSatisfy({ $0.isNumber || $0 == "." || $0 == "-" })
        {
            return x < y
        }
        return a < b
    }

    private static func query(_ request: HTTPRequest) -> [String: String] {
        var query: [String: String] = [:]
        for item in (request.query ?? "").split(separator: "&") {
            let pair = item.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            if pair.count == 2 { query[pair[0]] = pair[1] }
        }
        return query
    }

    private static func select(_ query: [String: String]) -> [String]? {
        query["$select"].map { $0.split(separator: ",").map(String.init) }
    }

    /// An OData error body: `{"error":{"code","message"}}`.
    private func error(_ status: Int, _ message: String) -> HTTPResponse {
        json(status, ["error": .object(["code": "", "message": .string(message)])])
    }

    private func json(_ status: Int, _ object: JSONObject) -> HTTPResponse { ServiceGate.json(status, object) }
}
