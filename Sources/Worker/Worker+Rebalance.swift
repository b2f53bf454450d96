import Foundation
import Kafka
import ProspectToCash
import Runtime
import Synchronization

extension Worker {
    /// Inside poll: revoked partitions get their work committed first; lost ones are aborted.
    package func rebalanced(_ event: RebalanceEvent) throws {
        defer { metrics.assignedPartitions.store((try? consumer.assignment().count) ?? 0, ordering: .relaxed) }
        switch event {
        case .assigned(let partitions):
            log.info("assigned", [("partitions", .int(Int64(partitions.count)))])
        case .revoked(let partitions):
            log.info("revoked", [("partitions", .int(Int64(partitions.count)))])
            try commitBatch(draining: true)
            // Their next owner starts from what the group holds.
            for partition in partitions { refusedOffsets[partition] = nil }
        case .lost(let partitions):
            log.warning("lost", [("partitions", .int(Int64(partitions.count)))])
            // What was committing may have made it; what did not is redone by the next owner.
            if let commit = inFlight, let outcome = commit.wait(until: shutdownDeadline) {
                transaction = .none
                if case .failure = outcome, configuration.delivery == .exactlyOnce {
                    try? producer.abortTransaction(timeout: timeout(.seconds(60)))
                }
            }
            outbox.removeAll(keepingCapacity: true)
            if configuration.delivery == .exactlyOnce && isTransactionOpen {
                try producer.abortTransaction(timeout: timeout(.seconds(60)))
                transaction = .none
            }
            batch.reset()
            refusedOffsets.removeAll()
            sealed.removeAll()
            lastSentID = nil
        }
    }
}
