import Foundation
import OData
import ProspectToCash
import Runtime

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

extension DataverseSimulator {
    /// A webhook registered on a table's Create, Update and Delete ("Register a web hook": a service endpoint
    /// with contract 8 and its steps, asynchronous, post-operation), authenticated by a
    /// `WebhookKey` sent as `?code=<key>`.
    public struct Webhook: Sendable, Equatable {
        public var table: String
        public var url: URL
        public var key: String?
        /// The pause before the one retry a 502, 503 or 504 gets ("Use webhooks to create external handlers for
        /// server events" gives no figure).
        public var retryDelay = Duration.seconds(1)

        public init(table: String, url: URL, key: String? = nil) {
            self.table = table
            self.url = url
            self.key = key
        }

        /// `<table>:<url>[:<key>]`, as `--webhook` takes it (the URL's own colons are kept).
        public init(parsing text: String) throws(UsageError) {
            guard let (table, url, key) = Self.registration(text),
                DataverseTable.p2c.contains(where: { $0.logicalName == table })
            else { throw UsageError("--webhook expects <P2C table>:<http(s) url>[:<key>], got '\(text)'") }
            self.init(table: table, url: url, key: key)
        }

        /// `<name>:<url>[:<key>]` split, the URL's own colons kept; nil unless the URL is http(s).
        static func registration(_ text: String) -> (name: String, url: URL, key: String?)? {
            guard let colon = text.firstIndex(of: ":") else { return nil }
            let name = String(text[..<colon])
            var rest = String(text[text.index(after: colon)...])
            var key: String?
            if let last = rest.lastIndex(of: ":"), !rest[rest.index(after: last)...].contains("/"),
                Int(rest[rest.index(after: last)...]) == nil
            {
                key = String(rest[rest.index(after: last)...])
                rest = String(rest[..<last])
            }
            guard !name.isEmpty, let url = URL(string: rest), url.scheme == "http" || url.scheme == "https" else {
                return nil
            }
            return (name, url, key)
        }
    }

    /// One change to tell the webhooks about.
    struct Notification: Sendable {
        var message: String
        var table: DataverseTable
        var row: Row
        var changed: JSONObject
        var user: UUID
    }

    /// Posts what the request changed to the webhooks registered on those tables.
    func notifyWebhooks() {
        guard !webhooks.isEmpty else { return }
        let pending = state.withLock { state -> [Notification] in
            defer { state.data.outbox.removeAll() }
            return state.data.outbox
        }
        for notification in pending {
            for webhook in webhooks where webhook.table == notification.table.logicalName {
                let body = context(notification).jsonBytes
                Task {
                    await Self.post(
                        body, to: webhook, entity: notification.table.logicalName, message: notification.message)
                }
            }
        }
    }

    /// The `RemoteExecutionContext` of a change (the sample body of "Use webhooks to create external handlers for
    /// server events"): the target's changed attributes, the row after the change (`PostEntityImages`) or before a
    /// delete (`PreEntityImages`), who made it, lookups as `EntityReference`s.
    private func context(_ notification: Notification) -> JSONObject {
        let table = notification.table
        let id = notification.row.id.uuidString.lowercased()
        func entity(_ fields: JSONObject) -> JSONValue {
            var attributes: [JSONValue] = []
            for field in fields.fields {
                var key = field.key
                var value = field.value
                if key.hasPrefix("_") && key.hasSuffix("_value") {
                    key = String(key.dropFirst().dropLast(6))
                    guard
                        let target = notification.row.targets[key]
                            ?? table.lookups.first(where: { $0.attribute == key })?.target,
                        let guid = field.value.stringValue
                    else { continue }
                    value = .object([
                        "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
                        "Id": .string(guid), "LogicalName": .string(target),
                    ])
                }
                attributes.append(.object(["key": .string(key), "value": value]))
            }
            attributes.append(.object(["key": .string(table.primaryID), "value": .string(id)]))
            return .object([
                "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts", "Attributes": .array(attributes),
                "Id": .string(id), "LogicalName": .string(table.logicalName), "KeyAttributes": .array([]),
                "RowVersion": .string(String(notification.row.version)),
            ])
        }
        let user = notification.user.uuidString.lowercased()
        let target: JSONValue =
            notification.message == "Delete"
            ? .object([
                "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts", "Id": .string(id),
                "LogicalName": .string(table.logicalName),
            ]) : entity(notification.changed)
        let image = entity(notification.row.fields)
        return [
            "BusinessUnitId": .string(businessUnitID.uuidString.lowercased()),
            "CorrelationId": .string(UUID().uuidString.lowercased()), "Depth": .number("1"),
            "InitiatingUserId": .string(user), "UserId": .string(user),
            "InputParameters": .array([.object(["key": "Target", "value": target])]),
            "MessageName": .string(notification.message), "Mode": .number("1"),
            "OperationCreatedOn": .string("/Date(\(Int64(Date().timeIntervalSince1970 * 1000)))/"),
            "OperationId": .string(UUID().uuidString.lowercased()),
            "OrganizationId": .string(organizationID.uuidString.lowercased()), "OrganizationName": "p2csim",
            "OutputParameters": .array([]),
            "PostEntityImages": notification.message == "Delete"
                ? .array([]) : .array([.object(["key": "PostImage", "value": image])]),
            "PreEntityImages": notification.message == "Delete"
                ? .array([.object(["key": "PreImage", "value": image])]) : .array([]),
            "PrimaryEntityId": .string(id), "PrimaryEntityName": .string(table.logicalName),
            "SharedVariables": .array([]), "Stage": .number("40"),
        ]
    }

    /// Posts a context with the documented headers; a 502, 503 or 504 gets exactly one more attempt, any other
    /// failure is the system job's failure ("Use webhooks to create external handlers for server events").
    static func post(_ body: [UInt8], to webhook: Webhook, entity: String, message: String) async {
        var url = webhook.url
        if let key = webhook.key, var components = URLComponents(url: url, resolvingAgainstBaseURL: false) {
            components.queryItems = (components.queryItems ?? []) + [URLQueryItem(name: "code", value: key)]
            url = components.url ?? url
        }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.httpBody = Data(body)
        request.timeoutInterval = 60
        for (name, value) in [
            ("Content-Type", "application/json"), ("x-ms-dynamics-entity-name", entity),
            ("x-ms-dynamics-request-name", message), ("x-ms-correlation-request-id", UUID().uuidString.lowercased()),
        ] {
            request.setValue(value, forHTTPHeaderField: name)
        }
        for attempt in 1...2 {
            let status = (try? await URLSession.shared.data(for: request).1 as? HTTPURLResponse)?.statusCode ?? 0
            guard attempt == 1, [502, 503, 504].contains(status) else { return }
            try? await Task.sleep(for: webhook.retryDelay)
        }
    }
}
