import Topology

/// Names, addresses and phone numbers for the demo's customers: made-up companies in real US
/// cities, the same every run.
enum DemoCustomers {
    struct Place {
        var street: String
        var city: String
        var state: String
        var zip: String
        var phone: String
    }

    private static let words = [
        "Litware", "Fabrikam", "Contoso", "Northwind", "Tailspin", "Wingtip", "Adatum", "Proseware", "Woodgrove",
        "Lucerne", "Alpine", "Coho", "Fourth Coffee", "Margie's", "Trey", "Wide World",
    ]
    private static let kinds = ["Inc.", "Traders", "Supply", "Group", "Outfitters", "Partners", "Works"]
    private static let cities: [(String, String, String, String)] = [
        ("Redmond", "WA", "98052", "425"), ("Chicago", "IL", "60601", "312"), ("Austin", "TX", "78701", "512"),
        ("Denver", "CO", "80202", "303"), ("Atlanta", "GA", "30303", "404"), ("Boston", "MA", "02108", "617"),
        ("Portland", "OR", "97204", "503"), ("Phoenix", "AZ", "85004", "602"),
    ]

    /// A company name, different on each side for the same index.
    static func name(_ index: Int, side: Side) -> String {
        let offset = side == .erp ? 0 : 5
        let word = words[(index + offset) % words.count]
        let kind = kinds[(index / words.count + index + offset) % kinds.count]
        return index >= words.count ? "\(word) \(kind) \(index)" : "\(word) \(kind)"
    }

    static func place(_ index: Int) -> Place {
        let (city, state, zip, area) = cities[index % cities.count]
        return Place(
            street: "\(100 + index * 7 % 900) Main Street", city: city, state: state, zip: zip,
            phone: "+1 \(area) 555 \(String(1000 + index % 9000))")
    }
}
