import Foundation
import Operations
import ProspectToCash
import Simulation
import Testing

/// The reconciliation is the demo's verdict: it must see every kind of disagreement.
@Suite("Reconciliation of the two systems through the maps")
struct ReconciliationTests {
    let mapper: Mapper

    init() throws {
        mapper = try Mapper(
            configuration: JSONDecoder().decode(
                MappingConfiguration.self, from: Data(Scenario.mappingConfiguration(.classic).utf8)))
    }

    /// A CRM order line and the ERP line the maps make of it (discount split into unit and charge).
    func orderLine(
        quantity: String = "3", erpQuantity: String = "3"
    ) -> (crm: Reconciliation.Records, erp: Reconciliation.Records) {
        let crm: JSONObject = [
            "salesorderid": .object(["msdyn_salesordernumber": .string("C000001")]), "sequencenumber": .number("1"),
            "quantity": .number(quantity), "productid": .object(["msdyn_productnumber": .string("D0001")]),
            "manualdiscountamount": .number("10.00"), "description": .string("Product D0001"),
            // What the CRM holds once the ERP's answer came back.
            "msdyn_linediscountamount": .number("3.33"), "msdyn_fixedpricecharges": .number("-0.01"),
            "msdyn_shippingsite": .object(["msdyn_siteid": "1"]),
            "msdyn_shippingwarehouse": .object(["msdyn_warehouseidentifier": "11"]), "ispriceoverridden": .bool(true),
        ]
        let erp: JSONObject = [
            "SALESORDERNUMBER": .string("C000001"), "LINECREATIONSEQUENCENUMBER": .number("1"),
            "ORDEREDSALESQUANTITY": .number(erpQuantity), "PRODUCTNUMBER": .string("D0001"),
            "LINEDISCOUNTAMOUNT": .number("3.33"), "FIXEDPRICECHARGES": .number("-0.01"),
            "PRODUCTNAME": .string("Product D0001"), "SHIPPINGSITEID": .string("1"),
            "SHIPPINGWAREHOUSEID": .string("11"), "dataAreaId": .string("USMF"),
            "TOTALDISCOUNTAMOUNT": .number("10.00"),
        ]
        return (["salesorderdetail": ["USMF/C000001#1": crm]], ["SalesOrderLine": ["USMF/C000001#1": erp]])
    }

    @Test("Two systems that hold the same line agree, in both directions")
    func agreeing() {
        let (crm, erp) = orderLine()
        let result = Reconciliation(crm: crm, erp: erp, mapper: mapper)
        #expect(result.mismatches == [])
        #expect(result.counts[.orders]?.compared == 2)
        #expect((result.counts[.orders]?.fields ?? 0) > 10)
    }

    @Test("A quantity the ERP never received is a mismatch naming the field and both values")
    func differentValue() {
        let (crm, erp) = orderLine(quantity: "5", erpQuantity: "3")
        let result = Reconciliation(crm: crm, erp: erp, mapper: mapper)
        #expect(result.mismatches.contains { $0.contains("ORDEREDSALESQUANTITY should be 5, erp has 3") })
        #expect(result.mismatches.contains { $0.contains("quantity should be 3, crm has 5") })
    }

    @Test("A record missing on the other side is a mismatch")
    func missing() {
        let (crm, _) = orderLine()
        let result = Reconciliation(crm: crm, erp: [:], mapper: mapper)
        #expect(result.mismatches == ["crm salesorderdetail USMF/C000001#1: erp has no SalesOrderLine USMF/C000001#1"])
    }

    @Test("A prospect held back by the rules must not exist in the ERP")
    func prospect() {
        let account: JSONObject = ["accountnumber": .string("CUS0001"), "customertypecode": .number("8")]
        let crm: Reconciliation.Records = ["account": ["USMF/CUS0001": account]]
        #expect(Reconciliation(crm: crm, erp: [:], mapper: mapper).mismatches == [])
        let leaked: Reconciliation.Records = [
            "CustomersV3": [
                "USMF/CUS0001": [
                    "CUSTOMERACCOUNT": .string("CUS0001"), "PARTYTYPE": .string("Organization"),
                    "dataAreaId": .string("USMF"),
                ]
            ]
        ]
        let result = Reconciliation(crm: crm, erp: leaked, mapper: mapper)
        #expect(result.mismatches.contains("crm account USMF/CUS0001: held back by a rule, yet erp has it"))
    }

    @Test("Event times are written and read back to the millisecond")
    func eventTime() {
        for milliseconds: Int64 in [0, 951_782_400_123, 1_795_305_600_999, 4_102_444_799_001] {
            let text = EventTime.format(milliseconds)
            #expect(EventTime.parse(text) == milliseconds, "\(text)")
        }
        #expect(EventTime.format(1_795_305_600_123) == "2026-11-22T00:00:00.123Z")
        let tenOClock: Int64 = 1_795_305_600_000 + 36_000_000
        #expect(EventTime.parse("2026-11-22T10:00:00Z") == tenOClock)
        #expect(EventTime.parse("yesterday") == nil)
    }
}
