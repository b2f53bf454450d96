import Foundation
import Topology

/// What became of one input event.
public enum MappingOutcome: Sendable, Equatable {
    /// Events for the target system (usually one; an invoice also sets its order to Invoiced).
    case mapped([MappedEvent])
    /// Deliberately not synced (an echo, a prospect, a free-text invoice...), with the reason.
    case filtered(FilterReason)
    /// Refused: it goes to the dead-letter topic with this error.
    case refused(MappingError)

    /// Whether this is an echo of p2c's own write, dropped by loop prevention.
    public var isEcho: Bool { self == .filtered(.echo) }
}

/// Why an event is deliberately not synced.
public enum FilterReason: Sendable, Equatable, CustomStringConvertible {
    /// The echo of a p2c write (`ce_origin` p2c): loop prevention.
    case echo
    /// A business rule holds it back (a prospect, a free-text invoice...), as the text says.
    case rule(String)

    public var description: String {
        switch self {
        case .echo: "echo of a p2c write (ce_origin p2c)"
        case .rule(let text): text
        }
    }
}

/// One output event and the stream whose inbound topic it goes to: its attributes, and the
/// record as the JSON bytes of its Kafka value (binary mode).
public struct MappedEvent: Sendable, Equatable {
    public var stream: SyncStream
    /// The record, compact JSON.
    public var value: [UInt8]
    /// The output's attributes as the UTF-8 of its headers: its own id, type, subject and company,
    /// the input's source, time and trace context, and the input's id as the causation id (an
    /// input's header bytes are shared, not copied).
    let id: [UInt8]
    let type: [UInt8]
    let subject: [UInt8]
    let company: [UInt8]
    let source: [UInt8]
    let time: [UInt8]?
    let causationID: [UInt8]
    let traceparent: [UInt8]?

    init(
        stream: SyncStream, value: [UInt8], input: borrowing CloudEvent.Attributes, id: [UInt8], type: [UInt8],
        subject: [UInt8], company: [UInt8]
    ) {
        self.stream = stream
        self.value = value
        self.id = id
        self.type = type
        self.subject = subject
        self.company = company
        source = input.source ?? []
        time = input.time
        causationID = input.id ?? []
        traceparent = input.traceparent
    }

    /// The event's attributes (its `data` is left empty; the record is `value`).
    public var attributes: CloudEvent {
        let text = CloudEvent.Attributes.text
        return CloudEvent(
            id: text(id)!, source: text(source)!, type: text(type)!, time: text(time), subject: text(subject),
            company: text(company), origin: nil, causationID: text(causationID), traceparent: text(traceparent),
            data: JSONObject())
    }

    /// Calls `body` with each Kafka header of the event (binary mode), in order, as
    /// `CloudEvent.forEachHeader` would write them.
    public func forEachHeader(_ body: (String, [UInt8]) -> Void) {
        body("ce_specversion", CloudEvent.specVersionBytes)
        body("ce_id", id)
        body("ce_source", source)
        body("ce_type", type)
        if let time { body("ce_time", time) }
        body("ce_subject", subject)
        body("ce_company", company)
        body("ce_causationid", causationID)
        if let traceparent { body("ce_traceparent", traceparent) }
        body("content-type", CloudEvent.contentTypeBytes)
    }

    /// The Kafka key: the subject's UTF-8.
    public var key: [UInt8]? { subject }

    /// The whole event, its record decoded from `value`.
    public var event: CloudEvent {
        var event = attributes
        do {
            if case .object(let data) = try JSONParser.parseLazily(value) { event.data = data }
        } catch {
            preconditionFailure("the mapper wrote JSON that does not parse: \(error)")
        }
        return event
    }
}

/// Maps one system's change events to the other system's records: the maps of the dual-write
/// reference, compiled once, plus the prospect-to-cash business rules.
public final class Mapper: Sendable {
    public let configuration: MappingConfiguration
    /// Plans by flow and source record name; customers from the ERP have two (organisation, person).
    private let plans: PlanIndex
    /// The same for companies with their own field maps.
    private let companyPlans: [String: PlanIndex]
    private let allowedCompanies: Set<String>
    private let crmNumbers: NumberPattern?
    private let erpNumbers: NumberPattern?
    private let personCustomers: NumberPattern?

    struct PlanKey: Hashable, Sendable {
        var flow: Flow
        var record: String
    }

