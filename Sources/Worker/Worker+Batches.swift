import Foundation
import Kafka
import ProspectToCash
import Runtime
import Synchronization

extension Worker {
    // MARK: - Batches

    func ensureTransaction() throws {
        guard configuration.delivery == .exactlyOnce, case .none = transaction else { return }
        try producer.beginTransaction()
        transaction = .open
    }

    /// Commits the open batch: outputs and offsets together (exactly-once). At-least-once closes
    /// it instead: its offsets are committed once its outputs are delivered (`commitDelivered`),
    /// or at once after waiting for every delivery when `draining` (a revoke, the shutdown). An
    /// abortable failure aborts and rewinds instead.
    func commitBatch(draining: Bool = false) throws {
        if configuration.delivery == .atLeastOnce {
            if !batch.isEmpty {
                let (offsets, timestamps) = batch.take()
                sealed.append(SealedBatch(offsets: offsets, lastSentID: lastSentID, timestamps: timestamps))
                lastSentID = nil
            }
            if draining && !sealed.isEmpty {
                switch Result(catching: { () throws(KafkaError) in try producer.flush(timeout: timeout(.seconds(60))) })
                {
                case .success(let reports): record(reports)
                case .failure(let error) where error.isFatal: throw error
                case .failure(let error): deliveryFailure = deliveryFailure ?? error
                }
            }
            if sealed.isEmpty {
                if !refusedOffsets.isEmpty { try commitDuringRebalanceIfNeeded([]) }
                return
            }
            try commitDelivered()
            return
        }
        // One commit at a time: the one before ends (and its outcome is handled) first.
        try finishCommitInFlight()
        guard !batch.isEmpty || isTransactionOpen else {
            if !refusedOffsets.isEmpty { try commitDuringRebalanceIfNeeded([]) }
            return
        }
        // Outputs read while the commit before was in flight wait for this transaction.
        try ensureTransaction()
        guard try sendOutbox() else { return }
        let (offsets, timestamps) = batch.take()
        let commit = CommitInFlight(offsets: offsets, timestamps: timestamps)
        let metadata = commit.offsets.isEmpty ? nil : consumer.groupMetadata()
        commitQueue.async { [producer, log, shutdownDeadline] in
            func timeout() -> Duration { shutdownDeadline.map { max(.zero, $0 - .now) } ?? .seconds(60) }
            commit.finish(
                Result { () throws(KafkaError) in
                    if let metadata {
                        try Self.retrying(log: log, deadline: shutdownDeadline) { () throws(KafkaError) in
                            try producer.sendOffsetsToTransaction(
                                commit.offsets, groupMetadata: metadata, timeout: timeout())
                        }
                    }
                    try Self.retrying(log: log, deadline: shutdownDeadline) { () throws(KafkaError) in
                        try producer.commitTransaction(timeout: timeout())
                    }
                })
        }
        transaction = .committing(commit)
        // A revoke, a lost assignment or the shutdown needs the batch committed before it goes on.
        if draining { try finishCommitInFlight() }
    }

    /// Waits for the commit in flight, if any, and takes its outcome in: the batch counts as
    /// committed, or is aborted and rewound (with what was read meanwhile) when the commit failed
    /// abortably. A fatal failure ends the worker.
    func finishCommitInFlight() throws {
        guard let commit = inFlight else { return }
        guard let outcome = commit.wait(until: shutdownDeadline) else {
            throw KafkaError(
                code: .timedOut, message: "the batch's transaction was still committing at the shutdown deadline")
        }
        transaction = .none
        switch outcome {
        case .success:
            drainDeliveryReports()
            if commitsOutsideTransaction && !commit.offsets.isEmpty {
                try commitDuringRebalanceIfNeeded(commit.offsets)
            }
            committed(timestamps: commit.timestamps)
        case .failure(let error):
            guard error.requiresAbort && !error.isFatal else { throw error }
            log.warning("batch aborted, rewinding", [("error", .string(error.description))])
            // The transaction to abort is the one that failed to commit.
            transaction = .open
            try abortBatch()
        }
    }

    /// At-least-once: commits the offsets of the closed batches whose outputs are all delivered,
    /// oldest first; a failed delivery aborts and rewinds to the committed offsets instead.
    func commitDelivered() throws {
        if let failed = deliveryFailure {
            deliveryFailure = nil
            log.warning("delivery failed, rewinding", [("error", .string(failed.description))])
            try abortBatch()
            return
        }
        var done = 0
        var offsets: [TopicPartition: Int64] = [:]
        var timestamps: [Int64] = []
        for batch in sealed {
            if let last = batch.lastSentID, !deliveries.isDelivered(through: last) { break }
            for offset in batch.offsets { offsets[offset.topicPartition] = offset.offset }
            timestamps.append(contentsOf: batch.timestamps)
            done += 1
        }
        guard done > 0 else { return }
        sealed.removeFirst(done)
        try commitDuringRebalanceIfNeeded(offsets.map { TopicPartitionOffset($0.key, offset: $0.value) })
        committed(timestamps: timestamps)
    }

