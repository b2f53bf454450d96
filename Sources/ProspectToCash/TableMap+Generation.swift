/// Which generation of the dual-write customer maps a deployment runs (classic, or party: the
/// party, location and address tables).
public enum MapGeneration: String, Sendable, CaseIterable, Decodable {
    /// The maps before the party and global address book solution: customers carry their name,
    /// postal addresses and contact information themselves.
    case classic
    /// The current maps (Customers V3 1.0.0.5 and later): names, addresses and contact information
    /// travel in the party maps, and documents name their contact person as a contact for a party.
    case party
}

extension TableMap {
    /// The maps a deployment of `generation` runs, keyed by name.
    public static func maps(for generation: MapGeneration) -> [String: TableMap] {
        switch generation {
        case .classic: classic
        case .party: builtIn
        }
    }

    /// The classic generation: the customer maps as the classic includes have them (with the value
    /// lists and the rows the party model did not add from the current maps), and the document
    /// headers as today with the classic contact-person row.
    public static let classic: [String: TableMap] = {
        do {
            return combine(current: builtIn, earlier: try load(json: Array(DualWriteMaps.classicJSON.utf8)))
        } catch {
            preconditionFailure("the classic maps do not load: \(error)")
        }
    }()

    /// Every map row of either generation, by map name: what the simulated systems hold.
    public static let everyGeneration: [String: TableMap] = {
        var maps = builtIn
        for (name, map) in classic {
            let known = maps[name]?.rows ?? []
            maps[name, default: map].rows = known + map.rows.filter { !known.contains($0) }
        }
        return maps
    }()

    /// Whether a row's CRM column reaches a table of the party and global address book solution.
    static func reachesParty(_ row: Row) -> Bool {
        row.crmColumn.contains("msdyn_partyid") || row.crmColumn.contains("contactforparty")
    }

    /// The current maps with `earlier`'s rows where the party model changed them: a current row
    /// reaching the party tables gives way to the earlier row of its field (or goes, when there is
    /// none); a customer map also gets back every row the party model removed.
    static func combine(current: [String: TableMap], earlier: [String: TableMap]) -> [String: TableMap] {
        var maps = current
        for (name, old) in earlier {
            guard var map = current[name] else { continue }
            let customer = name.hasPrefix("Customers V3")
            var rows: [Row] = []
            for row in map.rows {
                guard reachesParty(row) else {
                    rows.append(row)
                    continue
                }
                rows += old.rows.filter { $0.erpField == row.erpField && !reachesParty($0) }
            }
            if customer {
                for row in old.rows where !rows.contains(where: { same($0, row) }) {
                    rows.append(row)
                }
            }
            map.rows = rows
            map.anchor = customer ? old.anchor : map.anchor
            maps[name] = map
        }
        return maps
    }

    /// The same field pair (a constant row by its column): the current row keeps its value list.
    private static func same(_ lhs: Row, _ rhs: Row) -> Bool {
        lhs.erpField == "none" || rhs.erpField == "none"
            ? lhs.erpField == rhs.erpField && lhs.crmColumn == rhs.crmColumn
            : lhs.erpField == rhs.erpField
    }
}
