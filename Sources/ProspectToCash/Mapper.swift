import Foundation
import Topology

/// What became of one input event.
public enum MappingOutcome: Sendable, Equatable {
    /// Events for the target system (usually one; an invoice also sets its order to Invoiced).
    case mapped([MappedEvent])
    /// Deliberately not synced (an echo, a prospect, a free-text invoice...), with the reason.
    case filtered(String)
    /// Refused: it goes to the dead-letter topic with this error.
    case refused(MappingError)

    /// The reason given for an echo of p2c's own write.
    public static let echoReason = "echo of a p2c write (ce_origin p2c)"

    /// Whether this is an echo of p2c's own write, dropped by loop prevention.
    public var isEcho: Bool {
        if case .filtered(let reason) = self { return reason == Self.echoReason }
        return false
    }
}

/// One output event and the stream whose inbound topic it goes to.
public struct MappedEvent: Sendable, Equatable {
    public var stream: SyncStream
    public var event: CloudEvent
}

/// Maps one system's change events to the other system's records: the maps of the dual-write
/// reference, compiled once, plus the prospect-to-cash business rules.
public final class Mapper: Sendable {
    public let configuration: MappingConfiguration
    /// Plans by flow and source record name; customers from the ERP have two (organisation, person).
    private let plans: [PlanKey: [MappingPlan]]
    /// The same for companies with their own field maps.
    private let companyPlans: [String: [PlanKey: [MappingPlan]]]
    private let allowedCompanies: Set<String>
    // Regex is not Sendable; these are built once and only read.
    nonisolated(unsafe) private let crmNumbers: Regex<AnyRegexOutput>?
    nonisolated(unsafe) private let erpNumbers: Regex<AnyRegexOutput>?
    nonisolated(unsafe) private let personCustomers: Regex<AnyRegexOutput>?

    struct PlanKey: Hashable, Sendable {
        var flow: Flow
        var record: String
    }

    /// Compiles the built-in maps with `configuration`'s overrides; fails naming what is wrong.
    public init(
        configuration: MappingConfiguration = MappingConfiguration(), maps: [String: TableMap] = TableMap.builtIn
    )
        throws(MappingError)
    {
        self.configuration = configuration
        allowedCompanies = Set(configuration.companies)
        func regex(_ pattern: String?, _ name: String) throws(MappingError) -> Regex<AnyRegexOutput>? {
            guard let pattern else { return nil }
            do {
                return try Regex(pattern)
            } catch {
                throw MappingError(.wrongFieldType, "\(name): \"\(pattern)\" is not a regular expression")
            }
        }
        crmNumbers = try regex(configuration.numberSequences?.crm, "numberSequences.crm")
        erpNumbers = try regex(configuration.numberSequences?.erp, "numberSequences.erp")
        personCustomers = try regex(configuration.personCustomerPattern, "personCustomerPattern")

        for override in configuration.fieldMaps where maps[override.map] == nil {
            throw MappingError(.unknownType, "fieldMaps: there is no map named \"\(override.map)\"")
        }
        plans = try Self.compile(maps: maps, overrides: configuration.fieldMaps.filter { $0.company == nil })
        var companyPlans: [String: [PlanKey: [MappingPlan]]] = [:]
        for company in Set(configuration.fieldMaps.compactMap(\.company)) {
            companyPlans[company] = try Self.compile(
                maps: maps, overrides: configuration.fieldMaps.filter { $0.company == nil || $0.company == company })
        }
        self.companyPlans = companyPlans
    }

    private static func compile(
        maps: [String: TableMap], overrides: [MappingConfiguration.FieldMapOverride]
    )
        throws(MappingError) -> [PlanKey: [MappingPlan]]
    {
        var result: [PlanKey: [MappingPlan]] = [:]
        for kind in RecordKind.all {
            guard var rows = maps[kind.mapName]?.rows else {
                throw MappingError(.unknownType, "the maps have no \"\(kind.mapName)\"")
            }
            for override in overrides where override.map == kind.mapName {
                let row = try TableMap.Row(override: override)
                // A row for the same pair of fields replaces the built-in one; any other is added.
                rows.removeAll { $0.erpField == row.erpField && $0.crmColumn == row.crmColumn }
                rows.append(row)
            }
            for flow in Flow.allCases where kind.stream.sources.contains(flow.source) {
                let plan = try MappingPlan(kind: kind, flow: flow, rows: rows)
                result[PlanKey(flow: flow, record: kind.name(on: flow.source)), default: []].append(plan)
            }
        }
        return result
    }

    /// Maps `event` for `flow`. `stream` is the stream of the topic it came from, when known;
    /// `origin` identifies the input (topic/partition/offset, or its id) and makes output ids deterministic.
    public func map(_ event: CloudEvent, flow: Flow, stream: SyncStream? = nil, origin: String? = nil) -> MappingOutcome
    {
        do {
            return try mapOrThrow(event, flow: flow, stream: stream, origin: origin ?? event.id)
        } catch {
            return .refused(error)
        }
    }

