import Foundation

/// The part of an OData service's `$metadata` (CSDL XML, OData 4.0 part 3) that p2c reads: each
/// entity set, its entity type's key and properties in the service's own spelling. Written by the
/// simulators, read by the connectors; a small tag scanner, not an XML library: it takes the
/// elements it knows (`EntityType`, `Key/PropertyRef`, `Property`, `EntitySet`) and skips the rest.
public struct CSDL: Sendable, Equatable {
    public struct EntityType: Sendable, Equatable {
        public var name: String
        public var keys: [String]
        public var properties: [Property]

        public init(name: String, keys: [String], properties: [Property]) {
            self.name = name
            self.keys = keys
            self.properties = properties
        }
    }

    public struct Property: Sendable, Equatable {
        public var name: String
        /// `Edm.String`, `Edm.Decimal`, `Edm.Int64`, `Edm.Date`, `Edm.DateTimeOffset`, or an enum type.
        public var type: String

        public init(_ name: String, _ type: String) {
            self.name = name
            self.type = type
        }
    }

    public var namespace: String
    /// Entity set name → its entity type.
    public var entitySets: [String: EntityType]

    public init(namespace: String, entitySets: [String: EntityType]) {
        self.namespace = namespace
        self.entitySets = entitySets
    }

    /// The document, entity sets sorted by name.
    public func encoded() -> [UInt8] {
        var text = """
            <?xml version="1.0" encoding="utf-8"?>
            <edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
            <edmx:DataServices>
            <Schema Namespace="\(namespace)" xmlns="http://docs.oasis-open.org/odata/ns/edm">

            """
        let sets = entitySets.sorted { $0.key < $1.key }
        var written = Set<String>()
        for (_, type) in sets where written.insert(type.name).inserted {
            text += "<EntityType Name=\"\(Self.escaped(type.name))\">\n<Key>\n"
            for key in type.keys { text += "<PropertyRef Name=\"\(Self.escaped(key))\" />\n" }
            text += "</Key>\n"
            for property in type.properties {
                let nullable = type.keys.contains(property.name) ? " Nullable=\"false\"" : ""
                text +=
                    "<Property Name=\"\(Self.escaped(property.name))\" Type=\"\(Self.escaped(property.type))\"\(nullable) />\n"
            }
            text += "</EntityType>\n"
        }
        text += "<EntityContainer Name=\"Resources\">\n"
        for (name, type) in sets {
            text +=
                "<EntitySet Name=\"\(Self.escaped(name))\" EntityType=\"\(namespace).\(Self.escaped(type.name))\" />\n"
        }
        text += "</EntityContainer>\n</Schema>\n</edmx:DataServices>\n</edmx:Edmx>\n"
        return Array(text.utf8)
    }

    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Reads a `$metadata` document: every entity set whose entity type it declares.
    public static func parse(_ bytes: [UInt8]) throws(ParseError) -> CSDL {
        var namespace = ""
        var types: [String: EntityType] = [:]
        var sets: [(name: String, type: String)] = []
        var current: EntityType?
        var inKey = false
        var index = 0
        while let open = bytes[index...].firstIndex(of: UInt8(ascii: "<")) {
            guard let close = bytes[open...].firstIndex(of: UInt8(ascii: ">")) else {
                throw ParseError(description: "$metadata: an unterminated tag")
            }
            index = close + 1
            let tag = String(decoding: bytes[(open + 1)..<close], as: UTF8.self)
            let closing = tag.hasPrefix("/")
            let name = tag.drop { $0 == "/" }.prefix { !$0.isWhitespace && $0 != "/" }
            // Element names may carry a prefix (`edm:EntityType`).
            let local = name.split(separator: ":").last.map(String.init) ?? ""
            switch (local, closing) {
            case ("Schema", false):
                if namespace.isEmpty { namespace = attribute("Namespace", in: tag) ?? "" }
            case ("EntityType", false):
                guard let typeName = attribute("Name", in: tag) else { continue }
                current = EntityType(name: typeName, keys: [], properties: [])
                if tag.hasSuffix("/") {
                    types[typeName] = current
                    current = nil
                }
            case ("EntityType", true):
                if let type = current { types[type.name] = type }
                current = nil
            case ("Key", false): inKey = true
            case ("Key", true): inKey = false
            case ("PropertyRef", false):
                if inKey, let key = attribute("Name", in: tag) { current?.keys.append(key) }
            case ("Property", false):
                if let property = attribute("Name", in: tag) {
                    current?.properties.append(Property(property, attribute("Type", in: tag) ?? "Edm.String"))
                }
            case ("EntitySet", false):
                if let set = attribute("Name", in: tag), let type = attribute("EntityType", in: tag) {
                    sets.append((set, type))
                }
            default: continue
            }
        }
        guard !namespace.isEmpty || !types.isEmpty else {
            throw ParseError(description: "$metadata: no Schema or EntityType found")
        }
        var entitySets: [String: EntityType] = [:]
        for set in sets {
            let typeName = set.type.split(separator: ".").last.map(String.init) ?? set.type
            if let type = types[typeName] { entitySets[set.name] = type }
        }
        return CSDL(namespace: namespace, entitySets: entitySets)
    }

    /// The value of `name="…"` in a tag, unescaped.
    private static func attribute(_ name: String, in tag: String) -> String? {
        guard let start = tag.range(of: " \(name)=\"") else { return nil }
        let rest = tag[start.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return unescaped(String(rest[..<end]))
    }

    private static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "\"", with: "&quot;")
            .replacingOccurrences(of: "<", with: "&lt;")
    }

    private static func unescaped(_ text: String) -> String {
        guard text.contains("&") else { return text }
        return text.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&lt;", with: "<")
            .replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }
}
