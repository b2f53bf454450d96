import Foundation

/// One table map of the dual-write mapping reference: an ERP entity, a CRM table and their field rows.
public struct TableMap: Sendable, Equatable {
    /// The map's name in the reference, e.g. `CDS sales order lines -> salesorderdetails`.
    public var name: String
    public var erpEntity: String
    public var crmTable: String
    /// Where the reference documents it.
    public var anchor: String
    public var rows: [Row]

    /// One field row: `fo_field map_type ce_column`, with a constant or value map where given.
    public struct Row: Sendable, Equatable {
        /// ERP field name, or `none` for a constant written to the CRM.
        public var erpField: String
        public var type: MapType
        /// CRM column (dotted for lookups), or `none` for a constant written to the ERP.
        public var crmColumn: String
        /// The constant (`Default` column) of `>>`/`<<` rows without a source field.
        public var constant: String?
        /// Pairs of (ERP value, CRM value).
        public var valueMap: [(erp: String, crm: String)]

        public init(
            erpField: String, type: MapType, crmColumn: String, constant: String? = nil,
            valueMap: [(erp: String, crm: String)] = []
        ) {
            self.erpField = erpField
            self.type = type
            self.crmColumn = crmColumn
            self.constant = constant
            self.valueMap = valueMap
        }

        public static func == (lhs: Row, rhs: Row) -> Bool {
            lhs.erpField == rhs.erpField && lhs.type == rhs.type && lhs.crmColumn == rhs.crmColumn
                && lhs.constant == rhs.constant && lhs.valueMap.elementsEqual(rhs.valueMap) { $0 == $1 }
        }
    }

    /// The legend of the reference: which way a row flows and whether it transforms.
    public enum MapType: String, Sendable, CaseIterable {
        /// Bidirectional.
        case both = "="
        /// Bidirectional, transformed (value map).
        case bothTransformed = "><"
        /// ERP → CRM.
        case toCRM = ">"
        /// ERP → CRM, transformed (value map or constant).
        case toCRMTransformed = ">>"
        /// CRM → ERP.
        case toERP = "<"
        /// CRM → ERP, transformed (value map or constant).
        case toERPTransformed = "<<"

        /// Whether a row of this type flows ERP → CRM.
        public var flowsToCRM: Bool { [.both, .bothTransformed, .toCRM, .toCRMTransformed].contains(self) }
        /// Whether a row of this type flows CRM → ERP.
        public var flowsToERP: Bool { [.both, .bothTransformed, .toERP, .toERPTransformed].contains(self) }
    }
}

// MARK: - Loading the reference's JSON

extension TableMap {
    /// The prospect-to-cash maps built into p2c, keyed by name.
    public static let builtIn: [String: TableMap] = {
        do {
            return try load(json: Array(DualWriteMaps.json.utf8))
        } catch {
            preconditionFailure("the built-in maps do not load: \(error)")
        }
    }()

    /// Reads maps in the mapping reference's JSON shape (`maps.json`).
    public static func load(json: [UInt8]) throws(MappingError) -> [String: TableMap] {
        let parsed: JSONValue
        do {
            parsed = try JSONParser.parse(json)
        } catch {
            throw MappingError(.malformedJSON, "maps: \(error)")
        }
        guard case .object(let maps) = parsed else { throw MappingError(.notAnObject, "maps: not an object") }
        var result: [String: TableMap] = [:]
        for field in maps.fields {
            guard let map = field.value.objectValue, case .array(let rows)? = map["rows"] else {
                throw MappingError(.notAnObject, "map \(field.key): no rows")
            }
            result[field.key] = TableMap(
                name: field.key,
                erpEntity: map["fo_entity"]?.stringValue ?? "",
                crmTable: map["ce_table"]?.stringValue ?? "",
                anchor: map["doc_anchor"]?.stringValue ?? "",
                rows: try rows.map { value throws(MappingError) in try Row(json: value, map: field.key) })
        }
        return result
    }
}

extension TableMap.Row {
    /// A row in the reference's shape: `fo_field`, `map_type`, `ce_column`, `default`, `value_map`.
    public init(json value: JSONValue, map: String) throws(MappingError) {
        guard let row = value.objectValue, let erpField = row["fo_field"]?.stringValue,
            let typeText = row["map_type"]?.stringValue, let crmColumn = row["ce_column"]?.stringValue
        else {
            throw MappingError(.missingField, "map \(map): a row needs fo_field, map_type and ce_column")
        }
        guard let type = TableMap.MapType(rawValue: typeText) else {
            throw MappingError(.unknownEnumValue, "map \(map): map_type \"\(typeText)\" is not one of = >< > >> < <<")
        }
        var pairs: [(erp: String, crm: String)] = []
        if case .array(let entries)? = row["value_map"] {
            for entry in entries {
                guard case .array(let pair) = entry, pair.count == 2, let erp = pair[0].stringValue,
                    let crm = pair[1].stringValue
                else {
                    throw MappingError(.wrongFieldType, "map \(map): value_map entries are [erp, crm] string pairs")
                }
                pairs.append((erp, crm))
            }
        }
        self.init(
            erpField: erpField, type: type, crmColumn: crmColumn, constant: row["default"]?.stringValue, valueMap: pairs
        )
    }
}
