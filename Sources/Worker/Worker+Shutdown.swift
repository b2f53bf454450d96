import Foundation
import Kafka
import ProspectToCash
import Runtime
import Synchronization

extension Worker {
    /// `normal`, or what is left until the shutdown deadline once the worker is on its way out.
    func timeout(_ normal: Duration) -> Duration {
        loop.timeout(normal)
    }

    /// The last commit after a stop, bounded by the shutdown deadline. What cannot finish by then
    /// is given up and logged, never waited for: its records are redone by the partitions' next
    /// owner, with the same output ids.
    package func finish() {
        do {
            try commitBatch(draining: true)
        } catch {
            log.warning(
                "last batch not committed; the partitions' next owner redoes it",
                [("records", .int(Int64(batch.count))), ("error", .string("\(error)"))])
            if configuration.delivery == .exactlyOnce && isTransactionOpen {
                try? producer.abortTransaction(timeout: timeout(.seconds(5)))
            }
        }
    }

    /// After a failure: the commit in flight is awaited (to the deadline) and the open transaction
    /// aborted; the partitions' next owner redoes the batch.
    package func abandon() {
        if let commit = inFlight, commit.wait(until: shutdownDeadline) != nil { transaction = .none }
        if isTransactionOpen { try? producer.abortTransaction(timeout: timeout(.seconds(5))) }
    }

    /// At-least-once: the outputs still in the producer's queue are delivered by the deadline.
    package func closed() {
        if configuration.delivery == .atLeastOnce, producer.outstanding > 0 {
            _ = try? producer.flush(timeout: timeout(.seconds(10)))
        }
    }
}
