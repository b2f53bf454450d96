import Foundation
import Kafka
import Runtime

extension Applier {
    /// `normal`, or what is left until the shutdown deadline once on the way out.
    func timeout(_ normal: Duration) -> Duration {
        guard let deadline = shutdownDeadline else { return normal }
        return max(.zero, min(normal, deadline - .now))
    }

    /// Inside poll: revoked partitions get their writes in flight finished and committed first;
    /// lost ones are dropped (their next owner writes them again).
    func rebalanced(_ event: RebalanceEvent) {
        metrics.rebalances.add()
        metrics.liveness.ready()
        switch event {
        case .assigned(let partitions):
            log.info("assigned", [("partitions", .int(Int64(partitions.count)))])
        case .revoked(let partitions):
            log.info("revoked", [("partitions", .int(Int64(partitions.count)))])
            drainRounds(until: shutdownDeadline ?? .now + .seconds(30))
            commit(timeout: timeout(.seconds(10)))
            forget(Set(partitions))
        case .lost(let partitions):
            log.warning("lost", [("partitions", .int(Int64(partitions.count)))])
            forget(Set(partitions))
        }
    }

    /// Waits for the rounds in flight to finish, taking them in, until `deadline`.
    func drainRounds(until deadline: ContinuousClock.Instant) {
        while rounds > 0 && ContinuousClock.now < deadline {
            inbox.wait(min(.milliseconds(100), deadline - .now))
            settle(inbox.take())
        }
    }

    /// Drops what was read from `partitions`: queued records, offsets, pauses.
    func forget(_ partitions: Set<TopicPartition>) {
        for (key, queue) in queues where partitions.contains(queue.partition) {
            queued -= queue.records.count
            queues[key] = nil
        }
        for partition in partitions {
            ledgers[partition] = nil
            committed[partition] = nil
            pausedUntil[partition] = nil
        }
    }

    /// The way out: writes in flight finish (or are given up at the deadline), offsets are
    /// committed, the group is left, the dead letters flushed, each bounded by the deadline.
    func shutDown() {
        let budget = Duration.milliseconds(configuration.shutdownTimeoutMilliseconds)
        let deadline = (stopRequest.requestedAt ?? .now) + budget
        shutdownDeadline = deadline
        // Half the budget for the writes, the rest for the commit and leaving the group.
        drainRounds(until: .now + max(.zero, (deadline - .now) / 2))
        if rounds > 0 {
            log.warning(
                "writes still in flight at the shutdown deadline; the partitions' next owner redoes them",
                [("rounds", .int(Int64(rounds)))])
        }
        commit(timeout: timeout(.seconds(5)))
        do {
            if try !consumer.close(timeout: timeout(.seconds(30))) {
                log.warning("gave up leaving the group at the shutdown deadline")
            }
        } catch {
            log.warning("leaving the group failed", [("error", .string(error.description))])
        }
        if producer.outstanding > 0 { _ = try? producer.flush(timeout: timeout(.seconds(5))) }
    }
}
