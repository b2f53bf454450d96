import Foundation

/// The field and attribute names p2c knows, so that reading a record reuses one `String` per
/// name instead of allocating it again for every event. Read-only after it is built; a class, so
/// that using it retains one reference instead of its arrays.
final class KeyInterner: Sendable {
    static let shared = KeyInterner(names: knownNames)

    private let table: NameTable
    private let names: [String]

    init(names: Set<String>) {
        self.names = names.sorted()
        table = NameTable(self.names.enumerated().map { (Array($0.element.utf8), Int32($0.offset)) })
    }

    /// The interned name whose UTF-8 is `bytes` (of `NameTable.hash` `hash`), if known.
    func lookup(hash: UInt32, bytes: UnsafeBufferPointer<UInt8>) -> String? {
        return table.value(for: bytes, hash: hash).map { names[Int($0)] }
    }

    /// Whether `name` is one of the names.
    func contains(_ name: String) -> Bool { table.value(for: name) != nil }

    /// Every name of the built-in maps (both sides, each step of a lookup path) and the event attributes.
    private static var knownNames: Set<String> {
        var names: Set<String> = [
            "dataAreaId", "data", "datacontenttype", "productdescription", "SALESORDERSTATUS", "DOCUMENTSTATUS",
        ]
        for (structured, header) in CloudEvent.attributeNames {
            names.insert(structured)
            names.insert(header)
        }
        for map in TableMap.everyGeneration.values {
            for row in map.rows {
                names.insert(row.erpField)
                for step in FieldOperation.path(of: row.crmColumn) { names.insert(step) }
            }
        }
        names.formUnion(["accountnumber", "msdyn_contactpersonid"])
        return names
    }
}
