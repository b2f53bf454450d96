import CRdKafka
import Synchronization

/// A group consumer with cooperative-sticky assignment, application-managed offsets and a
/// rebalance handler that runs before revoked partitions are given up.
///
/// `poll`, `commit`, `committed`, `seek` with a timeout and `close` block: call them from a
/// dedicated thread or through `Blocking.run`. Only one thread may poll at a time.
public final class KafkaConsumer: @unchecked Sendable {
    // @unchecked: `topicNames` is touched only inside `poll`, which the `polling` flag keeps to one
    // thread at a time; everything else is librdkafka's thread-safe handle or behind a Mutex.
    let handle: KafkaHandle
    private var topicNames: [OpaquePointer: String] = [:]
    /// Records returned, and whether the queue held a backlog since the fetchers were last woken (`wakeFetchers`).
    private var read = 0
    private var sawBacklog = false
    private let wakes = Atomic<Int>(0)
    /// The queue `poll` reads (every assigned partition's records end up there).
    private let queue: OpaquePointer
    private let polling = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)

    /// Creates the consumer; fails with the offending property named when the config is bad.
    public init(configuration: ConsumerConfiguration) throws(KafkaError) {
        try configuration.kafka.validate()
        let conf = try makeConf(configuration.properties)
        let context = ClientContext()
        context.install(on: conf)
        rd_kafka_conf_set_rebalance_cb(conf, rebalanceCallback)
        handle = try KafkaHandle(type: RD_KAFKA_CONSUMER, conf: conf, context: context)
        // One poll point: the main queue (errors, rebalances) is served by consumer_poll.
        rd_kafka_poll_set_consumer(handle.pointer)
        queue = rd_kafka_queue_get_consumer(handle.pointer)
    }

    deinit {
        if !closed.load(ordering: .relaxed) {
            keepIfDestroyWouldCrash()
            rd_kafka_consumer_close(handle.pointer)
        }
        rd_kafka_queue_destroy(queue)
    }

    /// librdkafka 2.0.2 asserts (SIGABRT) when it destroys a cooperative-sticky member that joined
    /// its group but has not been handed its first assignment yet (fixed in 2.3.0): a worker
    /// stopped while it joins crashed on the way out. Such a handle is closed but not destroyed;
    /// the process ends soon after in every case where this happens.
    private func keepIfDestroyWouldCrash() {
        if !memberID.isEmpty && !handle.context.everAssigned.load(ordering: .relaxed) {
            handle.mustNotDestroy.store(true, ordering: .relaxed)
        }
    }

    /// The client name librdkafka gave this consumer.
    public var name: String { handle.name }

    /// Called inside `poll` when partitions are assigned (after they are), revoked or lost (before
    /// they are given up, so work on them can still be committed or aborted).
    public func onRebalance(_ handler: @escaping @Sendable (RebalanceEvent) -> Void) {
        handle.context.rebalanceHandler.withLock { $0 = handler }
    }

    /// Receives librdkafka's statistics JSON inside `poll`, every `statisticsIntervalMilliseconds`.
    public func onStatistics(_ handler: @escaping @Sendable ([UInt8]) -> Void) {
        handle.context.statisticsHandler.withLock { $0 = handler }
    }

    /// Errors the client reported in the background, oldest first.
    public var recentErrors: [KafkaError] { handle.context.errors }

    /// Fails unless the cluster answers a metadata request within `timeout`.
    public func checkConnection(timeout: Duration = .seconds(10)) throws(KafkaError) {
        try handle.checkConnection(timeout: timeout)
    }

    /// Joins the group for `topics`; assignments arrive through `poll`.
    public func subscribe(_ topics: [String]) throws(KafkaError) {
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics { rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA) }
        try KafkaError.check(rd_kafka_subscribe(handle.pointer, list), "subscribe")
    }

    /// Waits up to `timeout` for the next record or event. Throws only when the consumer is dead.
    public func poll(timeout: Duration) throws(KafkaError) -> ConsumerEvent? {
        precondition(
            polling.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged,
            "KafkaConsumer.poll called from two threads at once"
        )
        defer { polling.store(false, ordering: .releasing) }
        guard let message = rd_kafka_consumer_poll(handle.pointer, timeout.milliseconds) else {
            if sawBacklog { wakeFetchers() }
            return nil
        }
        // Copy out at once; the message goes back to librdkafka when this returns.
        defer { rd_kafka_message_destroy(message) }
        let entry = message.pointee
        if entry.err == RD_KAFKA_RESP_ERR_NO_ERROR {
            read &+= 1
            if read % 64 == 0 { watchQueue() }
            return .record(copyRecord(message))
        }
        let topic = entry.rkt.map { topicName($0) } ?? ""
        if entry.err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
            return .partitionEnd(TopicPartitionOffset(topic, entry.partition, offset: entry.offset))
        }
        if entry.err == RD_KAFKA_RESP_ERR__FATAL, let fatal = handle.fatalError { throw fatal }
        let text = rd_kafka_message_errstr(message).map { String(cString: $0) } ?? ""
        return .error(KafkaError(entry.err, topic.isEmpty ? text : "\(topic)[\(entry.partition)]: \(text)"))
    }

    private func copyRecord(_ message: UnsafeMutablePointer<rd_kafka_message_t>) -> KafkaRecord {
        let entry = message.pointee
        var headers: [KafkaHeader] = []
        var list: OpaquePointer?
        if rd_kafka_message_headers(message, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list {
            headers.reserveCapacity(rd_kafka_header_cnt(list))
            var index = 0
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(list, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
                headers.append(KafkaHeader(String(cString: name!), bytes))
                index += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(message, &timestampType)
        return KafkaRecord(
            topic: topicName(entry.rkt),
            partition: entry.partition,
            offset: entry.offset,
            key: entry.key.map { Array(UnsafeRawBufferPointer(start: $0, count: entry.key_len)) },
            value: entry.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: entry.len)) },
            headers: headers,
            timestamp: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : timestamp
        )
    }

    /// Queue lengths (records) that count as a backlog, and under which a backlog's queue runs low.
    static let backlog = 1_000
    static let runningLow = 250

    /// Every 64 records: notes a backlog in the queue, and wakes the fetchers when it has run low.
    private func watchQueue() {
        let length = rd_kafka_queue_length(queue)
        if length >= Self.backlog {
            sawBacklog = true
        } else if sawBacklog && length < Self.runningLow {
            wakeFetchers()
        }
    }

    /// How many times `poll` woke the fetchers (see `wakeFetchers`).
    public var fetcherWakes: Int { wakes.load(ordering: .relaxed) }

    /// librdkafka 2.0.2 stops fetching a partition once the prefetch queue is over
    /// `queued.max.messages.kbytes` and looks at it again only when its broker thread next wakes:
    /// on network traffic or a request, else after a second (`fetch.queue.backoff.ms`, which bounds
    /// that, arrived in 2.2.0). A consumer with a backlog that reads its prefetch faster sat idle
    /// for the rest of each second (a worker read 13 k records a second, idle four fifths of the
    /// time). So when a queue that held a backlog runs low or empty, a metadata request (one round
    /// trip, to any broker) wakes a broker thread, which fetches again at once; with several
    /// brokers, successive wakes reach the others. A consumer that keeps up (its queue never holds
    /// a backlog) or is idle sends nothing.
    /// (The watermarks of an assigned partition, tried first, woke the partition's leader but
    /// delayed the fetches behind them: at-least-once p99 15 → 41 ms at 1 000 records a second.)
    private func wakeFetchers() {
        sawBacklog = false
        wakes.add(1, ordering: .relaxed)
        var metadata: UnsafePointer<rd_kafka_metadata>?
        _ = rd_kafka_metadata(handle.pointer, 0, nil, &metadata, 1_000)
        if let metadata { rd_kafka_metadata_destroy(metadata) }
    }

    /// Topic names are interned per topic handle, so long names are not allocated per record.
    private func topicName(_ topic: OpaquePointer) -> String {
        if let name = topicNames[topic] { return name }
        let name = String(cString: rd_kafka_topic_name(topic))
        topicNames[topic] = name
        return name
    }

    /// Reads exactly these partitions from these offsets, outside any group rebalancing (no
    /// `subscribe`): for tools that scan topics, such as listing dead letters.
    public func assign(_ offsets: [TopicPartitionOffset]) throws(KafkaError) {
        try PartitionList.with(offsets) { list throws(KafkaError) in
            try KafkaError.check(rd_kafka_assign(handle.pointer, list), "assign")
        }
    }

    /// The first and the next-to-be-written offsets of a partition (low and high watermarks). Blocks.
    public func watermarks(
        _ partition: TopicPartition, timeout: Duration = .seconds(10)
    ) throws(KafkaError)
        -> (low: Int64, high: Int64)
    {
        var low: Int64 = 0
        var high: Int64 = 0
        try KafkaError.check(
            rd_kafka_query_watermark_offsets(
                handle.pointer, partition.topic, partition.partition, &low, &high, timeout.milliseconds),
            "watermarks of \(partition)")
        return (low, high)
    }

    /// The first offset whose timestamp is at or after `milliseconds` in each partition, as the
    /// broker's ListOffsets answers (`KafkaOffset.end`/-1 where it has none). Blocks.
    public func offsets(
        forTimestamp milliseconds: Int64, _ partitions: [TopicPartition], timeout: Duration = .seconds(10)
    )
        throws(KafkaError) -> [TopicPartitionOffset]
    {
        let result: Result<[TopicPartitionOffset], KafkaError> = PartitionList.with(
            partitions.map { TopicPartitionOffset($0, offset: milliseconds) }
        ) { list in
            let err = rd_kafka_offsets_for_times(handle.pointer, list, timeout.milliseconds)
            return err == RD_KAFKA_RESP_ERR_NO_ERROR
                ? .success(PartitionList.copy(list)) : .failure(KafkaError(err, "offsets for times"))
        }
        return try result.get()
    }

    /// Marks offsets (next record to read) for the next commit, manual or automatic.
    public func store(_ offsets: [TopicPartitionOffset]) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let failure: KafkaError? = PartitionList.with(offsets) { list in
            let err = rd_kafka_offsets_store(handle.pointer, list)
            if let partitionError = PartitionList.firstError(list) { return partitionError }
            return err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(err, "store offsets")
        }
        if let failure { throw failure }
    }

    /// Commits `offsets` and waits at most `timeout` for the coordinator's answer: a timed-out
    /// commit throws `.timedOut` (retriable; the commit may still land). A plain synchronous commit
    /// waits as long as the coordinator takes, which during a rebalance or a network partition can
    /// be far longer than a stopping worker has.
    public func commit(_ offsets: [TopicPartitionOffset], timeout: Duration) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let queue = rd_kafka_queue_new(handle.pointer)
        // Destroying the queue first is safe: an answer that comes later is dropped with it.
        defer { rd_kafka_queue_destroy(queue) }
        let err = PartitionList.with(offsets) { rd_kafka_commit_queue(handle.pointer, $0, queue, nil, nil) }
        try KafkaError.check(err, "commit")
        let deadline = ContinuousClock.now + timeout
        while true {
            let left = deadline - .now
            guard left > .zero, let event = rd_kafka_queue_poll(queue, max(1, min(100, left.milliseconds))) else {
                guard ContinuousClock.now < deadline else {
                    throw KafkaError(code: .timedOut, message: "commit: no answer within \(timeout)", isRetriable: true)
                }
                continue
            }
            defer { rd_kafka_event_destroy(event) }
            guard rd_kafka_event_type(event) == RD_KAFKA_EVENT_OFFSET_COMMIT else { continue }
            let eventError = rd_kafka_event_error(event)
            if eventError == RD_KAFKA_RESP_ERR__NO_OFFSET { return }
            try KafkaError.check(eventError, "commit")
            if let list = rd_kafka_event_topic_partition_list(event), let failure = PartitionList.firstError(list) {
                throw failure
            }
            return
        }
    }

    /// Commits `offsets`, or every stored offset when nil. Blocks until the broker answers unless `async`.
    public func commit(_ offsets: [TopicPartitionOffset]? = nil, async: Bool = false) throws(KafkaError) {
        let err: rd_kafka_resp_err_t
        if let offsets {
            err = PartitionList.with(offsets) { rd_kafka_commit(handle.pointer, $0, async ? 1 : 0) }
        } else {
            err = rd_kafka_commit(handle.pointer, nil, async ? 1 : 0)
        }
        // Nothing stored yet is not a failure.
        if err == RD_KAFKA_RESP_ERR__NO_OFFSET { return }
        try KafkaError.check(err, "commit")
    }

    /// The group's committed offsets for `partitions` (`KafkaOffset.invalid` where none). Blocks.
    public func committed(
        _ partitions: [TopicPartition], timeout: Duration = .seconds(10)
    ) throws(KafkaError)
        -> [TopicPartitionOffset]
    {
        let result: Result<[TopicPartitionOffset], KafkaError> = PartitionList.with(partitions: partitions) { list in
            let err = rd_kafka_committed(handle.pointer, list, timeout.milliseconds)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { return .failure(KafkaError(err, "committed offsets")) }
            if let partitionError = PartitionList.firstError(list) { return .failure(partitionError) }
            return .success(PartitionList.copy(list))
        }
        return try result.get()
    }

    /// The next offset this consumer will read in each partition (`KafkaOffset.invalid` where unknown).
    public func position(_ partitions: [TopicPartition]) throws(KafkaError) -> [TopicPartitionOffset] {
        let result: Result<[TopicPartitionOffset], KafkaError> = PartitionList.with(partitions: partitions) { list in
            let err = rd_kafka_position(handle.pointer, list)
            return err == RD_KAFKA_RESP_ERR_NO_ERROR ? .success(PartitionList.copy(list)) : .failure(KafkaError(err))
        }
        return try result.get()
    }

    /// The partitions currently assigned to this member.
    public func assignment() throws(KafkaError) -> [TopicPartition] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        try KafkaError.check(rd_kafka_assignment(handle.pointer, &list), "assignment")
        guard let list else { return [] }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        return PartitionList.copy(list).map(\.topicPartition)
    }

    /// True when the last revoke happened because the assignment was lost (session timeout,
    /// fencing): then work on those partitions must be aborted, not committed.
    public var isAssignmentLost: Bool { rd_kafka_assignment_lost(handle.pointer) != 0 }

    /// Moves the read position of assigned partitions; the next poll reads from there. Blocks up to `timeout`.
    public func seek(_ offsets: [TopicPartitionOffset], timeout: Duration = .seconds(10)) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let failure: KafkaError? = PartitionList.with(offsets) { list in
            if let error = rd_kafka_seek_partitions(handle.pointer, list, timeout.milliseconds) {
                return KafkaError(taking: error)
            }
            return PartitionList.firstError(list)
        }
        if let failure { throw failure }
    }

    /// Stops fetching from `partitions` until `resume`.
    public func pause(_ partitions: [TopicPartition]) throws(KafkaError) {
        try PartitionList.with(partitions: partitions) { list throws(KafkaError) in
            try KafkaError.check(rd_kafka_pause_partitions(handle.pointer, list), "pause")
        }
    }

    /// Fetches from `partitions` again.
    public func resume(_ partitions: [TopicPartition]) throws(KafkaError) {
        try PartitionList.with(partitions: partitions) { list throws(KafkaError) in
            try KafkaError.check(rd_kafka_resume_partitions(handle.pointer, list), "resume")
        }
    }

    /// This member's group generation and id, for `sendOffsetsToTransaction`.
    public func groupMetadata() -> ConsumerGroupMetadata {
        ConsumerGroupMetadata(taking: rd_kafka_consumer_group_metadata(handle.pointer))
    }

    /// The member id the coordinator gave this consumer, empty before it joined.
    public var memberID: String {
        guard let id = rd_kafka_memberid(handle.pointer) else { return "" }
        defer { rd_kafka_mem_free(handle.pointer, id) }
        return String(cString: id)
    }

    /// Leaves the group: revokes the assignment through the rebalance handler, commits what
    /// auto-commit has stored, and sends LeaveGroup so partitions move at once. Blocks.
    public func close() throws(KafkaError) {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return }
        keepIfDestroyWouldCrash()
        try KafkaError.check(rd_kafka_consumer_close(handle.pointer), "close")
    }

    /// Leaves the group as `close()` does, serving the rebalance handler on this thread, but gives
    /// up after `timeout`: false when the close had not finished by then. librdkafka's close waits
    /// as long as the group takes (2.0.2 can hang when an assignment arrives while closing,
    /// upstream #4528); a consumer given up on is never destroyed (destroying it would wait for
    /// the same close), so the process should end soon after. Blocks for at most `timeout`.
    public func close(timeout: Duration) throws(KafkaError) -> Bool {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return true }
        keepIfDestroyWouldCrash()
        let queue = rd_kafka_queue_new(handle.pointer)!
        defer { rd_kafka_queue_destroy(queue) }
        try KafkaError.check(rd_kafka_consumer_close_queue(handle.pointer, queue))
        let deadline = ContinuousClock.now + timeout
        while rd_kafka_consumer_closed(handle.pointer) == 0 {
            let left = deadline - .now
            guard left > .zero else {
                handle.mustNotDestroy.store(true, ordering: .relaxed)
                return false
            }
            // Served here: the rebalance callback runs inside this poll; other events are dropped.
            if let event = rd_kafka_queue_poll(queue, max(1, min(100, left.milliseconds))) {
                if rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE {
                    rebalanceCallback(
                        handle.pointer, rd_kafka_event_error(event), rd_kafka_event_topic_partition_list(event),
                        Unmanaged.passUnretained(handle.context).toOpaque())
                }
                rd_kafka_event_destroy(event)
            }
        }
        return true
    }
}

