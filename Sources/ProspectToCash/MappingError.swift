/// Why an event was refused: a stable machine-readable code (it becomes the `p2c_error_code` DLQ
/// header) and a message for people.
public struct MappingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    /// Every way an event can be refused. The raw values are part of the product's contract.
    public enum Code: String, Sendable, CaseIterable {
        /// The value is not JSON (or not UTF-8).
        case malformedJSON = "malformed_json"
        /// The value, or the structured event's `data`, is JSON but not an object.
        case notAnObject = "not_an_object"
        /// A required CloudEvents attribute (`specversion`, `id`, `source`, `type`) is missing or empty.
        case missingAttribute = "missing_attribute"
        /// `specversion` is not 1.0.
        case unsupportedSpecVersion = "unsupported_specversion"
        /// `type` is not `<record>.upserted` or `<record>.deleted` for a record this stream carries.
        case unknownType = "unknown_type"
        /// The event's source or record does not flow this way (e.g. an invoice from the CRM).
        case wrongDirection = "wrong_direction"
        /// Neither `ce_company` nor the record names the company.
        case missingCompany = "missing_company"
        /// The company is not on this deployment's allow-list.
        case companyNotAllowed = "company_not_allowed"
        /// The record's number (its key field) is missing or empty.
        case missingKey = "missing_key"
        /// The event's subject (Kafka key) is not `<company>/<number>` of the record.
        case keyMismatch = "key_mismatch"
        /// A field has the wrong JSON type (a lookup that is not an object, a nested value in a plain field...).
        case wrongFieldType = "wrong_field_type"
        /// A money, quantity or percentage field is not a decimal number.
        case badDecimal = "bad_decimal"
        /// An enum or option-set value has no counterpart in the value map.
        case unknownEnumValue = "unknown_enum_value"
        /// A required field is missing (e.g. the party type of an ERP customer).
        case missingField = "missing_field"
        /// A document number follows neither side's number sequence: it could overwrite the other side's document.
        case numberSequenceClash = "number_sequence_clash"
        /// An ERP line needs a site and warehouse, and neither the line nor the company defaults give one.
        case missingSiteOrWarehouse = "missing_site_or_warehouse"
        /// A write-in product line has no sales category and the company has no default one.
        case writeInWithoutCategory = "write_in_without_category"
        /// A line discount on a zero quantity cannot be split per unit.
        case invalidQuantity = "invalid_quantity"
    }
}