    /// Compiles the built-in maps of `configuration`'s generation (or `maps`) with its overrides;
    /// fails naming the setting that is wrong.
    public init(
        configuration: MappingConfiguration = MappingConfiguration(), maps: [String: TableMap]? = nil
    )
        throws(ConfigurationError)
    {
        let maps = maps ?? TableMap.maps(for: configuration.generation)
        self.configuration = configuration
        allowedCompanies = Set(configuration.companies)
        func regex(_ pattern: String?, _ name: String) throws(ConfigurationError) -> NumberPattern? {
            guard let pattern else { return nil }
            do {
                return try NumberPattern(pattern)
            } catch {
                throw ConfigurationError(name, "\"\(pattern)\" is not a regular expression")
            }
        }
        crmNumbers = try regex(configuration.numberSequences?.crm, "numberSequences.crm")
        erpNumbers = try regex(configuration.numberSequences?.erp, "numberSequences.erp")
        personCustomers = try regex(configuration.personCustomerPattern, "personCustomerPattern")

        for override in configuration.fieldMaps where maps[override.map] == nil {
            throw ConfigurationError("fieldMaps", "there is no map named \"\(override.map)\"")
        }
        let kinds = RecordKind.kinds(for: configuration.generation)
        plans = try Self.compile(
            kinds: kinds, maps: maps, overrides: configuration.fieldMaps.filter { $0.company == nil })
        var companyPlans: [String: PlanIndex] = [:]
        for company in Set(configuration.fieldMaps.compactMap(\.company)) {
            companyPlans[company] = try Self.compile(
                kinds: kinds, maps: maps,
                overrides: configuration.fieldMaps.filter { $0.company == nil || $0.company == company })
        }
        self.companyPlans = companyPlans
    }