/// What `KafkaConsumer.poll` returns.
public enum ConsumerEvent: Sendable, Equatable {
    /// A record.
    case record(KafkaRecord)
    /// The consumer has read everything in a partition, up to this offset (with `reportPartitionEnd`).
    case partitionEnd(TopicPartitionOffset)
    /// A consumer error the client recovers from by itself (a partition's fetch failed, for example).
    case error(KafkaError)
}

/// A change of this member's assignment.
public enum RebalanceEvent: Sendable, Equatable {
    /// These partitions are now this member's.
    case assigned([TopicPartition])
    /// These partitions are being taken away in an orderly way: commit work on them now.
    case revoked([TopicPartition])
    /// These partitions were taken away without notice (session lost): abort work on them.
    case lost([TopicPartition])
}

/// The group generation, member id and instance id that a transaction commits offsets under.
public final class ConsumerGroupMetadata: Sendable {
    /// Immutable C object, freed in deinit; never escapes `withPointer`.
    nonisolated(unsafe) private let pointer: OpaquePointer

    init(taking pointer: OpaquePointer) { self.pointer = pointer }
    deinit { rd_kafka_consumer_group_metadata_destroy(pointer) }

    func withPointer<T>(_ body: (OpaquePointer) -> T) -> T { body(pointer) }
}

