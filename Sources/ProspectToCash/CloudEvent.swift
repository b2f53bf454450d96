import Foundation

/// A CloudEvents 1.0 event carrying one CRM or ERP record, with p2c's extensions.
public struct CloudEvent: Sendable, Equatable {
    public var id: String {
        get { attributes.id }
        set { uniqueAttributes().id = newValue }
    }
    /// `crm` or `erp`: the system that made the change.
    public var source: String {
        get { attributes.source }
        set { uniqueAttributes().source = newValue }
    }
    /// `<record name>.upserted` or `<record name>.deleted`.
    public var type: String {
        get { attributes.type }
        set { uniqueAttributes().type = newValue }
    }
    /// RFC 3339 time of the change, when known.
    public var time: String? {
        get { attributes.time }
        set { uniqueAttributes().time = newValue }
    }
    /// The Kafka key: `<company>/<record number>`.
    public var subject: String? {
        get { attributes.subject }
        set { uniqueAttributes().subject = newValue }
    }
    /// Extension `company`: the ERP legal entity (dataAreaId).
    public var company: String? {
        get { attributes.company }
        set { uniqueAttributes().company = newValue }
    }
    /// Extension `origin`: `p2c` when the change was made by applying a sync event.
    public var origin: String? {
        get { attributes.origin }
        set { uniqueAttributes().origin = newValue }
    }
    /// Extension `causationid`: the id of the event that caused this one.
    public var causationID: String? {
        get { attributes.causationID }
        set { uniqueAttributes().causationID = newValue }
    }
    /// Extension `traceparent`: W3C trace context.
    public var traceparent: String? {
        get { attributes.traceparent }
        set { uniqueAttributes().traceparent = newValue }
    }
    /// The record: column or field names as the mapping reference spells them.
    public var data: JSONObject

    /// The attributes, in one reference copied on write: an event is copied and destroyed several
    /// times on its way through a worker, and one retain or release costs less than nine.
    private var attributes: Stored

    private final class Stored: @unchecked Sendable {
        // @unchecked: changed only through `uniqueAttributes()`, i.e. when not shared.
        var id, source, type: String
        var time, subject, company, origin, causationID, traceparent: String?

        init(
            id: String, source: String, type: String, time: String?, subject: String?, company: String?,
            origin: String?, causationID: String?, traceparent: String?
        ) {
            self.id = id
            self.source = source
            self.type = type
            self.time = time
            self.subject = subject
            self.company = company
            self.origin = origin
            self.causationID = causationID
            self.traceparent = traceparent
        }

        func copy() -> Stored {
            Stored(
                id: id, source: source, type: type, time: time, subject: subject, company: company, origin: origin,
                causationID: causationID, traceparent: traceparent)
        }

        func isEqual(to other: Stored) -> Bool {
            self === other
                || (id == other.id && source == other.source && type == other.type && time == other.time
                    && subject == other.subject && company == other.company && origin == other.origin
                    && causationID == other.causationID && traceparent == other.traceparent)
        }
    }

    private mutating func uniqueAttributes() -> Stored {
        if !isKnownUniquelyReferenced(&attributes) { attributes = attributes.copy() }
        return attributes
    }

    public static func == (lhs: CloudEvent, rhs: CloudEvent) -> Bool {
        lhs.attributes.isEqual(to: rhs.attributes) && lhs.data == rhs.data
    }

    public init(
        id: String,
        source: String,
        type: String,
        time: String? = nil,
        subject: String? = nil,
        company: String? = nil,
        origin: String? = nil,
        causationID: String? = nil,
        traceparent: String? = nil,
        data: JSONObject
    ) {
        attributes = Stored(
            id: id, source: source, type: type, time: time, subject: subject, company: company, origin: origin,
            causationID: causationID, traceparent: traceparent)
        self.data = data
    }

