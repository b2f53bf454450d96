import Connectors
import Foundation
import OData
import ProspectToCash
import Runtime
import Synchronization

/// What an F&O environment's `$metadata` says about the P2C entity sets, read once: each set's
/// composite key and its properties in the environment's own spelling, found from the maps'
/// upper-case field names by a case-insensitive match.
public final class FinanceOperationsSchema: Sendable {
    public struct Entity: Sendable {
        public let set: String
        /// The entity type's name: what data events name the entity by.
        public let typeName: String
        /// Key properties, `dataAreaId` among them, in key order.
        public let keys: [CSDL.Property]
        /// Properties by their upper-case name (`CUSTOMERACCOUNT` → `CustomerAccount`).
        public let properties: [String: CSDL.Property]

        init(set: String, type: CSDL.EntityType) {
            self.set = set
            typeName = type.name
            let properties = Dictionary(
                type.properties.map { ($0.name.uppercased(), $0) }, uniquingKeysWith: { first, _ in first })
            self.properties = properties
            keys = type.keys.map { properties[$0.uppercased()] ?? CSDL.Property($0, "Edm.String") }
        }

        /// The OData literal of `value` for `property`: strings quoted, numbers and dates bare.
        public func literal(_ value: JSONValue, for property: CSDL.Property) -> ODataLiteral? {
            let text: String
            switch value {
            case .string(let string): text = string
            case .number(let number): text = number
            case .bool(let flag): return .boolean(flag)
            default: return nil
            }
            switch property.type {
            case "Edm.Int32", "Edm.Int64", "Edm.Int16", "Edm.Byte":
                return Int64(text).map(ODataLiteral.integer)
            case "Edm.Decimal", "Edm.Double", "Edm.Single": return Double(text) == nil ? nil : .decimal(text)
            case "Edm.Date", "Edm.DateTimeOffset": return .date(text)
            case "Edm.Guid": return UUID(uuidString: text).map(ODataLiteral.guid)
            default: return .string(text)
            }
        }
    }

    /// The environment's OData service.
    public let client: ServiceClient
    private let cache = Mutex<[String: Entity]?>(nil)
    /// `$metadata` reads.
    public let reads = Counter()

    public init(client: ServiceClient) {
        self.client = client
    }

    /// The entity set holding `kind`'s records, as this environment declares it.
    public func entity(of kind: RecordKind) async throws -> Entity {
        guard let set = kind.erpEntitySet else {
            throw ServiceError(
                status: 0, code: "unknown_entity", message: "\(kind.erpName) has no documented OData entity set")
        }
        let entities = try await load()
        guard let entity = entities[set] else {
            throw ServiceError(status: 0, code: "unknown_entity", message: "$metadata declares no entity set \(set)")
        }
        return entity
    }

    /// Every entity set of `$metadata`, read once.
    public func load() async throws -> [String: Entity] {
        if let known = cache.withLock({ $0 }) { return known }
        reads.add()
        let response = try await client.sendRaw("GET", "$metadata", body: [], headers: HTTPHeaders())
        guard response.status == 200 else {
            throw ServiceError(
                status: response.status, code: "metadata", message: "$metadata answered \(response.status)")
        }
        let document: CSDL
        do {
            document = try CSDL.parse(response.body)
        } catch {
            throw ServiceError(status: 200, code: "metadata", message: error.description)
        }
        let entities = document.entitySets.reduce(into: [String: Entity]()) { entities, pair in
            entities[pair.key] = Entity(set: pair.key, type: pair.value)
        }
        cache.withLock { $0 = entities }
        return entities
    }
}