/// C-callable rebalance callback; runs inside `rd_kafka_consumer_poll` (or close) on the polling thread.
private let rebalanceCallback:
    @convention(c) (
        OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
        UnsafeMutableRawPointer?
    ) -> Void = { rk, err, partitions, opaque in
        guard let rk, let opaque else { return }
        let context = ClientContext.from(opaque)
        let handler = context.rebalanceHandler.withLock { $0 }
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        let moved = partitions.map { PartitionList.copy($0).map(\.topicPartition) } ?? []
        var failure: KafkaError?

        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            if cooperative {
                if let error = rd_kafka_incremental_assign(rk, partitions) { failure = KafkaError(taking: error) }
            } else {
                let result = rd_kafka_assign(rk, partitions)
                if result != RD_KAFKA_RESP_ERR_NO_ERROR { failure = KafkaError(result, "assign") }
            }
            if failure == nil { handler?(.assigned(moved)) }
            context.everAssigned.store(true, ordering: .relaxed)
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            handler?(rd_kafka_assignment_lost(rk) != 0 ? .lost(moved) : .revoked(moved))
            if cooperative {
                if let error = rd_kafka_incremental_unassign(rk, partitions) { failure = KafkaError(taking: error) }
            } else {
                let result = rd_kafka_assign(rk, nil)
                if result != RD_KAFKA_RESP_ERR_NO_ERROR { failure = KafkaError(result, "unassign") }
            }
        default:
            // Anything else: drop the assignment to resynchronise with the group, as rdkafka.h asks.
            failure = KafkaError(err, "rebalance")
            handler?(.lost(moved))
            rd_kafka_assign(rk, nil)
        }
        if let failure { context.append(failure) }
    }

extension KafkaConsumer {
    /// Reads `positions` to the end of each partition, calling `body` for every record in
    /// partition order. Needs `reportPartitionEnd`; fails when nothing arrives for `idle`.
    public func readToEnd(
        _ positions: [TopicPartitionOffset], idle: Duration = .seconds(30), _ body: (KafkaRecord) throws -> Void
    ) throws {
        guard !positions.isEmpty else { return }
        try assign(positions)
        var ended: Set<TopicPartition> = []
        var lastSeen = ContinuousClock.now
        while ended.count < positions.count {
            guard ContinuousClock.now - lastSeen < idle else {
                throw KafkaError(
                    code: .timedOut,
                    message: "\(positions.count - ended.count) partitions not read to their end: nothing for \(idle)")
            }
            switch try poll(timeout: .milliseconds(200)) {
            case .record(let record)?:
                lastSeen = .now
                try body(record)
            case .partitionEnd(let position)?:
                lastSeen = .now
                ended.insert(position.topicPartition)
            case .error(let error)?: throw error
            case nil: break
            }
        }
    }
}