    private static func compile(
        kinds: [RecordKind], maps: [String: TableMap], overrides: [MappingConfiguration.FieldMapOverride]
    )
        throws(ConfigurationError) -> PlanIndex
    {
        var result: [PlanKey: [MappingPlan]] = [:]
        for kind in kinds {
            guard var rows = maps[kind.mapName]?.rows else {
                throw ConfigurationError("maps", "the maps have no \"\(kind.mapName)\"")
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
        return PlanIndex(result)
    }

    /// Maps `event` for `flow`. `stream` is the stream of the topic it came from, when known;
    /// `origin` identifies the input (topic/partition/offset, or its id) and makes output ids deterministic.
    public func map(_ event: CloudEvent, flow: Flow, stream: SyncStream? = nil, origin: String? = nil) -> MappingOutcome
    {
        let attributes = CloudEvent.Attributes(event)
        let bytes = event.data.jsonBytes
        return bytes.withUnsafeBufferPointer { buffer in
            do {
                guard let members = try JSONParser.scanMembers(buffer) else {
                    preconditionFailure("a JSON object was not written as one")
                }
                return try mapOrThrow(
                    attributes, input: RecordInput(bytes, buffer, members), flow: flow, stream: stream,
                    origin: origin ?? event.id)
            } catch let error as MappingError {
                return .refused(error)
            } catch {
                preconditionFailure("written JSON does not scan: \(error)")
            }
        }
    }

    /// Maps one event read in Kafka binary mode: attributes from its headers, the record from the
    /// Kafka value, which is read once, in place, and never decoded as a whole.
    public func map(
        attributes: CloudEvent.Attributes, value: [UInt8]?, flow: Flow, stream: SyncStream? = nil, origin: String
    ) -> MappingOutcome {
        guard let value, !value.isEmpty else {
            return .refused(MappingError(.notAnObject, "the record value is empty"))
        }
        return value.withUnsafeBufferPointer { buffer in
            do {
                let members: [JSONParser.Member]
                do {
                    guard let scanned = try JSONParser.scanMembers(buffer) else {
                        let parsed = try JSONParser.parse(buffer)
                        throw MappingError(.notAnObject, "the record value is a JSON \(parsed.typeName), not an object")
                    }
                    members = scanned
                } catch let error as JSONParseError {
                    throw MappingError(.malformedJSON, "the record value is not JSON: \(error)")
                }
                // The attributes are checked after the value's own defects.
                try attributes.check()
                return try mapOrThrow(
                    attributes, input: RecordInput(value, buffer, members), flow: flow, stream: stream, origin: origin)
            } catch let error as MappingError {
                return .refused(error)
            } catch {
                return .refused(MappingError(.malformedJSON, "\(error)"))
            }
        }
    }

    /// An event's attributes and its record, scanned.
    private func mapOrThrow(
        _ attributes: CloudEvent.Attributes, input: RecordInput, flow: Flow, stream: SyncStream?, origin: String
    ) throws(MappingError)
        -> MappingOutcome
    {
        let text = CloudEvent.Attributes.text
        if let origin = attributes.origin, origin.elementsEqual("p2c".utf8) {
            return .filtered(.echo)
        }
        let source = attributes.source ?? []
        guard source.elementsEqual(flow.source.rawValue.utf8) else {
            throw MappingError(
                .wrongDirection, "source \"\(text(source)!)\" does not feed the \(flow.rawValue) flow")
        }
        let type = attributes.type ?? []
        guard let (recordLength, action) = type.withUnsafeBufferPointer({ CloudEvent.split(type: $0) }) else {
            throw MappingError(
                .unknownType, "type \"\(text(type)!)\" is not <record>.upserted or <record>.deleted")
        }
        let control = input.control
        let company = try self.company(of: attributes, control: control)
        let index = companyPlans.isEmpty ? plans : companyPlans[company] ?? plans
        guard let candidates = index.plans(flow: flow, type: type, recordLength: recordLength) else {
            let record = Substring(text(Array(type[..<recordLength]))!)
            let flowsOtherWay = plans.plans(
                flow: flow == .crmToERP ? .erpToCRM : .crmToERP, type: type, recordLength: recordLength)
            if let kind = RecordKind.all.first(where: { $0.name(on: flow.source) == record }), kind.stream.isParty,
                configuration.generation != .party
            {
                throw MappingError(
                    .unknownType,
                    "\(record) belongs to the \(kind.stream.rawValue) stream, synced only with mapping generation party"
                )
            }
            if flowsOtherWay != nil || RecordKind.all.contains(where: { $0.name(on: flow.source) == record }) {
                throw MappingError(.wrongDirection, "\(record) does not flow \(flow.rawValue)")
            }
            throw MappingError(.unknownType, "no map for \(flow.source.rawValue) record \"\(record)\"")
        }
        if let stream, !candidates.contains(where: { $0.kind.stream == stream }) {
            throw MappingError(
                .unknownType,
                "\(text(Array(type[..<recordLength]))!) does not belong to the \(stream.rawValue) stream")
        }
        let plan = try choosePlan(candidates, data: control, action: action)
        if let reason = filterReason(plan.kind, flow: flow, data: control, action: action) {
            return .filtered(.rule(reason))
        }
        let number = try documentNumber(plan.kind, flow: flow, data: control)
        let subject = String(company, "/", number)
        // The input's subject (or key) and company are the output's when they agree, shared as they are.
        var subjectBytes = attributes.subject ?? []
        if let given = attributes.subject {
            guard given.elementsEqual(subject.utf8) else {
                throw MappingError(.keyMismatch, "subject \"\(text(given)!)\" is not \(subject)")
            }
        } else {
            subjectBytes = Array(subject.utf8)
        }
        let companyBytes = attributes.company ?? Array(company.utf8)
        try checkNumberSequence(plan.kind, number: number)

        let value = try write(plan, input: input, action: action, company: company)
        var outputs = [
            MappedEvent(
                stream: plan.kind.stream, value: value, input: attributes, id: Self.outputID(origin, 0),
                type: plan.typeBytes(action), subject: subjectBytes, company: companyBytes)
        ]
        if action == .upserted, let extra = try invoicedOrder(plan.kind, input: control, company: company) {
            outputs.append(
                MappedEvent(
                    stream: .orders, value: extra.data.jsonBytes, input: attributes, id: Self.outputID(origin, 1),
                    type: Self.salesOrderUpserted, subject: Array(extra.subject.utf8), company: companyBytes))
        }
        return .mapped(outputs)
    }

    private static let salesOrderUpserted = Array("salesorder.upserted".utf8)

    /// The id of output `index` of the input at `origin`: `<origin>#<index>`.
    private static func outputID(_ origin: String, _ index: UInt8) -> [UInt8] {
        var origin = origin
        return origin.withUTF8 { head in
            [UInt8](unsafeUninitializedCapacity: head.count + 2) { buffer, count in
                _ = buffer.initialize(fromContentsOf: head)
                buffer[head.count] = UInt8(ascii: "#")
                buffer[head.count + 1] = UInt8(ascii: "0") + index
                count = head.count + 2
            }
        }
    }

    /// The company: `ce_company`, else the record's `dataAreaId`; both must agree and be allowed.
    private func company(of attributes: CloudEvent.Attributes, control: JSONObject) throws(MappingError) -> String {
        let fromRecord = control["dataAreaId"]?.stringValue
        guard let company = CloudEvent.Attributes.text(attributes.company) ?? fromRecord, !company.isEmpty else {
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
        if !crmNumbers.matches(number) && !erpNumbers.matches(number) {
            throw MappingError(
                .numberSequenceClash,
                "\(kind.stream.rawValue) number \(number) follows neither the CRM sequence \(configuration.numberSequences!.crm) nor the ERP sequence \(configuration.numberSequences!.erp): it could overwrite the other side's document"
            )
        }
    }

    /// The output record of `plan` as JSON bytes. Plain values of fields no rule touches are
    /// written straight into the bytes as the input is walked; what needs a lookup, a nested
    /// target, a constant or a rule is gathered in a small object written after them.
    private func write(
        _ plan: MappingPlan, input: RecordInput, action: CloudEvent.Action, company: String
    ) throws(MappingError) -> [UInt8] {
        let buffer = input.buffer
        var writer = JSONWriter(capacity: buffer.count + 256)
        writer.append(UInt8(ascii: "{"))
        var gathered = JSONObject()
        gathered.fields.reserveCapacity(16)
        let table = plan.operations
        try table.steps.withUnsafeBufferPointer { steps throws(MappingError) in
            try table.text.withUnsafeBufferPointer { text throws(MappingError) in
                for member in input.members {
                    let found: Range<Int>?
                    if member.plainKey {
                        found = table.steps(
                            for: UnsafeBufferPointer(rebasing: buffer[member.keyRange]), hash: member.keyHash)
                    } else {
                        var key = member.key(in: buffer)
                        found = key.withUTF8 { table.steps(for: $0, hash: NameTable.hash($0)) }
                    }
                    guard let found else { continue }
                    for index in found {
                        try write(
                            steps[index], of: member, table: table, text: text, input: input, to: &writer,
                            gathering: &gathered)
                    }
                }
            }
        }
        if action == .upserted {
            for constant in plan.constants { gathered.set(path: constant.path, to: constant.value) }
            try applyRules(plan, input: input.control, output: &gathered, company: company)
        }
        if plan.flow == .crmToERP { gathered["dataAreaId"] = .string(company) }
        for field in gathered.fields { writer.member(field) }
        writer.append(UInt8(ascii: "}"))
        return writer.finish()
    }

    /// One step for one member: written straight into the output when it can be, else gathered.
    @inline(__always)
    private func write(
        _ step: OperationTable.Step, of member: JSONParser.Member, table: OperationTable,
        text: UnsafeBufferPointer<UInt8>, input: RecordInput, to writer: inout JSONWriter,
        gathering gathered: inout JSONObject
    ) throws(MappingError) {
        let buffer = input.buffer
        let inner = UnsafeBufferPointer(rebasing: text[Int(step.innerStart)..<Int(step.innerEnd)])
        if step.streams {
            var value = (range: member.valueRange, plainString: member.plainString)
            if step.nested {
                // A field inside a lookup: found without decoding the lookup; a null lookup
                // writes null, a missing field nothing.
                switch buffer[value.range.lowerBound] {
                case UInt8(ascii: "{"):
                    guard
                        let found = JSONParser.member(
                            named: inner, in: UnsafeBufferPointer(rebasing: buffer[value.range]))
                    else { return }
                    value = (found.range.shifted(by: value.range.lowerBound), found.plainString)
                case UInt8(ascii: "n"): break
                default: value.range = value.range.lowerBound..<value.range.lowerBound
                }
            }
            if !value.range.isEmpty, buffer[value.range.lowerBound] != UInt8(ascii: "{"),
                buffer[value.range.lowerBound] != UInt8(ascii: "[")
            {
                let prefix = UnsafeBufferPointer(rebasing: text[Int(step.prefixStart)..<Int(step.prefixEnd)])
                let bytes = UnsafeBufferPointer(rebasing: buffer[value.range])
                if step.isCopy {
                    writer.member(prefix, raw: bytes)
                } else if step.valueMap >= 0,
                    let mapped = Self.mapped(
                        bytes, plainString: value.plainString, by: table.valueMaps[Int(step.valueMap)], text: text)
                {
                    writer.member(prefix, raw: mapped)
                } else {
                    // Null, a value the map lacks (refused below) or text that is not plain ASCII.
                    let decoded = JSONParser.value(in: buffer, value.range, plainString: value.plainString)
                    writer.member(prefix, try mappedValue(table.operations[Int(step.operation)], decoded))
                }
                return
            }
        }
        // Anything else (and every error) takes the general path; a field inside a lookup is
        // decoded alone. A plain copy for the rule stage keeps the input's bytes, decoded only
        // if a rule reads it.
        let operation = table.operations[Int(step.operation)]
        let copiesRaw: Bool
        if case .copy = operation.transform, operation.appendsDirectly { copiesRaw = true } else { copiesRaw = false }
        if step.nested, buffer[member.valueRange.lowerBound] == UInt8(ascii: "{") {
            guard
                let found = JSONParser.member(
                    named: inner, in: UnsafeBufferPointer(rebasing: buffer[member.valueRange]))
            else { return }
            let range = found.range.shifted(by: member.valueRange.lowerBound)
            if copiesRaw, !JSONParser.isContainer(buffer[range.lowerBound]) {
                gathered.fields.append(
                    input.rawField(operation.targetPath[0], range: range, plainString: found.plainString))
                return
            }
            try apply(
                operation, inner: JSONParser.value(in: buffer, range, plainString: found.plainString), to: &gathered)
            return
        }
        if copiesRaw, !step.nested, !member.isContainer(in: buffer) {
            gathered.fields.append(
                input.rawField(operation.targetPath[0], range: member.valueRange, plainString: member.plainString))
            return
        }
        try apply(operation, value: member.value(in: buffer), to: &gathered)
    }

    /// The JSON bytes `map` gives for the scalar JSON `value`, looked up by the same text as
    /// `JSONValue.lookupText` (a string lowercased, a number or boolean as written); nil for
    /// null, a value the map lacks, or a string with escapes or non-ASCII text.
    @inline(__always)
    private static func mapped(
        _ value: UnsafeBufferPointer<UInt8>, plainString: Bool, by map: OperationTable.ValueMap,
        text: UnsafeBufferPointer<UInt8>
    ) -> UnsafeBufferPointer<UInt8>? {
        let found: Int32?
        switch value[0] {
        case UInt8(ascii: "\""):
            let length = value.count - 2
            guard plainString, length <= 64 else { return nil }
            found = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { lower -> Int32? in
                for index in 0..<length {
                    let byte = value[index + 1]
                    guard byte < 0x80 else { return nil }
                    lower[index] = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
                }
                let key = UnsafeBufferPointer(rebasing: lower[0..<length])
                return map.table.value(for: key, hash: NameTable.hash(key))
            }
        case UInt8(ascii: "n"): return nil
        default: found = map.table.value(for: value, hash: NameTable.hash(value))
        }
        guard let found else { return nil }
        return UnsafeBufferPointer(rebasing: text[Int(map.starts[Int(found)])..<Int(map.ends[Int(found)])])
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
                guard let inner = lookup.value(at: operation.sourcePath.dropFirst()) else { return }
                value = inner
            }
        }
        try apply(operation, inner: value, to: &output)
    }

    /// `operation` on the value it reads (for a field inside a lookup, that field's value).
    private func apply(
        _ operation: FieldOperation, inner value: JSONValue, to output: inout JSONObject
    )
        throws(MappingError)
    {
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
        case .valueMap:
            let mapped = try mappedValue(operation, value)
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
            let isPerson = personCustomers?.matches(account) ?? false
            output.set(
                path: operation.targetPath,
                to: .object(JSONObject([.init(isPerson ? "msdyn_contactpersonid" : "accountnumber", .string(account))]))
            )
        }
    }
}

