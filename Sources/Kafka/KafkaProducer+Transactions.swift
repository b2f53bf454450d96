import CRdKafka

// MARK: - Transactions (consume-transform-produce, KIP-447)

extension KafkaProducer {
    /// Registers the transactional id with the cluster and fences older instances using it.
    /// Blocks for up to `timeout`; call once, before the first transaction.
    public func initTransactions(timeout: Duration = .seconds(60)) throws(KafkaError) {
        try KafkaError.check(servingCallbacks { rd_kafka_init_transactions(handle.pointer, timeout.milliseconds) })
    }

    /// Starts a transaction: every record sent until commit or abort belongs to it.
    public func beginTransaction() throws(KafkaError) {
        try KafkaError.check(rd_kafka_begin_transaction(handle.pointer))
    }

    /// Adds consumed positions (the offsets of the next records to read) to the open transaction,
    /// so they commit or abort with its output. Retry a retriable failure with the same arguments.
    public func sendOffsetsToTransaction(
        _ offsets: [TopicPartitionOffset],
        groupMetadata: ConsumerGroupMetadata,
        timeout: Duration = .seconds(60)
    ) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let error = PartitionList.with(offsets) { list in
            groupMetadata.withPointer { metadata in
                servingCallbacks {
                    rd_kafka_send_offsets_to_transaction(handle.pointer, list, metadata, timeout.milliseconds)
                }
            }
        }
        try KafkaError.check(error)
    }

    /// Flushes the transaction's records and commits them with its offsets. Blocks for up to `timeout`.
    /// On failure, look at `requiresAbort`, `isRetriable` and `isFatal` of the thrown error.
    public func commitTransaction(timeout: Duration = .seconds(60)) throws(KafkaError) {
        try KafkaError.check(servingCallbacks { rd_kafka_commit_transaction(handle.pointer, timeout.milliseconds) })
    }

    /// Aborts the open transaction: its records are never seen by `read_committed` readers.
    public func abortTransaction(timeout: Duration = .seconds(60)) throws(KafkaError) {
        try KafkaError.check(servingCallbacks { rd_kafka_abort_transaction(handle.pointer, timeout.milliseconds) })
    }

    /// Registers the transactional id in short steps, so that a stop request is honoured while the
    /// cluster is unreachable (a timed-out call resumes when called again). False when `stopped`
    /// turned true first; `waiting` hears of each retriable failure.
    public func initTransactions(
        until stopped: () -> Bool, waiting: (KafkaError) -> Void
    ) throws(KafkaError) -> Bool {
        while !stopped() {
            let failure: KafkaError?
            do {
                try initTransactions(timeout: .seconds(2))
                failure = nil
            } catch {
                failure = error
            }
            guard let failure else { return true }
            guard failure.isRetriable || failure.code == .timedOut else { throw failure }
            waiting(failure)
        }
        return false
    }
}
