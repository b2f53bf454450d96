import Connectors
import Foundation
import ProspectToCash
import Runtime
import Synchronization

/// A table as its definition in the environment describes it ("Query schema definitions"): what apply needs to write
/// a change event into it by alternate key.
public struct DataverseTableDefinition: Sendable {
    public var logicalName: String
    public var entitySet: String
    public var primaryID: String
    /// Alternate keys, each the logical names of its attributes (a lookup by its attribute name).
    public var keys: [[String]]
    /// Many-to-one relationships: the lookups `@odata.bind` can set.
    public var lookups: [Lookup]

    public struct Lookup: Sendable, Equatable {
        /// The lookup attribute (`customerid`); read back as `_customerid_value`.
        public var attribute: String
        /// The single-valued navigation property to bind (`customerid_account`).
        public var navigation: String
        /// The referenced table's logical name.
        public var target: String

        public init(attribute: String, navigation: String, target: String) {
            self.attribute = attribute
            self.navigation = navigation
            self.target = target
        }
    }

    public init(logicalName: String, entitySet: String, primaryID: String, keys: [[String]], lookups: [Lookup]) {
        self.logicalName = logicalName
        self.entitySet = entitySet
        self.primaryID = primaryID
        self.keys = keys
        self.lookups = lookups
    }

    /// Reads an `EntityDefinitions(LogicalName='…')` answer with its `Keys` and
    /// `ManyToOneRelationships` expanded.
    init?(json: JSONObject) {
        guard let logicalName = json["LogicalName"]?.stringValue, let entitySet = json["EntitySetName"]?.stringValue,
            let primaryID = json["PrimaryIdAttribute"]?.stringValue
        else { return nil }
        var keys: [[String]] = []
        if case .array(let items)? = json["Keys"] {
            for item in items {
                guard case .array(let attributes)? = item.objectValue?["KeyAttributes"] else { continue }
                keys.append(attributes.compactMap(\.stringValue))
            }
        }
        var lookups: [Lookup] = []
        if case .array(let items)? = json["ManyToOneRelationships"] {
            for case .object(let item) in items {
                guard let attribute = item["ReferencingAttribute"]?.stringValue,
                    let navigation = item["ReferencingEntityNavigationPropertyName"]?.stringValue,
                    let target = item["ReferencedEntity"]?.stringValue
                else { continue }
                lookups.append(Lookup(attribute: attribute, navigation: navigation, target: target))
            }
        }
        self.init(logicalName: logicalName, entitySet: entitySet, primaryID: primaryID, keys: keys, lookups: lookups)
    }

    /// The lookups of `attribute`: one, or one per table for a polymorphic lookup (`customerid`).
    public func lookups(of attribute: String) -> [Lookup] { lookups.filter { $0.attribute == attribute } }
}

/// The table definitions apply writes by, read once per table from the environment ("Query schema definitions") and
/// kept for the life of the process: entity set names, alternate keys and navigation properties
/// are whatever the environment says, never assumed.
public final class DataverseSchema: Sendable {
    private let client: ServiceClient
    private let tables = Mutex<[String: DataverseTableDefinition]>([:])
    /// Table definitions read from the environment.
    public let reads = Counter()

    public init(client: ServiceClient) { self.client = client }

    /// The definition of table `logicalName`. Throws `ServiceError` with status 404 when the
    /// environment has no such table, and the error of any other failed read.
    public func table(_ logicalName: String) async throws -> DataverseTableDefinition {
        if let known = tables.withLock({ $0[logicalName] }) { return known }
        reads.add()
        let name = logicalName.replacingOccurrences(of: "'", with: "''")
        let answer = try await client.send(
            "GET",
            "EntityDefinitions(LogicalName='\(name)')?$select=LogicalName,EntitySetName,PrimaryIdAttribute"
                + "&$expand=Keys($select=KeyAttributes),ManyToOneRelationships($select=ReferencingAttribute,"
                + "ReferencedEntity,ReferencingEntityNavigationPropertyName)")
        guard (200..<300).contains(answer.status) else { throw ServiceError(answer) }
        guard let json = answer.json, let table = DataverseTableDefinition(json: json) else {
            throw ServiceError(
                status: answer.status, code: "unexpected_answer",
                message: "table definition of \(logicalName) unreadable")
        }
        tables.withLock { $0[logicalName] = table }
        return table
    }
}
