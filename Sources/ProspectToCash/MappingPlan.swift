import Foundation
import Topology

/// One flow's compiled map for one kind of record: what to do with each source field.
final class MappingPlan: Sendable {
    let kind: RecordKind
    let flow: Flow
    /// Operations by the top-level source field they read.
    let operations: OperationTable
    /// Constants written on every upsert.
    let constants: [(path: [String], value: JSONValue)]

    /// Rows p2c never sends CRM → ERP: price, discounts and charges are ERP-owned (the line
    /// discount travels through the split rule instead).
    static let erpOwnedFields: Set<String> = [
        "SALESPRICE", "SALESPRICEQUANTITY", "LINEDISCOUNTAMOUNT", "LINEDISCOUNTPERCENTAGE", "MULTILINEDISCOUNTAMOUNT",
        "MULTILINEDISCOUNTPERCENTAGE", "FIXEDPRICECHARGES", "TOTALDISCOUNTAMOUNT", "TOTALDISCOUNTPERCENTAGE",
    ]

    init(kind: RecordKind, flow: Flow, rows: [TableMap.Row]) throws(ConfigurationError) {
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
                    throw ConfigurationError(
                        "fieldMaps", "map \(kind.mapName): constant row for \(target) has no default")
                }
                constants.append((FieldOperation.path(of: target), toCRM ? .crmValue(constant) : .string(constant)))
                continue
            }
            let operation = FieldOperation(source: source, target: target, row: row, toCRM: toCRM)
            operations[operation.sourcePath[0], default: []].append(operation)
        }
        // A single-level target written by nothing else is appended without looking for it first;
        // read from a plain field, not touched by a rule, it is written straight into the output.
        var writers: [String: Int] = [:]
        for operation in operations.values.joined() { writers[operation.targetPath[0], default: 0] += 1 }
        for constant in constants { writers[constant.path[0], default: 0] += 1 }
        self.operations = OperationTable(
            operations.mapValues { list in
                list.map { operation in
                    let appends = operation.targetPath.count == 1 && writers[operation.targetPath[0]] == 1
                    return FieldOperation(
                        operation, appendsDirectly: appends,
                        streams: appends && operation.sourcePath.count <= 2
                            && !Self.ruleFields.contains(operation.targetPath[0]) && operation.transform.isStreamable)
                }
            })
        self.constants = constants
        let target = kind.name(on: flow.target)
        upsertedTypeBytes = Array("\(target).upserted".utf8)
        deletedTypeBytes = Array("\(target).deleted".utf8)
    }

    /// `ce_type`'s header bytes for `action`.
    func typeBytes(_ action: CloudEvent.Action) -> [UInt8] {
        action == .upserted ? upsertedTypeBytes : deletedTypeBytes
    }
    private let upsertedTypeBytes: [UInt8]
    private let deletedTypeBytes: [UInt8]

    /// Output fields the business rules read or write (Mapper+Rules): operations writing them
    /// go through the record's rule stage instead of straight into the output.
    static let ruleFields: Set<String> = [
        "PRODUCTNUMBER", "SALESPRODUCTCATEGORYNAME", "PRODUCTNAME", "LINEDESCRIPTION", "SHIPPINGSITEID",
        "SHIPPINGWAREHOUSEID", "SALESORDERSTATUS", "DOCUMENTSTATUS", "LINEDISCOUNTAMOUNT", "FIXEDPRICECHARGES",
        "msdyn_processingstatus", "statecode", "manualdiscountamount", "dataAreaId",
    ]

    /// Input fields the filters, the document key, the company and the rules read: decoded for
    /// every record (all other fields are only copied or transformed by their operations).
    static let controlFields: KeyInterner = {
        var names: Set<String> = [
            "dataAreaId", "PARTYTYPE", "customertypecode", "msdyn_sellable", "msdyn_ordertype", "statecode",
            "SALESORDERNUMBER", "manualdiscountamount", "quantity", "productdescription", "msdyn_processingstatus",
            "SALESORDERSTATUS", "DOCUMENTSTATUS", "LINEDISCOUNTAMOUNT", "FIXEDPRICECHARGES", "ORDEREDSALESQUANTITY",
            "REQUESTEDSALESQUANTITY",
        ]
        for kind in RecordKind.all {
            names.insert(kind.erpKey)
            names.insert(kind.crmKey[0])
        }
        return KeyInterner(names: names)
    }()
}

/// One field row, compiled for one direction. A class, so that walking a plan retains one
/// reference per operation instead of copying its arrays and strings.
final class FieldOperation: Sendable {
    let sourcePath: [String]
    let targetPath: [String]
    let transform: Transform
    /// The row's own spelling, for error messages.
    let label: String
    /// Nothing else writes this single-level target, so the value is appended without a lookup.
    let appendsDirectly: Bool
    /// A plain value of the source field is written straight into the output bytes (`targetPrefix`
    /// and the value, or its mapped value).
    let streams: Bool
    /// `"target":` as JSON bytes.
    let targetPrefix: [UInt8]
    /// The UTF-8 of the source's second step (the field inside a lookup), or empty.
    let innerKey: [UInt8]

    enum Transform: Sendable {
        case copy
        /// Source value (normalised text) → target value.
        case valueMap([String: JSONValue])
        /// CRM `customerid` lookup (account or contact) → ERP customer account.
        case customerToERP
        /// ERP customer account → CRM `customerid` lookup.
        case customerToCRM
    }

