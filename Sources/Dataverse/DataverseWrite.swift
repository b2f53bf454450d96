import Connectors
import Foundation
import OData
import ProspectToCash
import Runtime

/// One change event as a Dataverse write: an upsert by alternate key (`PATCH <set>(<key>)`, "Use Upsert to Create
/// or Update a record") or a delete by it, with the event's lookups as `@odata.bind` to alternate-key URLs ("Use an
/// alternate key to reference a record").
public struct DataverseWrite: Sendable {
    public enum Operation: Sendable {
        /// The columns to set (key columns are in the URL only, "Use Upsert to Create or Update a record").
        case upsert(JSONObject)
        case delete
    }

    public var table: DataverseTableDefinition
    public var operation: Operation
    /// The alternate key, in the order the table defines it.
    public var key: [KeyPart]

    public struct KeyPart: Sendable {
        /// The attribute; a lookup appears in the URL as `_<attribute>_value` ("Use an alternate key to reference a
        /// record").
        public var attribute: String
        public var value: Value
    }

    public enum Value: Sendable {
        case literal(ODataLiteral)
        /// A lookup column of the key: the referenced row's id, once resolved.
        case reference(DataverseReference)
    }

    /// The rows whose ids the key needs (a line's header) before the write can be sent.
    public var references: [DataverseReference] {
        key.compactMap { part in
            if case .reference(let reference) = part.value { return reference }
            return nil
        }
    }

    /// The row this write creates or changes, named by its alternate key, when its key has no
    /// lookup: what a later write's reference to it resolves by.
    public var row: DataverseReference? {
        var parts: [(name: String, value: ODataLiteral)] = []
        for part in key {
            guard case .literal(let literal) = part.value else { return nil }
            parts.append((part.attribute, literal))
        }
        return DataverseReference(
            table: table.logicalName, entitySet: table.entitySet, primaryID: table.primaryID,
            path: ODataPath.entity(table.entitySet, key: parts))
    }

    /// The row it writes, as text: its table and key, a lookup of the key by the row it names.
    public var identity: String {
        var text = table.entitySet
        for part in key {
            switch part.value {
            case .literal(let literal): text += "|\(part.attribute)=\(literal.text)"
            case .reference(let reference): text += "|\(part.attribute)=\(reference.path)"
            }
        }
        return text
    }

    /// The request, given the ids of `references`; nil while one is missing.
    public func message(root: String, ids: [DataverseReference: UUID]) -> ODataMessage? {
        var parts: [(name: String, value: ODataLiteral)] = []
        for part in key {
            switch part.value {
            case .literal(let literal): parts.append((part.attribute, literal))
            case .reference(let reference):
                guard let id = ids[reference] else { return nil }
                parts.append(("_\(part.attribute)_value", .guid(id)))
            }
        }
        let url = root + ODataPath.entity(table.entitySet, key: parts)
        switch operation {
        case .upsert(let columns):
            // If-None-Match: null lets the PATCH create as well as update ("Use Upsert to Create or Update a record").
            return ODataMessage(
                method: "PATCH", url: url,
                headers: HTTPHeaders([("Content-Type", "application/json"), ("If-None-Match", "null")]),
                body: JSONValue.object(columns).jsonBytes)
        case .delete:
            return ODataMessage(method: "DELETE", url: url)
        }
    }
}

/// A row named by an alternate key (`salesorders(msdyn_salesordernumber='C000123')`): what a
/// write's key refers to and what its id is resolved from.
public struct DataverseReference: Sendable, Hashable, CustomStringConvertible {
    public var table: String
    public var entitySet: String
    public var primaryID: String
    /// `<set>(<alternate key>)`, as a URL path segment.
    public var path: String

    public var description: String { path }
}

/// Turns change events into writes by the environment's own table definitions.
public struct DataverseWriteBuilder: Sendable {
    public let schema: DataverseSchema