    private func mapOrThrow(
        _ event: CloudEvent, flow: Flow, stream: SyncStream?, origin: String
    ) throws(MappingError)
        -> MappingOutcome
    {
        if event.origin == "p2c" { return .filtered(MappingOutcome.echoReason) }
        guard event.source == flow.source.rawValue else {
            throw MappingError(
                .wrongDirection, "source \"\(event.source)\" does not feed the \(flow.rawValue) flow")
        }
        guard let (record, action) = event.recordAndAction else {
            throw MappingError(.unknownType, "type \"\(event.type)\" is not <record>.upserted or <record>.deleted")
        }
        let company = try self.company(of: event)
        let key = PlanKey(flow: flow, record: String(record))
        guard let candidates = (companyPlans[company] ?? plans)[key] else {
            let flowsOtherWay = plans[PlanKey(flow: flow == .crmToERP ? .erpToCRM : .crmToERP, record: String(record))]
            if flowsOtherWay != nil || RecordKind.all.contains(where: { $0.name(on: flow.source) == record }) {
                throw MappingError(.wrongDirection, "\(record) does not flow \(flow.rawValue)")
            }
            throw MappingError(.unknownType, "no map for \(flow.source.rawValue) record \"\(record)\"")
        }
        if let stream, !candidates.contains(where: { $0.kind.stream == stream }) {
            throw MappingError(.unknownType, "\(record) does not belong to the \(stream.rawValue) stream")
        }
        let plan = try choosePlan(candidates, event: event, action: action)
        if let reason = filterReason(plan.kind, flow: flow, data: event.data, action: action) {
            return .filtered(reason)
        }
        let number = try documentNumber(plan.kind, flow: flow, data: event.data)
        let subject = "\(company)/\(number)"
        if let given = event.subject, given != subject {
            throw MappingError(.keyMismatch, "subject \"\(given)\" is not \(subject)")
        }
        try checkNumberSequence(plan.kind, number: number)

        var data = try apply(plan, to: event.data, action: action)
        if action == .upserted {
            try applyRules(plan, input: event.data, output: &data, company: company)
        }
        if flow == .crmToERP { data["dataAreaId"] = .string(company) }
        var outputs = [
            MappedEvent(
                stream: plan.kind.stream,
                event: outputEvent(
                    event, type: "\(plan.kind.name(on: flow.target)).\(action.rawValue)",
                    subject: subject, company: company, data: data, id: "\(origin)#0"))
        ]
        if action == .upserted, let extra = try invoicedOrder(plan.kind, input: event.data, company: company) {
            outputs.append(
                MappedEvent(
                    stream: .orders,
                    event: outputEvent(
                        event, type: "salesorder.upserted", subject: extra.subject, company: company,
                        data: extra.data, id: "\(origin)#1")))
        }
        return .mapped(outputs)
    }

    private func outputEvent(
        _ input: CloudEvent, type: String, subject: String, company: String, data: JSONObject, id: String
    )
        -> CloudEvent
    {
        CloudEvent(
            id: id, source: input.source, type: type, time: input.time, subject: subject, company: company,
            origin: nil, causationID: input.id, traceparent: input.traceparent, data: data)
    }

    /// The company: `ce_company`, else the record's `dataAreaId`; both must agree and be allowed.
    private func company(of event: CloudEvent) throws(MappingError) -> String {
        let fromRecord = event.data["dataAreaId"]?.stringValue
        guard let company = event.company ?? fromRecord, !company.isEmpty else {
            throw MappingError(.missingCompany, "neither ce_company nor dataAreaId names the company")
        }
        if let fromRecord, fromRecord.caseInsensitiveCompare(company) != .orderedSame {
            throw MappingError(.keyMismatch, "ce_company \(company) and dataAreaId \(fromRecord) differ")
        }
        if !allowedCompanies.isEmpty && !allowedCompanies.contains(company) {
            throw MappingError(.companyNotAllowed, "company \(company) is not synced by this deployment")
        }
        return company
    }

    private func documentNumber(_ kind: RecordKind, flow: Flow, data: JSONObject) throws(MappingError) -> String {
        let path = flow == .erpToCRM ? [kind.erpKey] : kind.crmKey
        guard let value = data.value(at: path) else {
            throw MappingError(.missingKey, "\(path.joined(separator: ".")) is missing")
        }
        guard case .string(let number) = value, !number.isEmpty else {
            throw MappingError(
                value.stringValue == nil ? .wrongFieldType : .missingKey,
                "\(path.joined(separator: ".")) must be a non-empty string, got a \(value.typeName)")
        }
        return number
    }