    /// The same operation, told whether it may append without a lookup.
    init(_ other: FieldOperation, appendsDirectly: Bool, streams: Bool) {
        sourcePath = other.sourcePath
        targetPath = other.targetPath
        transform = other.transform
        label = other.label
        targetPrefix = other.targetPrefix
        innerKey = other.innerKey
        self.appendsDirectly = appendsDirectly
        self.streams = streams
    }

    init(source: String, target: String, row: TableMap.Row, toCRM: Bool) {
        appendsDirectly = false
        streams = false
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
        var writer = JSONWriter(capacity: target.utf8.count + 3)
        writer.write(string: targetPath[0])
        writer.append(UInt8(ascii: ":"))
        targetPrefix = writer.finish()
        innerKey = sourcePath.count > 1 ? Array(sourcePath[1].utf8) : []
    }

    /// `transactioncurrencyid.isocurrencycode` → [transactioncurrencyid, isocurrencycode]; the
    /// polymorphic `customerid.Account(...).Contact(...)` → [customerid].
    static func path(of column: String) -> [String] {
        if let range = column.range(of: ".Account(") { return [String(column[..<range.lowerBound])] }
        return column.split(separator: ".").map(String.init)
    }
}

extension FieldOperation.Transform {
    /// Copies and value maps of a plain value can be written straight into the output.
    var isStreamable: Bool {
        switch self {
        case .copy, .valueMap: true
        case .customerToERP, .customerToCRM: false
        }
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
            if DecimalNumber(text) != nil {
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

/// Field operations by source field name, and what the mapping path needs of them as plain
/// numbers and bytes: walking a record's fields touches no reference count (the operation
/// object is only read on the general path).
struct OperationTable: Sendable {
    struct Step: Sendable {
        /// Index into `operations`.
        var operation: Int32
        /// A plain value is written straight into the output (`FieldOperation.streams`).
        var streams: Bool
        var isCopy: Bool
        /// The source is a field inside a lookup.
        var nested: Bool
        /// Index into `valueMaps` for a value map, else -1.
        var valueMap: Int32
        /// `"target":` and the inner key's UTF-8, as ranges of `text`.
        var prefixStart: Int32
        var prefixEnd: Int32
        var innerStart: Int32
        var innerEnd: Int32
    }

    /// A value map over bytes: the lookup text of a source value (`JSONValue.lookupText`) to the
    /// JSON bytes of its counterpart. A class: a struct of seven arrays was retained and released
    /// seven times over for every value-mapped field of every event.
    final class ValueMap: Sendable {
        let table: NameTable
        /// The counterparts' JSON, as ranges of `OperationTable.text`.
        let starts: [Int32]
        let ends: [Int32]

        init(table: NameTable, starts: [Int32], ends: [Int32]) {
            self.table = table
            self.starts = starts
            self.ends = ends
        }
    }

    /// Source field name → index into `stepStarts`/`stepEnds`.
    private let names: NameTable
    private let stepStarts: [Int32]
    private let stepEnds: [Int32]
    let steps: [Step]
    let valueMaps: [ValueMap]
    /// Prefixes, inner keys and value-map counterparts.
    let text: [UInt8]
    let operations: [FieldOperation]

    init(_ entries: [String: [FieldOperation]]) {
        var text: [UInt8] = []
        var steps: [Step] = []
        var operations: [FieldOperation] = []
        var valueMaps: [ValueMap] = []
        var stepStarts: [Int32] = []
        var stepEnds: [Int32] = []
        var names: [(name: [UInt8], value: Int32)] = []
        func add(_ bytes: some Sequence<UInt8>) -> (Int32, Int32) {
            let start = Int32(text.count)
            text.append(contentsOf: bytes)
            return (start, Int32(text.count))
        }
        for (key, list) in entries.sorted(by: { $0.key < $1.key }) {
            names.append((Array(key.utf8), Int32(stepStarts.count)))
            stepStarts.append(Int32(steps.count))
            for operation in list {
                let prefix = add(operation.targetPrefix)
                let inner = add(operation.innerKey)
                var isCopy = false
                var valueMap: Int32 = -1
                switch operation.transform {
                case .copy: isCopy = true
                case .valueMap(let table):
                    var keys: [(name: [UInt8], value: Int32)] = []
                    var starts: [Int32] = []
                    var ends: [Int32] = []
                    for (source, target) in table.sorted(by: { $0.key < $1.key }) {
                        keys.append((Array(source.utf8), Int32(starts.count)))
                        let range = add(target.jsonBytes)
                        starts.append(range.0)
                        ends.append(range.1)
                    }
                    valueMap = Int32(valueMaps.count)
                    valueMaps.append(ValueMap(table: NameTable(keys), starts: starts, ends: ends))
                default: break
                }
                steps.append(
                    Step(
                        operation: Int32(operations.count), streams: operation.streams, isCopy: isCopy,
                        nested: operation.sourcePath.count == 2, valueMap: valueMap, prefixStart: prefix.0,
                        prefixEnd: prefix.1, innerStart: inner.0, innerEnd: inner.1))
                operations.append(operation)
            }
            stepEnds.append(Int32(steps.count))
        }
        self.names = NameTable(names)
        self.stepStarts = stepStarts
        self.stepEnds = stepEnds
        self.steps = steps
        self.valueMaps = valueMaps
        self.text = text
        self.operations = operations
    }

    /// The steps for the field whose name is `key`, of `NameTable.hash` `hash`.
    @inline(__always)
    func steps(for key: UnsafeBufferPointer<UInt8>, hash: UInt32) -> Range<Int>? {
        guard let index = names.value(for: key, hash: hash) else { return nil }
        return Int(stepStarts[Int(index)])..<Int(stepEnds[Int(index)])
    }
}