extension Mapper {
    /// The value map's counterpart of `value` (null stays null).
    func mappedValue(_ operation: FieldOperation, _ value: JSONValue) throws(MappingError) -> JSONValue {
        guard case .valueMap(let table) = operation.transform else { return value }
        if case .null = value { return .null }
        guard let text = value.lookupText, let mapped = table[text] else {
            throw MappingError(
                .unknownEnumValue,
                "\(operation.sourcePath.joined(separator: ".")) value \(value.jsonText) has no counterpart (\(operation.label))"
            )
        }
        return mapped
    }
}

/// Plans by flow and source record name, searched linearly over flat arrays: there are a few
/// dozen, and an event's record name is compared as bytes, without building a `String`.
struct PlanIndex: Sendable {
    private let flows: [Flow]
    private let nameStarts: [Int]
    private let nameLengths: [Int]
    private let names: [UInt8]
    private let entries: [[MappingPlan]]

    init(_ plans: [Mapper.PlanKey: [MappingPlan]]) {
        let sorted = plans.sorted { ($0.key.record, $0.key.flow.rawValue) < ($1.key.record, $1.key.flow.rawValue) }
        var names: [UInt8] = []
        var starts: [Int] = []
        for (key, _) in sorted {
            starts.append(names.count)
            names.append(contentsOf: key.record.utf8)
        }
        flows = sorted.map(\.key.flow)
        nameStarts = starts
        nameLengths = sorted.map(\.key.record.utf8.count)
        self.names = names
        entries = sorted.map(\.value)
    }

