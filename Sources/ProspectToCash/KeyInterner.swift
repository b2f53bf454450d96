import Foundation

/// The field and attribute names p2c knows, so that reading a record reuses one `String` per
/// name instead of allocating it again for every event. Read-only after it is built.
struct KeyInterner: Sendable {
    static let shared = KeyInterner(names: knownNames)

    /// Open addressing over flat arrays (a lookup touches no reference count until it finds a
    /// name): per slot the hash, where the name's UTF-8 is in `text` (length -1: empty slot).
    private let hashes: [UInt32]
    private let starts: [Int32]
    private let lengths: [Int32]
    private let text: [UInt8]
    private let names: [String]
    private let mask: Int

    init(names: Set<String>) {
        var capacity = 16
        while capacity < names.count * 2 { capacity *= 2 }
        var hashes = [UInt32](repeating: 0, count: capacity)
        var starts = [Int32](repeating: 0, count: capacity)
        var lengths = [Int32](repeating: -1, count: capacity)
        var text: [UInt8] = []
        var slotNames = [String](repeating: "", count: capacity)
        for name in names.sorted() {
            let hash = OperationTable.hash(name)
            var index = Int(hash) & (capacity - 1)
            while lengths[index] >= 0 { index = (index + 1) & (capacity - 1) }
            hashes[index] = hash
            starts[index] = Int32(text.count)
            lengths[index] = Int32(name.utf8.count)
            text.append(contentsOf: name.utf8)
            slotNames[index] = name
        }
        self.hashes = hashes
        self.starts = starts
        self.lengths = lengths
        self.text = text
        self.names = slotNames
        self.mask = capacity - 1
    }

    /// The interned name whose UTF-8 is `bytes`, if known.
    func lookup(hash: UInt32, bytes: UnsafeBufferPointer<UInt8>) -> String? {
        let found: Int? = text.withUnsafeBufferPointer { text in
            var index = Int(hash) & mask
            while lengths[index] >= 0 {
                if hashes[index] == hash && Int(lengths[index]) == bytes.count
                    && (bytes.isEmpty
                        || memcmp(text.baseAddress! + Int(starts[index]), bytes.baseAddress!, bytes.count) == 0)
                {
                    return index
                }
                index = (index + 1) & mask
            }
            return nil
        }
        return found.map { names[$0] }
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
