import Foundation
import Kafka
import ProspectToCash
import Runtime
import Synchronization

extension Worker {
    /// `normal`, or what is left until the shutdown deadline once the worker is on its way out.
    func timeout(_ normal: Duration) -> Duration {
        guard let deadline = shutdownDeadline else { return normal }
        return max(.zero, min(normal, deadline - .now))
    }

    /// Starts the shutdown clock (from the stop request when there was one).
    func beginShutdown() {
        guard shutdownDeadline == nil else { return }
        let budget = Duration.milliseconds(configuration.shutdownTimeoutMilliseconds)
        shutdownDeadline = (stopRequest.requestedAt ?? .now) + budget
    }

    /// The way out after a stop: the last commit, leaving the group and the final flush, each
    /// bounded by the shutdown deadline. What cannot finish by then is given up and logged, never
    /// waited for: its records are redone by the partitions' next owner, with the same output ids.
    func shutDown() {
        beginShutdown()
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
        leaveGroup()
        if configuration.delivery == .atLeastOnce, producer.outstanding > 0 {
            _ = try? producer.flush(timeout: timeout(.seconds(10)))
        }
    }

    /// Leaves the group by the shutdown deadline, or logs that it gave up: the group then moves
    /// this member's partitions only once its session times out.
    func leaveGroup() {
        do {
            if try !consumer.close(timeout: timeout(.seconds(30))) {
                log.warning(
                    "gave up leaving the group at the shutdown deadline; its partitions move when the session times out",
                    [("session_timeout_ms", .int(Int64(configuration.sessionTimeoutMilliseconds)))])
            }
        } catch {
            log.warning("leaving the group failed", [("error", .string(error.description))])
        }
        if let failure = rebalanceFailure {
            log.warning("work on revoked partitions given up", [("error", .string("\(failure)"))])
        }
    }
}