    /// The plans for the record named by the first `recordLength` bytes of `type`.
    func plans(flow: Flow, type: [UInt8], recordLength: Int) -> [MappingPlan]? {
        let found: Int? = type.withUnsafeBufferPointer { bytes in
            names.withUnsafeBufferPointer { names in
                for index in flows.indices
                where flows[index] == flow && nameLengths[index] == recordLength
                    && (recordLength == 0
                        || memcmp(names.baseAddress! + nameStarts[index], bytes.baseAddress!, recordLength) == 0)
                {
                    return index
                }
                return nil
            }
        }
        return found.map { entries[$0] }
    }
}

/// A record being mapped: its scanned members, and the fields the filters, keys and rules read.
struct RecordInput {
    /// The record's JSON, and the same bytes in place (`bytes` is what raw output fields share).
    let bytes: [UInt8]
    let buffer: UnsafeBufferPointer<UInt8>
    let members: [JSONParser.Member]
    /// The values of `MappingPlan.controlFields` present in the record, kept as the input's bytes
    /// and decoded where a filter, key or rule reads them.
    let control: JSONObject

    init(_ bytes: [UInt8], _ buffer: UnsafeBufferPointer<UInt8>, _ members: [JSONParser.Member]) {
        self.bytes = bytes
        self.buffer = buffer
        self.members = members
        var control = JSONObject()
        control.fields.reserveCapacity(8)
        let controlFields = MappingPlan.controlFields
        for member in members {
            let name: String?
            if member.plainKey {
                name = controlFields.lookup(
                    hash: member.keyHash, bytes: UnsafeBufferPointer(rebasing: buffer[member.keyRange]))
            } else {
                let key = member.key(in: buffer)
                name = controlFields.contains(key) ? key : nil
            }
            if let name {
                control.fields.append(
                    Self.rawField(name, bytes: bytes, range: member.valueRange, plainString: member.plainString))
            }
        }
        self.control = control
    }