    /// The record name and action of `type`, e.g. (`salesorderdetail`, `.upserted`).
    public var recordAndAction: (record: Substring, action: Action)? { Self.recordAndAction(ofType: type) }

    /// The UTF-8 length of the record name in `type` and the action, read off its bytes.
    static func split(type: String) -> (recordLength: Int, action: Action)? {
        var type = type
        return type.withUTF8 { split(type: $0) }
    }

    static func split(type bytes: UnsafeBufferPointer<UInt8>) -> (recordLength: Int, action: Action)? {
        var dot = bytes.count - 1
        while dot >= 0 && bytes[dot] != UInt8(ascii: ".") { dot -= 1 }
        guard dot >= 0 else { return nil }
        let suffix = UnsafeBufferPointer(rebasing: bytes[(dot + 1)...])
        if suffix.elementsEqual(upserted) { return (dot, .upserted) }
        if suffix.elementsEqual(deleted) { return (dot, .deleted) }
        return nil
    }

    private static let upserted = Array("upserted".utf8)
    private static let deleted = Array("deleted".utf8)

    public enum Action: String, Sendable {
        case upserted, deleted
    }

    /// The Kafka header names of the attributes p2c reads outside the worker (binary mode).
    public enum Header {
        public static let id = "ce_id"
        public static let type = "ce_type"
        public static let subject = "ce_subject"
        public static let company = "ce_company"
        public static let origin = "ce_origin"
    }

    /// The record name and action of a `type` (`salesorderdetail.upserted`), nil when it is not
    /// `<record>.upserted` or `<record>.deleted`.
    public static func recordAndAction(ofType type: String) -> (record: Substring, action: Action)? {
        guard let (length, action) = split(type: type) else { return nil }
        return (Substring(type.utf8.prefix(length)), action)
    }

    /// The attribute names, in the order they are written.
    static let attributeNames: [(structured: String, header: String)] = [
        ("specversion", "ce_specversion"), ("id", "ce_id"), ("source", "ce_source"), ("type", "ce_type"),
        ("time", "ce_time"), ("subject", "ce_subject"), ("company", "ce_company"), ("origin", "ce_origin"),
        ("causationid", "ce_causationid"), ("traceparent", "ce_traceparent"),
    ]

    fileprivate var attributeValues: [String?] {
        ["1.0", id, source, type, time, subject, company, origin, causationID, traceparent]
    }

    /// Attributes as read from headers or a structured event, before they are checked: the UTF-8
    /// of each value, kept as read. A worker reads them per record, and most travel to the output
    /// unchanged, so text is built only where one is needed.
    public struct Attributes: Sendable {
        // One stored property per attribute (no array to allocate per record), in `attributeNames` order.
        var specVersion, id, source, type, time, subject, company, origin, causationID, traceparent: [UInt8]?

        public init() {}

        /// The attributes of `event`, as its headers would carry them.
        init(_ event: CloudEvent) {
            specVersion = CloudEvent.specVersionBytes
            id = Array(event.id.utf8)
            source = Array(event.source.utf8)
            type = Array(event.type.utf8)
            time = event.time.map { Array($0.utf8) }
            subject = event.subject.map { Array($0.utf8) }
            company = event.company.map { Array($0.utf8) }
            origin = event.origin.map { Array($0.utf8) }
            causationID = event.causationID.map { Array($0.utf8) }
            traceparent = event.traceparent.map { Array($0.utf8) }
        }

        /// The attribute at `index` of `attributeNames`.
        subscript(index: Int) -> [UInt8]? {
            get {
                switch index {
                case 0: specVersion
                case 1: id
                case 2: source
                case 3: type
                case 4: time
                case 5: subject
                case 6: company
                case 7: origin
                case 8: causationID
                default: traceparent
                }
            }
            set {
                switch index {
                case 0: specVersion = newValue
                case 1: id = newValue
                case 2: source = newValue
                case 3: type = newValue
                case 4: time = newValue
                case 5: subject = newValue
                case 6: company = newValue
                case 7: origin = newValue
                case 8: causationID = newValue
                default: traceparent = newValue
                }
            }
        }

