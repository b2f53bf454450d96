import Foundation
import Kafka
import Runtime

extension Applier {
    /// `normal`, or what is left until the shutdown deadline once on the way out.
    func timeout(_ normal: Duration) -> Duration {
        loop.timeout(normal)
    }

    /// Inside poll: revoked partitions get their writes in flight finished and committed first;
    /// lost ones are dropped (their next owner writes them again).
    package func rebalanced(_ event: RebalanceEvent) throws {
        switch event {
        case .assigned(let partitions):
            log.info("assigned", [("partitions", .int(Int64(partitions.count)))])
        case .revoked(let partitions):
            log.info("revoked", [("partitions", .int(Int64(partitions.count)))])
            try drainRounds(until: loop.shutdownDeadline ?? .now + .seconds(30))
            commit(timeout: timeout(.seconds(10)))
            forget(Set(partitions))
        case .lost(let partitions):
            log.warning("lost", [("partitions", .int(Int64(partitions.count)))])
            forget(Set(partitions))
        }
    }

    /// Waits for the rounds in flight to finish, taking them in, until `deadline`.
    func drainRounds(until deadline: ContinuousClock.Instant) throws {
        while rounds > 0 && ContinuousClock.now < deadline {
            inbox.wait(min(.milliseconds(100), deadline - .now))
            try settle(inbox.take())
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

    /// The last work after a stop: the writes in flight finish (or are given up halfway to the
    /// deadline), and what is done is committed.
    package func finish() {
        let deadline = loop.shutdownDeadline ?? .now
        do {
            try drainRounds(until: .now + max(.zero, (deadline - .now) / 2))
        } catch {
            // Its record stays uncommitted: the partition's next owner takes it again.
            log.error("stopping", [("error", .string("\(error)"))])
        }
        if rounds > 0 {
            log.warning(
                "writes still in flight at the shutdown deadline; the partitions' next owner redoes them",
                [("rounds", .int(Int64(rounds)))])
        }
        commit(timeout: timeout(.seconds(5)))
    }

    /// Once the group is left: the dead letters still queued are delivered by the deadline.
    package func closed() {
        if producer.outstanding > 0 { _ = try? producer.flush(timeout: timeout(.seconds(5))) }
    }
}