    private func checkNumberSequence(_ kind: RecordKind, number: String) throws(MappingError) {
        guard kind.stream == .orders || kind.stream == .quotes, let crmNumbers, let erpNumbers else { return }
        let crm = (try? crmNumbers.wholeMatch(in: number)) != nil
        let erp = (try? erpNumbers.wholeMatch(in: number)) != nil
        if !crm && !erp {
            throw MappingError(
                .numberSequenceClash,
                "\(kind.stream.rawValue) number \(number) follows neither the CRM sequence \(configuration.numberSequences!.crm) nor the ERP sequence \(configuration.numberSequences!.erp): it could overwrite the other side's document"
            )
        }
    }

    /// Runs every field operation of `plan` over the input record.
    private func apply(
        _ plan: MappingPlan, to input: JSONObject, action: CloudEvent.Action
    ) throws(MappingError)
        -> JSONObject
    {
        var output = JSONObject()
        output.fields.reserveCapacity(input.fields.count + plan.constants.count)
        for field in input.fields {
            guard let operations = plan.operations[field.key, hash: field.keyHash] else { continue }
            for operation in operations {
                // The common case: a plain value copied to a field of its own, moved as it was read.
                if case .copy = operation.transform, operation.appendsDirectly, operation.sourcePath.count == 1,
                    !field.isContainer
                {
                    output.fields.append(.init(key: operation.targetPath[0], keyHash: 0, storage: field.storage))
                    continue
                }
                try apply(operation, value: field.value, to: &output)
            }
        }
        if action == .upserted {
            for constant in plan.constants { output.set(path: constant.path, to: constant.value) }
        }
        return output
    }

    private func apply(
        _ operation: FieldOperation, value top: JSONValue, to output: inout JSONObject
    )
        throws(MappingError)
    {
        var value = top
        if operation.sourcePath.count > 1 || operation.transform.readsLookup {
            if case .null = top {
                output.set(path: operation.targetPath, to: .null)
                return
            }
            guard case .object(let lookup) = top else {
                throw MappingError(
                    .wrongFieldType,
                    "\(operation.sourcePath[0]) is a lookup and must be an object, got a \(top.typeName)")
            }
            if operation.sourcePath.count > 1 {
                guard let inner = lookup.value(at: Array(operation.sourcePath.dropFirst())) else { return }
                value = inner
            }
        }
        switch value {
        case .object, .array:
            if !operation.transform.readsLookup {
                throw MappingError(
                    .wrongFieldType,
                    "\(operation.sourcePath.joined(separator: ".")) must be a single value, got a \(value.typeName)")
            }
        default: break
        }
        switch operation.transform {
        case .copy:
            if operation.appendsDirectly {
                output.fields.append(.init(operation.targetPath[0], value))
            } else {
                output.set(path: operation.targetPath, to: value)
            }
        case .valueMap(let table):
            if case .null = value {
                output.set(path: operation.targetPath, to: .null)
                return
            }
            guard let text = value.lookupText, let mapped = table[text] else {
                throw MappingError(
                    .unknownEnumValue,
                    "\(operation.sourcePath.joined(separator: ".")) value \(value.jsonText) has no counterpart (\(operation.label))"
                )
            }
            if operation.appendsDirectly {
                output.fields.append(.init(operation.targetPath[0], mapped))
            } else {
                output.set(path: operation.targetPath, to: mapped)
            }
        case .customerToERP:
            guard case .object(let lookup) = value else { return }
            let account = lookup["accountnumber"] ?? lookup["msdyn_contactpersonid"]
            guard let account, case .string = account else {
                throw MappingError(
                    .wrongFieldType,
                    "\(operation.sourcePath[0]) needs accountnumber or msdyn_contactpersonid as a string")
            }
            output.set(path: operation.targetPath, to: account)
        case .customerToCRM:
            guard case .string(let account) = value else {
                if case .null = value { output.set(path: operation.targetPath, to: .null) }
                return
            }
            let isPerson = personCustomers.map { (try? $0.wholeMatch(in: account)) != nil } ?? false
            output.set(
                path: operation.targetPath,
                to: .object(JSONObject([.init(isPerson ? "msdyn_contactpersonid" : "accountnumber", .string(account))]))
            )
        }
    }
}

extension FieldOperation.Transform {
    var readsLookup: Bool {
        if case .customerToERP = self { return true }
        return false
    }
}

extension TableMap.Row {
    init(override: MappingConfiguration.FieldMapOverride) throws(MappingError) {
        guard let type = TableMap.MapType(rawValue: override.map_type) else {
            throw MappingError(
                .unknownEnumValue, "fieldMaps: map_type \"\(override.map_type)\" is not one of = >< > >> < <<")
        }
        var pairs: [(erp: String, crm: String)] = []
        for pair in override.value_map ?? [] {
            guard pair.count == 2 else {
                throw MappingError(.wrongFieldType, "fieldMaps: value_map entries are [erp, crm] pairs")
            }
            pairs.append((pair[0], pair[1]))
        }
        self.init(
            erpField: override.fo_field, type: type, crmColumn: override.ce_column, constant: override.default,
            valueMap: pairs)
    }
}
