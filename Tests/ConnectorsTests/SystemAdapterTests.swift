import Connectors
import Dataverse
import FinanceOperations
import ProspectToCash
import Runtime
import Testing
import Topology

@Suite("What bootstrap and reconcile read of each system, decided by its adapter")
struct SystemAdapterTests {
    private let customers = RecordKind.all.filter { $0.stream == .customers }
    private let products = RecordKind.all.filter { $0.stream == .products }

    @Test(
        "Dataverse: one read per table, every row stamped with the one company named; none or several companies are refused, naming --companies; a load resumes only from a stored link"
    )
    func dataverseSteps() throws {
        let adapter = DataverseAdapter()
        let steps = try adapter.steps(of: customers, companies: ["USMF"])
        #expect(steps.map(\.description) == ["account", "contact"])
        #expect(steps.allSatisfy { $0.company == "USMF" })
        for companies in [[], ["USMF", "DEMF"]] {
            #expect(throws: UsageError.self) { try adapter.steps(of: customers, companies: companies) }
            do {
                _ = try adapter.steps(of: customers, companies: companies)
            } catch let error as UsageError {
                #expect(error.message.contains("--companies"))
            }
        }
        #expect(adapter.cursor(skipping: 40) == nil)
        #expect(adapter.companyField == nil && adapter.changeModes == ["poll", "webhook"])
    }

    @Test(
        "F&O: an entity set two kinds share is read once, per company named or once across companies; a kind without a public entity set is not read; a load resumes from the records done"
    )
    func financeOperationsSteps() throws {
        let adapter = FinanceOperationsAdapter()
        let all = try adapter.steps(of: customers, companies: [])
        #expect(all.map(\.description) == ["CustomersV3@*"])
        #expect(all[0].company == nil && all[0].kind.crmName == "account")
        let two = try adapter.steps(of: customers, companies: ["USMF", "DEMF"])
        #expect(two.map(\.description) == ["CustomersV3@USMF", "CustomersV3@DEMF"])
        let sets = try adapter.steps(of: products, companies: ["USMF"]).map(\.set)
        #expect(sets == ["CDSReleasedDistinctProducts", "ReleasedProductsV2"])
        #expect(!products.filter { $0.erpEntitySet == nil }.isEmpty)
        #expect(adapter.cursor(skipping: 40) == "40")
        #expect(adapter.companyField == "dataAreaId" && adapter.changeModes == ["webhook"])
    }
}
