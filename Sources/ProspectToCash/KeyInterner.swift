import Foundation

/// The field and attribute names p2c knows, so that reading a record reuses one `String` per
/// name instead of allocating it again for every event. Read-only after it is built.
struct KeyInterner: Sendable {
    static let shared = KeyInterner(names: knownNames)

    private let slots: [(hash: UInt32, name: String, bytes: [UInt8])?]
    private let mask: Int

    init(names: Set<String>) {
        var capacity = 16
        while capacity < names.count * 2 { capacity *= 2 }
        var slots = [(hash: UInt32, name: String, bytes: [UInt8])?](repeating: nil, count: capacity)
        for name in names {
            let hash = OperationTable.hash(name)
            var index = Int(hash) & (capacity - 1)
            while slots[index] != nil { index = (index + 1) & (capacity - 1) }
            slots[index] = (hash, name, Array(name.utf8))
        }
        self.slots = slots
        self.mask = capacity - 1
    }

    /// The interned name whose UTF-8 is `bytes`, if known.
    func lookup(hash: UInt32, bytes: UnsafeBufferPointer<UInt8>) -> String? {
        var index = Int(hash) & mask
        while let slot = slots[index] {
            if slot.hash == hash && slot.bytes.count == bytes.count
                && slot.bytes.withUnsafeBufferPointer({ memcmp($0.baseAddress!, bytes.baseAddress!, bytes.count) == 0 })
            {
                return slot.name
            }
            index = (index + 1) & mask
        }
        return nil
    }

    /// Whether `name` is one of the names.
    func contains(_ name: String) -> Bool {
        let hash = OperationTable.hash(name)
        var name = name
        return name.withUTF8 { lookup(hash: hash, bytes: $0) != nil }
    }

    /// Every name of the built-in maps (both sides, each step of a lookup path) and the event attributes.
    private static var knownNames: Set<String> {
        var names: Set<String> = [
            "dataAreaId", "data", "datacontenttype", "productdescription", "SALESORDERSTATUS", "DOCUMENTSTATUS",
        ]
        for (structured, header) in CloudEvent.attributeNames {
            names.insert(structured)
            names.insert(header)
        }
        for map in TableMap.builtIn.values {
            for row in map.rows {
                names.insert(row.erpField)
                for step in FieldOperation.path(of: row.crmColumn) { names.insert(step) }
            }
        }
        names.formUnion(["accountnumber", "msdyn_contactpersonid"])
        return names
    }
}
