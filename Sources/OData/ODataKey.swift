import Foundation

/// A primitive value as it appears in an OData URL: in a key predicate or a `$filter`.
public enum ODataLiteral: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    /// A decimal number, written as given (e.g. `"12.50"`).
    case decimal(String)
    case guid(UUID)
    case boolean(Bool)
    /// A date (`2026-11-30`) or date-time, unquoted as F&O keys take them (D365FO-C).
    case date(String)

    /// The literal as OData writes it: strings in single quotes with each quote doubled
    /// (`'O''Brien'`), GUIDs bare and lower case, numbers and booleans as they are.
    public var text: String {
        switch self {
        case .string(let value): "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
        case .integer(let value): String(value)
        case .decimal(let value): value
        case .date(let value): value
        case .guid(let value): value.uuidString.lowercased()
        case .boolean(let value): value ? "true" : "false"
        }
    }
}

/// Key predicates and resource paths of OData entities.
public enum ODataPath {
    /// `set(name='value',other=2)`, or `set(value)` for a single unnamed key; each literal is
    /// percent-encoded for a URL path where it must be (`#`, `?`, `/`, `%`, spaces, non-ASCII...).
    /// Dataverse alternate keys: `accounts(accountnumber='US-001')`; F&O composite keys:
    /// `CustomersV3(dataAreaId='usmf',CustomerAccount='US-001')`.
    public static func entity(_ set: String, key: [(name: String, value: ODataLiteral)]) -> String {
        let predicate: String
        if key.count == 1 && key[0].name.isEmpty {
            predicate = encode(key[0].value.text)
        } else {
            predicate = key.map { "\($0.name)=\(encode($0.value.text))" }.joined(separator: ",")
        }
        return "\(set)(\(predicate))"
    }

    /// The value of an `@odata.bind` annotation: the entity's path from the service root, with a
    /// leading slash (`/accounts(accountnumber='US-001')`); alternate-key paths are accepted there.
    public static func bind(_ set: String, key: [(name: String, value: ODataLiteral)]) -> String {
        "/" + entity(set, key: key)
    }

    /// Characters a key literal keeps as they are in a URL path segment: RFC 3986 unreserved and
    /// the sub-delimiters OData's own syntax uses (quotes, parentheses, comma, equals), plus `:`,
    /// `@`, `$`, `+`, `;`, `!`, `*` that a path segment allows.
    private static let kept: CharacterSet = {
        var set = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        set.insert(charactersIn: "'(),=:@$+;!*")
        return set
    }()

    private static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: kept) ?? text
    }
}