    /// Counts a commit and the end-to-end latency of its records.
    func committed(timestamps: [Int64]) {
        metrics.commits.add()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for timestamp in timestamps {
            metrics.endToEnd.observe(seconds: Double(max(0, now - timestamp)) / 1000)
        }
    }

    /// Commits consumer offsets, with any refused earlier. A group in the middle of a rebalance
    /// refuses them (stale generation): they are kept and sent again after the rebalance for the
    /// partitions still here; a partition that moves is redone by its next owner from its
    /// committed offset, with the same output ids, which at-least-once allows and the
    /// transaction path only needs on the mock.
    func commitDuringRebalanceIfNeeded(_ offsets: [TopicPartitionOffset]) throws(KafkaError) {
        var all = refusedOffsets
        for offset in offsets { all[offset.topicPartition] = max(all[offset.topicPartition] ?? 0, offset.offset) }
        guard !all.isEmpty else { return }
        do {
            try consumer.commit(
                all.map { TopicPartitionOffset($0.key, offset: $0.value) }, timeout: timeout(.seconds(30)))
            if !refusedOffsets.isEmpty {
                log.info("offsets refused during a rebalance now committed", [("partitions", .int(Int64(all.count)))])
            }
            refusedOffsets.removeAll()
        } catch  where Self.retryLaterCodes.contains(error.code) {
            if refusedOffsets.isEmpty {
                log.warning(
                    "offsets not committed (a rebalance, or no answer in time); retrying later",
                    [("error", .string(error.description))])
            }
            refusedOffsets = all
            refusedAt = .now
        }
    }

    /// Refusals that keep the offsets for later: a rebalance, or no answer in time.
    static let retryLaterCodes: Set<KafkaError.Code> = [
        .illegalGeneration, .unknownMemberID, .rebalanceInProgress, .timedOut,
    ]

    /// Drops the open batch and moves every assigned partition back to its committed offset.
    func abortBatch() throws {
        // A commit in flight ends first; if it fails, its own abort rewinds everything.
        if inFlight != nil {
            try finishCommitInFlight()
            guard !batch.isEmpty || isTransactionOpen || !outbox.isEmpty else { return }
        }
        if configuration.delivery == .exactlyOnce && isTransactionOpen {
            // An abort that fails retriably, or asks to be aborted again, is simply called again.
            try retrying(alsoWhenAbortRequired: true) { () throws(KafkaError) in
                try producer.abortTransaction(timeout: timeout(.seconds(60)))
            }
            transaction = .none
        }
        batch.reset()
        outbox.removeAll(keepingCapacity: true)
        // At-least-once: closed batches are redone too (what was delivered of them is sent again),
        // and what is still in flight no longer counts.
        sealed.removeAll()
        lastSentID = nil
        deliveries.abandon()
        deliveryFailure = nil
        metrics.aborts.add()
        let assigned = try consumer.assignment()
        guard !assigned.isEmpty else { return }
        // A partition whose last commit was refused restarts after its delivered work.
        let committed = try consumer.committed(assigned, timeout: timeout(.seconds(10))).map { position in
            if let done = refusedOffsets[position.topicPartition] {
                return TopicPartitionOffset(position.topicPartition, offset: done)
            }
            return position.offset >= 0
                ? position : TopicPartitionOffset(position.topicPartition, offset: KafkaOffset.beginning)
        }
        try consumer.seek(committed, timeout: timeout(.seconds(10)))
    }

    /// Calls `body` again while it fails retriably (or, with `alsoWhenAbortRequired`, asks for
    /// another abort), with a short growing pause, up to ten times.
    func retrying(alsoWhenAbortRequired: Bool = false, _ body: () throws(KafkaError) -> Void) throws(KafkaError) {
        try Self.retrying(log: log, deadline: shutdownDeadline, alsoWhenAbortRequired: alsoWhenAbortRequired, body)
    }

    /// Retries stop at `deadline` (the shutdown's), if any.
    static func retrying(
        log: Log, deadline: ContinuousClock.Instant?, alsoWhenAbortRequired: Bool = false,
        _ body: () throws(KafkaError) -> Void
    ) throws(KafkaError) {
        var attempt = 0
        while true {
            do {
                try body()
                return
            } catch
                where !error.isFatal && attempt < 10
                && (error.isRetriable && !error.requiresAbort || alsoWhenAbortRequired && error.requiresAbort)
                && deadline.map({ ContinuousClock.now < $0 }) ?? true
            {
                attempt += 1
                log.warning("retrying", [("attempt", .int(Int64(attempt))), ("error", .string(error.description))])
                var pause = Duration.milliseconds(100 * attempt)
                if let deadline { pause = min(pause, max(.zero, deadline - .now)) }
                Thread.sleep(forTimeInterval: pause.seconds)
            }
        }
    }

    func drainDeliveryReports() { record(producer.poll()) }

    /// Takes delivery reports in: failures to abort on, deliveries for at-least-once commits.
    func record(_ reports: [DeliveryReport]) {
        for report in reports {
            if configuration.delivery == .atLeastOnce && !deliveries.counts(report.id) { continue }
            if let error = report.error {
                deliveryFailure = deliveryFailure ?? error
            } else if configuration.delivery == .atLeastOnce {
                deliveries.delivered(report.id)
            }
        }
    }
}