        /// The index in `attributeNames` of the header `name`; the length settles most names.
        static func index(ofHeader name: String) -> Int? {
            let candidate: Int
            switch name.utf8.count {
            case 5: candidate = 1
            case 7: candidate = name == "ce_type" ? 3 : 4
            case 9: candidate = name == "ce_source" ? 2 : 7
            case 10: candidate = name == "ce_subject" ? 5 : 6
            case 14: candidate = name == "ce_specversion" ? 0 : name == "ce_causationid" ? 8 : 9
            default: return nil
            }
            return name == CloudEvent.attributeNames[candidate].header ? candidate : nil
        }

        /// Whether `value` is UTF-8. ASCII, the usual case, is told eight bytes at a time and needs
        /// no further validation.
        static func isUTF8(_ value: [UInt8]) -> Bool {
            value.withUnsafeBufferPointer { buffer in
                guard let base = buffer.baseAddress else { return true }
                var index = 0
                var high: UInt64 = 0
                while index + 8 <= buffer.count {
                    high |= UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self)
                    index += 8
                }
                while index < buffer.count {
                    high |= UInt64(buffer[index])
                    index += 1
                }
                return high & 0x8080_8080_8080_8080 == 0 || String(validating: buffer, as: UTF8.self) != nil
            }
        }

        /// The text of an attribute's bytes (validated UTF-8 when read from a header).
        static func text(_ bytes: [UInt8]?) -> String? { bytes.map { String(decoding: $0, as: UTF8.self) } }

        /// Takes the Kafka key as the subject when no `ce_subject` header gave one (a key that is
        /// not UTF-8 is read with replacement characters, and so never matches the record's).
        public mutating func read(key: [UInt8]?) {
            guard subject == nil, let key else { return }
            subject = Self.isUTF8(key) ? key : Array(String(decoding: key, as: UTF8.self).utf8)
        }

        /// Reads one Kafka header: a `ce_*` attribute with a UTF-8 value is kept, others are ignored.
        /// True when `name` is an attribute's header (whether or not its value was usable).
        @discardableResult
        public mutating func read(header name: String, value: [UInt8]?) -> Bool {
            guard let index = Self.index(ofHeader: name) else { return false }
            guard let value, Self.isUTF8(value) else { return true }
            self[index] = value
            return true
        }

        /// Refuses attributes an event must have: specversion 1.0, an id, a source and a type.
        func check() throws(MappingError) {
            guard let version = specVersion, !version.isEmpty else {
                throw MappingError(.missingAttribute, "specversion is missing")
            }
            guard version == CloudEvent.specVersionBytes else {
                throw MappingError(.unsupportedSpecVersion, "specversion \(Self.text(version)!) is not 1.0")
            }
            guard let id, !id.isEmpty else { throw MappingError(.missingAttribute, "id is missing") }
            guard let source, !source.isEmpty else { throw MappingError(.missingAttribute, "source is missing") }
            guard let type, !type.isEmpty else { throw MappingError(.missingAttribute, "type is missing") }
        }
    }

    /// Checks `attributes` and decodes them.
    init(attributes: Attributes, data: JSONObject) throws(MappingError) {
        try attributes.check()
        self.init(
            id: Attributes.text(attributes.id)!, source: Attributes.text(attributes.source)!,
            type: Attributes.text(attributes.type)!, time: Attributes.text(attributes.time),
            subject: Attributes.text(attributes.subject), company: Attributes.text(attributes.company),
            origin: Attributes.text(attributes.origin), causationID: Attributes.text(attributes.causationID),
            traceparent: Attributes.text(attributes.traceparent), data: data)
    }
}

// MARK: - Binary content mode (Kafka headers + JSON value)