    /// A field holding the validated value at `range` as it is written in the input.
    func rawField(_ key: String, range: Range<Int>, plainString: Bool) -> JSONObject.Field {
        Self.rawField(key, bytes: bytes, range: range, plainString: plainString)
    }

    static func rawField(_ key: String, bytes: [UInt8], range: Range<Int>, plainString: Bool) -> JSONObject.Field {
        JSONObject.Field(
            key: key,
            storage: .raw(
                RawJSON(
                    bytes: bytes, start: Int32(range.lowerBound), end: Int32(range.upperBound),
                    isPlainString: plainString)))
    }
}

extension Range<Int> {
    fileprivate func shifted(by offset: Int) -> Range<Int> { lowerBound + offset..<upperBound + offset }
}

extension FieldOperation.Transform {
    var readsLookup: Bool {
        if case .customerToERP = self { return true }
        return false
    }
}

extension TableMap.Row {
    init(override: MappingConfiguration.FieldMapOverride) throws(ConfigurationError) {
        guard let type = TableMap.MapType(rawValue: override.map_type) else {
            throw ConfigurationError(
                "fieldMaps", "map_type \"\(override.map_type)\" is not one of = >< > >> < <<")
        }
        var pairs: [(erp: String, crm: String)] = []
        for pair in override.value_map ?? [] {
            guard pair.count == 2 else {
                throw ConfigurationError("fieldMaps", "value_map entries are [erp, crm] pairs")
            }
            pairs.append((pair[0], pair[1]))
        }
        self.init(
            erpField: override.fo_field, type: type, crmColumn: override.ce_column, constant: override.default,
            valueMap: pairs)
    }
}
