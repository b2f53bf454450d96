import Foundation

/// What a deployment decides about mapping; every property has a default, all of it is data.
public struct MappingConfiguration: Sendable, Equatable, Decodable {
    /// The generation of the customer maps: `classic` (customers carry their name, addresses and
    /// contact information) or `party` (the current maps, with the party and global address book
    /// solution). Default: classic.
    public var generation: MapGeneration = .classic
    /// Sync CRM prospect accounts too (not only customers, `customertypecode` 3). Default: false.
    public var syncProspects: Bool = false
    /// Companies (ERP legal entities) this deployment syncs; empty syncs every company. Default: empty.
    public var companies: [String] = []
    /// Regular expressions each side's order and quote numbers follow, e.g. CRM `^C\d+$`, ERP `^F\d+$`;
    /// a number following neither is refused. Default: nil (no check).
    public var numberSequences: NumberSequences? = nil
    /// Per-company line defaults: site, warehouse, write-in product category. Default: empty.
    public var companyDefaults: [String: CompanyDefaults] = [:]
    /// ERP customer accounts matching this expression are person customers (CRM contacts) when an ERP
    /// document names its customer; others are organisations (accounts). Default: nil (all accounts).
    public var personCustomerPattern: String? = nil
    /// Field rows added to or replacing rows of the built-in maps, optionally for one company only
    /// (per-organisation value maps for delivery terms, delivery mode, freight terms, shipping method).
    /// Default: empty.
    public var fieldMaps: [FieldMapOverride] = []

    public init() {}

    public struct NumberSequences: Sendable, Equatable, Decodable {
        public var crm: String
        public var erp: String
        public init(crm: String, erp: String) {
            self.crm = crm
            self.erp = erp
        }
    }

    public struct CompanyDefaults: Sendable, Equatable, Decodable {
        /// Site for ERP quote and order lines that have none. Default: nil.
        public var site: String? = nil
        /// Warehouse for ERP quote and order lines that have none. Default: nil.
        public var warehouse: String? = nil
        /// Sales category for write-in (out-of-catalogue) CRM products. Default: nil.
        public var writeInCategory: String? = nil

        public init(site: String? = nil, warehouse: String? = nil, writeInCategory: String? = nil) {
            self.site = site
            self.warehouse = warehouse
            self.writeInCategory = writeInCategory
        }
    }

    /// One row for a built-in map, in the reference's own shape.
    public struct FieldMapOverride: Sendable, Equatable, Decodable {
        /// The map's name, e.g. `CDS sales order headers -> salesorders`.
        public var map: String
        /// Only for this company; nil for all. Default: nil.
        public var company: String? = nil
        public var fo_field: String
        public var map_type: String
        public var ce_column: String
        public var `default`: String? = nil
        /// Pairs of [ERP value, CRM value]. Default: none.
        public var value_map: [[String]]? = nil

        public init(
            map: String, company: String? = nil, fo_field: String, map_type: String, ce_column: String,
            default constant: String? = nil, value_map: [[String]]? = nil
        ) {
            self.map = map
            self.company = company
            self.fo_field = fo_field
            self.map_type = map_type
            self.ce_column = ce_column
            self.default = constant
            self.value_map = value_map
        }
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case generation, syncProspects, companies, numberSequences, companyDefaults, personCustomerPattern, fieldMaps

        static var allNames: [String] { allCases.map(\.rawValue) }
    }

    /// The first key of a mapping object (as JSON gives it) that no level of it has, as a path
    /// (`numberSequences.crn`, `fieldMaps[2].fo_feld`); nil when every key is known. Values of the
    /// wrong type are left to decoding.
    public static func unknownKey(in mapping: Any) -> String? {
        func unknown(_ value: Any?, _ known: Set<String>) -> String? {
            (value as? [String: Any])?.keys.sorted().first { !known.contains($0) }
        }
        if let key = unknown(mapping, Set(CodingKeys.allNames)) { return key }
        let object = mapping as? [String: Any] ?? [:]
        if let key = unknown(object["numberSequences"], ["crm", "erp"]) { return "numberSequences.\(key)" }
        for (company, defaults) in (object["companyDefaults"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key })
        {
            if let key = unknown(defaults, ["site", "warehouse", "writeInCategory"]) {
                return "companyDefaults.\(company).\(key)"
            }
        }
        let rowKeys: Set<String> = ["map", "company", "fo_field", "map_type", "ce_column", "default", "value_map"]
        for (index, row) in (object["fieldMaps"] as? [Any] ?? []).enumerated() {
            if let key = unknown(row, rowKeys) { return "fieldMaps[\(index)].\(key)" }
        }
        return nil
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let text = try container.decodeIfPresent(String.self, forKey: .generation) {
            guard let generation = MapGeneration(rawValue: text) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .generation, in: container, debugDescription: "must be classic or party, got '\(text)'")
            }
            self.generation = generation
        }
        syncProspects = try container.decodeIfPresent(Bool.self, forKey: .syncProspects) ?? false
        companies = try container.decodeIfPresent([String].self, forKey: .companies) ?? []
        numberSequences = try container.decodeIfPresent(NumberSequences.self, forKey: .numberSequences)
        companyDefaults = try container.decodeIfPresent([String: CompanyDefaults].self, forKey: .companyDefaults) ?? [:]
        personCustomerPattern = try container.decodeIfPresent(String.self, forKey: .personCustomerPattern)
        fieldMaps = try container.decodeIfPresent([FieldMapOverride].self, forKey: .fieldMaps) ?? []
    }
}
