import Testing

@testable import ProspectToCash

@Suite("Name tables")
struct NameTableTests {
    /// Every field name and value-map text of the built-in maps, as the mapper looks them up.
    private var names: Set<String> {
        var names: Set<String> = []
        for map in TableMap.builtIn.values {
            for row in map.rows {
                names.insert(row.erpField)
                for step in FieldOperation.path(of: row.crmColumn) { names.insert(step) }
                for pair in row.valueMap {
                    names.insert(pair.erp.lowercased())
                    names.insert(pair.crm.lowercased())
                }
            }
        }
        return names
    }

    @Test("The maps' names and values hash apart, and every one is found in a table of them all")
    func hashesApart() {
        let names = names.sorted()
        #expect(names.count > 500)
        var seen: [UInt32: String] = [:]
        for name in names {
            let hash = NameTable.hash(name)
            #expect(seen[hash] == nil, "\(name) and \(seen[hash] ?? "") share hash \(hash)")
            seen[hash] = name
        }
        let table = NameTable(names.enumerated().map { (Array($0.element.utf8), Int32($0.offset)) })
        for (index, name) in names.enumerated() { #expect(table.value(for: name) == Int32(index)) }
        #expect(table.value(for: "not a name of the maps") == nil)
    }

    @Test("Names that collide are still told apart, in a table and as duplicate keys")
    func collisionsResolve() throws {
        // Two names of one hash and one length, found by trying (the hash is unseeded and fixed).
        var byHash: [UInt32: String] = [:]
        var pair: (String, String)?
        for index in 0..<2_000_000 where pair == nil {
            let name = "field\(1_000_000 + index)"
            let hash = NameTable.hash(name)
            if let other = byHash[hash] { pair = (other, name) } else { byHash[hash] = name }
        }
        let (first, second) = try #require(pair)
        let table = NameTable([(Array(first.utf8), 1), (Array(second.utf8), 2)])
        #expect(table.value(for: first) == 1)
        #expect(table.value(for: second) == 2)
        #expect(throws: Never.self) { _ = try JSONParser.parseLazily(Array("{\"\(first)\":1,\"\(second)\":2}".utf8)) }
        #expect(throws: JSONParseError.self) {
            _ = try JSONParser.parseLazily(Array("{\"\(first)\":1,\"\(first)\":2}".utf8))
        }
    }
}