extension CloudEvent {
    /// Reads an event in Kafka binary mode: attributes from `ce_*` headers, the record from the value.
    public init(headers: [(name: String, value: [UInt8]?)], value: [UInt8]?) throws(MappingError) {
        var attributes = Attributes()
        for header in headers { attributes.read(header: header.name, value: header.value) }
        guard let value, !value.isEmpty else { throw MappingError(.notAnObject, "the record value is empty") }
        let parsed: JSONValue
        do {
            parsed = try JSONParser.parseLazily(value)
        } catch {
            throw MappingError(.malformedJSON, "the record value is not JSON: \(error)")
        }
        guard case .object(let data) = parsed else {
            throw MappingError(.notAnObject, "the record value is a JSON \(parsed.typeName), not an object")
        }
        try self.init(attributes: attributes, data: data)
    }

    /// The Kafka headers of binary mode, `content-type` included.
    public var headers: [(name: String, value: [UInt8])] {
        var result: [(name: String, value: [UInt8])] = []
        result.reserveCapacity(Self.attributeNames.count + 1)
        forEachHeader { result.append(($0, $1)) }
        return result
    }

    /// Calls `body` with each header of binary mode, in order, `content-type` last.
    public func forEachHeader(_ body: (String, [UInt8]) -> Void) {
        body("ce_specversion", Self.specVersionBytes)
        body("ce_id", Array(id.utf8))
        body("ce_source", Array(source.utf8))
        body("ce_type", Array(type.utf8))
        if let time { body("ce_time", Array(time.utf8)) }
        if let subject { body("ce_subject", Array(subject.utf8)) }
        if let company { body("ce_company", Array(company.utf8)) }
        if let origin { body("ce_origin", Array(origin.utf8)) }
        if let causationID { body("ce_causationid", Array(causationID.utf8)) }
        if let traceparent { body("ce_traceparent", Array(traceparent.utf8)) }
        body("content-type", Self.contentTypeBytes)
    }

    static let specVersionBytes = Array("1.0".utf8)
    static let contentTypeBytes = Array("application/json".utf8)

    /// The Kafka value of binary mode: the record as one JSON object.
    public var value: [UInt8] { data.jsonBytes }
}

// MARK: - Structured content mode (one JSON object)

extension CloudEvent {
    /// Reads an event in structured mode: one JSON object with the attributes and `data`.
    public init(structured bytes: [UInt8]) throws(MappingError) {
        let parsed: JSONValue
        do {
            parsed = try JSONParser.parse(bytes)
        } catch {
            throw MappingError(.malformedJSON, "the event is not JSON: \(error)")
        }
        try self.init(structured: parsed)
    }

    public init(structured value: JSONValue) throws(MappingError) {
        guard case .object(let object) = value else {
            throw MappingError(.notAnObject, "the event is a JSON \(value.typeName), not an object")
        }
        var attributes = Attributes()
        for (index, (name, _)) in Self.attributeNames.enumerated() {
            guard let attribute = object[name] else { continue }
            guard case .string(let text) = attribute else {
                throw MappingError(.wrongFieldType, "attribute \(name) must be a string, got a \(attribute.typeName)")
            }
            attributes[index] = Array(text.utf8)
        }
        guard let data = object["data"] else { throw MappingError(.notAnObject, "the event has no data") }
        guard case .object(let record) = data else {
            throw MappingError(.notAnObject, "data is a JSON \(data.typeName), not an object")
        }
        try self.init(attributes: attributes, data: record)
    }

    /// The event as one structured-mode JSON object.
    public var structured: JSONObject {
        var object = JSONObject()
        for (names, value) in zip(Self.attributeNames, attributeValues) {
            if let value { object.fields.append(.init(names.structured, .string(value))) }
        }
        object.fields.append(.init("datacontenttype", .string("application/json")))
        object.fields.append(.init("data", .object(data)))
        return object
    }
}
