import Foundation
import Topology

/// One flow's compiled map for one kind of record: what to do with each source field.
struct MappingPlan: Sendable {
    let kind: RecordKind
    let flow: Flow
    /// Operations by the top-level source field they read.
    let operations: [String: [FieldOperation]]
    /// Constants written on every upsert.
    let constants: [(path: [String], value: JSONValue)]

    /// Rows p2c never sends CRM → ERP: price, discounts and charges are ERP-owned (the line
    /// discount travels through the split rule instead).
    static let erpOwnedFields: Set<String> = [
        "SALESPRICE", "SALESPRICEQUANTITY", "LINEDISCOUNTAMOUNT", "LINEDISCOUNTPERCENTAGE", "MULTILINEDISCOUNTAMOUNT",
        "MULTILINEDISCOUNTPERCENTAGE", "FIXEDPRICECHARGES", "TOTALDISCOUNTAMOUNT", "TOTALDISCOUNTPERCENTAGE",
    ]

    init(kind: RecordKind, flow: Flow, rows: [TableMap.Row]) throws(MappingError) {
        self.kind = kind
        self.flow = flow
        var operations: [String: [FieldOperation]] = [:]
        var constants: [(path: [String], value: JSONValue)] = []
        for row in rows {
            let toCRM = flow == .erpToCRM
            guard toCRM ? row.type.flowsToCRM : row.type.flowsToERP else { continue }
            if !toCRM && (kind.role == .line || kind.role == .header) && Self.erpOwnedFields.contains(row.erpField) {
                continue
            }
            let source = toCRM ? row.erpField : row.crmColumn
            let target = toCRM ? row.crmColumn : row.erpField
            if target == "none" { continue }
            if source == "none" {
                guard let constant = row.constant else {
                    throw MappingError(.missingField, "map \(kind.mapName): constant row for \(target) has no default")
                }
                constants.append((FieldOperation.path(of: target), toCRM ? .crmValue(constant) : .string(constant)))
                continue
            }
            let operation = FieldOperation(source: source, target: target, row: row, toCRM: toCRM)
            operations[operation.sourcePath[0], default: []].append(operation)
        }
        self.operations = operations
        self.constants = constants
    }
}

/// One field row, compiled for one direction.
struct FieldOperation: Sendable {
    let sourcePath: [String]
    let targetPath: [String]
    let transform: Transform
    /// The row's own spelling, for error messages.
    let label: String

    enum Transform: Sendable {
        case copy
        /// Source value (normalised text) → target value.
        case valueMap([String: JSONValue])
        /// CRM `customerid` lookup (account or contact) → ERP customer account.
        case customerToERP
        /// ERP customer account → CRM `customerid` lookup.
        case customerToCRM
    }

    init(source: String, target: String, row: TableMap.Row, toCRM: Bool) {
        label = "\(row.erpField) \(row.type.rawValue) \(row.crmColumn)"
        sourcePath = Self.path(of: source)
        targetPath = Self.path(of: target)
        if row.crmColumn.contains(".Account(") {
            transform = toCRM ? .customerToCRM : .customerToERP
        } else if !row.valueMap.isEmpty {
            var table: [String: JSONValue] = [:]
            for pair in row.valueMap {
                if toCRM {
                    table[pair.erp.lowercased()] = .crmValue(pair.crm)
                } else {
                    table[pair.crm.lowercased()] = .string(pair.erp)
                }
            }
            transform = .valueMap(table)
        } else {
            transform = .copy
        }
    }

    /// `transactioncurrencyid.isocurrencycode` → [transactioncurrencyid, isocurrencycode]; the
    /// polymorphic `customerid.Account(...).Contact(...)` → [customerid].
    static func path(of column: String) -> [String] {
        if let range = column.range(of: ".Account(") { return [String(column[..<range.lowerBound])] }
        return column.split(separator: ".").map(String.init)
    }
}

extension JSONValue {
    /// A CRM value from the reference's text: option sets are integers, two-options are booleans,
    /// other values (country names, decimals) as they read.
    static func crmValue(_ text: String) -> JSONValue {
        switch text.lowercased() {
        case "true": return .bool(true)
        case "false": return .bool(false)
        default:
            if let first = text.first, first == "-" || first.isNumber, JSONValue.parseDecimalString(text) != nil {
                return .number(text)
            }
            return .string(text)
        }
    }

    /// The text a value map looks a source value up by.
    var lookupText: String? {
        switch self {
        case .string(let text): text.lowercased()
        case .number(let text): text
        case .bool(let flag): flag ? "true" : "false"
        default: nil
        }
    }
}
