import Connectors
import Dataverse
import FinanceOperations
import Topology

/// The systems p2c syncs: the one place that knows which adapter serves which side.
public enum Systems {
    public static func adapter(for side: Side) -> any SystemAdapter {
        switch side {
        case .crm: DataverseAdapter()
        case .erp: FinanceOperationsAdapter()
        }
    }
}
