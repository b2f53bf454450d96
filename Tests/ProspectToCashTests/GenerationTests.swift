import Foundation
import ProspectToCash
import Testing
import Topology

@Suite("The two generations of the customer maps (classic and party)")
struct GenerationTests {
    let account = RecordKind.all.first { $0.crmName == "account" }!
    let contact = RecordKind.all.first { $0.crmName == "contact" }!
    let order = RecordKind.all.first { $0.crmName == "salesorder" }!

    /// The customer of the issue: an organisation with a delivery address, an e-mail and a phone.
    var litware: JSONObject {
        JSONObject([
            "CUSTOMERACCOUNT": "US-042", "PARTYTYPE": "Organization", "ORGANIZATIONNAME": "Litware, Inc.",
            "DELIVERYADDRESSCITY": "Redmond", "DELIVERYADDRESSSTREET": "1 Microsoft Way",
            "DELIVERYADDRESSZIPCODE": "98052", "INVOICEADDRESSCITY": "Seattle",
            "PRIMARYCONTACTEMAIL": "info@litware.example", "PRIMARYCONTACTPHONE": "+1 425 555 0100",
            "PARTYNUMBER": "000001234",
        ])
    }

    @Test("Classic (the default): an ERP customer arrives in the CRM with its name, both addresses, e-mail and phone")
    func classicCustomerToCRM() throws {
        let output = try #require(
            mapped(event(account, side: .erp, data: litware), .erpToCRM, using: mappers[.classic]!))
        #expect(output["name"] == .string("Litware, Inc."))
        #expect(output["address1_city"] == .string("Redmond"))
        #expect(output["address1_line1"] == .string("1 Microsoft Way"))
        #expect(output["address1_postalcode"] == .string("98052"))
        #expect(output["address2_city"] == .string("Seattle"))
        #expect(output["emailaddress1"] == .string("info@litware.example"))
        #expect(output["telephone1"] == .string("+1 425 555 0100"))
        // The party number is a column of the account, not a lookup to a party.
        #expect(output["msdyn_partynumber"] == .string("000001234"))
        #expect(output["msdyn_partyid"] == nil)
        // The default configuration is classic.
        #expect(MappingConfiguration().generation == .classic)
    }

    @Test("Classic: a CRM account with a name, a city and an e-mail becomes a CustomersV3 record with them")
    func classicAccountToERP() throws {
        let data = JSONObject([
            "accountnumber": "US-043", "customertypecode": .number("3"), "name": "Fabrikam",
            "address1_city": "Chicago", "emailaddress1": "orders@fabrikam.example",
        ])
        let output = try #require(mapped(event(account, side: .crm, data: data), .crmToERP, using: mappers[.classic]!))
        #expect(output["ORGANIZATIONNAME"] == .string("Fabrikam"))
        #expect(output["DELIVERYADDRESSCITY"] == .string("Chicago"))
        #expect(output["PRIMARYCONTACTEMAIL"] == .string("orders@fabrikam.example"))
    }

    @Test("Classic: a person customer becomes a contact with first and last name")
    func classicPersonToContact() throws {
        let data = JSONObject([
            "CUSTOMERACCOUNT": "US-044", "PARTYTYPE": "Person", "PERSONFIRSTNAME": "Ana", "PERSONLASTNAME": "Trujillo",
        ])
        let output = try #require(mapped(event(contact, side: .erp, data: data), .erpToCRM, using: mappers[.classic]!))
        #expect(output["firstname"] == .string("Ana"))
        #expect(output["lastname"] == .string("Trujillo"))
    }

    @Test(
        "Party: the same customer carries no name, address or contact information (the party maps do), and its party is a lookup"
    )
    func partyCustomerToCRM() throws {
        let output = try #require(mapped(event(account, side: .erp, data: litware), .erpToCRM, using: mappers[.party]!))
        for column in ["name", "address1_city", "address2_city", "emailaddress1", "telephone1", "msdyn_partynumber"] {
            #expect(output[column] == nil, "\(column)")
        }
        #expect(output.value(at: ["msdyn_partyid", "msdyn_partynumber"]) == .string("000001234"))
    }

    @Test("A document's contact person: a contact by its contact person id in classic, a contact for a party in party")
    func headerContactPerson() throws {
        var data = baseRecord(order, side: .erp, number: "F000042")
        data["CONTACTPERSONID"] = "CP-7"
        data["ORDERINGCUSTOMERACCOUNTNUMBER"] = "US-042"
        let classic = try #require(mapped(event(order, side: .erp, data: data), .erpToCRM, using: mappers[.classic]!))
        #expect(classic.value(at: ["msdyn_contactperson", "msdyn_contactpersonid"]) == .string("CP-7"))
        #expect(classic["msdyn_associatedcontact"] == nil)
        let party = try #require(mapped(event(order, side: .erp, data: data), .erpToCRM, using: mappers[.party]!))
        #expect(party.value(at: ["msdyn_associatedcontact", "msdyn_contactforpartynumber"]) == .string("CP-7"))
    }

    @Test(
        "Party streams: a party's postal address history arrives under its location, keyed by it; the classic generation refuses party records, naming the setting"
    )
    func partyStreams() throws {
        let history = RecordKind.all.first { $0.crmName == "msdyn_postaladdress" }!
        let data = JSONObject([
            "LOCATIONID": "L-1", "CITY": "Redmond", "STREET": "1 Main Street", "VALIDFROM": "2026-01-01T00:00:00Z",
        ])
        guard
            case .mapped(let outputs) = outcome(
                event(history, side: .erp, data: data), .erpToCRM, using: mappers[.party]!)
        else {
            Issue.record("not mapped")
            return
        }
        #expect(outputs[0].stream == .postaladdresses)
        #expect(outputs[0].event.subject == "USMF/L-1")
        #expect(
            outputs[0].event.data.value(at: ["msdyn_postaladdresscollectionid", "msdyn_location"]) == .string("L-1"))
        #expect(outputs[0].event.data["msdyn_city"] == .string("Redmond"))

        let refused = outcome(event(history, side: .erp, data: data), .erpToCRM, using: mappers[.classic]!)
        guard case .refused(let error) = refused else {
            Issue.record("classic mapped a party record: \(refused)")
            return
        }
        #expect(error.code == .unknownType)
        #expect(error.message.contains("generation party"), "\(error.message)")
    }

    @Test("A generation that is neither fails naming the setting")
    func badGeneration() throws {
        let json = Data(#"{"generation": "gab"}"#.utf8)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(MappingConfiguration.self, from: json) }
        let party = try JSONDecoder().decode(MappingConfiguration.self, from: Data(#"{"generation": "party"}"#.utf8))
        #expect(party.generation == .party)
    }
}