    public init(schema: DataverseSchema) { self.schema = schema }

    /// The write of a `<table>.upserted` (or `.deleted`) event carrying `record`. Throws
    /// `WriteRefusal` for an event that can never be written (an unknown table, no alternate key
    /// among its columns, a lookup the table does not have), and the schema read's error otherwise.
    public func write(table name: String, deleted: Bool, record: JSONObject) async throws -> DataverseWrite {
        let table: DataverseTableDefinition
        do {
            table = try await schema.table(name)
        } catch let error as ServiceError where error.status == 404 {
            throw WriteRefusal("unknown_table", "the environment has no table \(name): \(error.message)")
        }
        guard
            let keyAttributes = table.keys.first(where: { key in
                key.allSatisfy { attribute in record[attribute].map { $0 != .null } ?? false }
            })
        else {
            throw WriteRefusal(
                "no_alternate_key",
                "\(name): the event carries no alternate key of the table (keys: \(table.keys.map { $0.joined(separator: "+") }.joined(separator: ", ")))"
            )
        }
        var key: [DataverseWrite.KeyPart] = []
        for attribute in keyAttributes {
            let value = record[attribute]!
            if case .object(let nested) = value {
                let (_, reference) = try await self.reference(attribute, nested, in: table)
                key.append(.init(attribute: attribute, value: .reference(reference)))
            } else if let literal = Self.literal(value) {
                key.append(.init(attribute: attribute, value: .literal(literal)))
            } else {
                throw WriteRefusal("bad_key", "\(name).\(attribute): \(value.typeName) cannot be a key value")
            }
        }
        if deleted { return DataverseWrite(table: table, operation: .delete, key: key) }
        var columns = JSONObject()
        for field in record.fields where !keyAttributes.contains(field.key) {
            switch field.value {
            case .object(let nested):
                let (lookup, reference) = try await self.reference(field.key, nested, in: table)
                columns["\(lookup.navigation)@odata.bind"] = .string("/" + reference.path)
            case .null where !table.lookups(of: field.key).isEmpty:
                // A lookup without a value is left as it is, not cleared.
                continue
            default:
                columns[field.key] = field.value
            }
        }
        return DataverseWrite(table: table, operation: .upsert(columns), key: key)
    }

    /// The lookup `attribute` of `table` and the row `nested` names by one of the referenced
    /// table's alternate keys (for a polymorphic lookup, the first table whose key it carries).
    private func reference(
        _ attribute: String, _ nested: JSONObject, in table: DataverseTableDefinition
    ) async throws -> (DataverseTableDefinition.Lookup, DataverseReference) {
        let lookups = table.lookups(of: attribute)
        guard !lookups.isEmpty else {
            throw WriteRefusal("unknown_lookup", "\(table.logicalName) has no lookup \(attribute)")
        }
        for lookup in lookups {
            let target = try await schema.table(lookup.target)
            for key in target.keys {
                let literals = key.compactMap { nested[$0].flatMap(Self.literal) }
                guard literals.count == key.count else { continue }
                return (
                    lookup,
                    DataverseReference(
                        table: target.logicalName, entitySet: target.entitySet, primaryID: target.primaryID,
                        path: ODataPath.entity(target.entitySet, key: Array(zip(key, literals))))
                )
            }
        }
        throw WriteRefusal(
            "lookup_key_missing",
            "\(table.logicalName).\(attribute): \(nested.keys.joined(separator: ",")) is no alternate key of \(lookups.map(\.target).joined(separator: " or "))"
        )
    }

    /// A scalar as a key literal: strings, integers, decimals and booleans.
    static func literal(_ value: JSONValue) -> ODataLiteral? {
        switch value {
        case .string(let text): .string(text)
        case .number(let text): Int64(text).map(ODataLiteral.integer) ?? .decimal(text)
        case .bool(let flag): .boolean(flag)
        default: nil
        }
    }
}
