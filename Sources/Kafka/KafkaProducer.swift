import CRdKafka
import Synchronization

/// An idempotent producer, optionally transactional, whose delivery reports come back as values.
///
/// Every method that can wait (`poll`, `flush`, `send` when the queue is full, the transaction
/// calls) blocks its thread: call them from a dedicated thread or through `Blocking.run`, never
/// straight from Swift's cooperative pool.
public final class KafkaProducer: Sendable {
    let handle: KafkaHandle
    private let nextID = Atomic<UInt64>(1)
    /// Serialises the calls that serve callbacks, so delivery reports land in one buffer safely.
    private let pollLock = Mutex<Void>(())
    /// Whether `initTransactions` is needed before use.
    public let isTransactional: Bool
    /// Topic handles held for the producer's lifetime, so that their metadata stays known (`prepare`).
    private let preparedTopics = Mutex<[OpaquePointer]>([])

    /// Creates the producer; fails with the offending property named when the config is bad.
    public init(configuration: ProducerConfiguration) throws(KafkaError) {
        try configuration.kafka.validate()
        let conf = try makeConf(configuration.properties)
        let context = ClientContext()
        context.install(on: conf)
        rd_kafka_conf_set_dr_msg_cb(conf, deliveryCallback)
        handle = try KafkaHandle(type: RD_KAFKA_PRODUCER, conf: conf, context: context)
        isTransactional = configuration.transactionalID != nil
    }

    deinit {
        preparedTopics.withLock { topics in
            for topic in topics { rd_kafka_topic_destroy(topic) }
        }
    }

    /// Learns the partitions and leaders of `topics` now, in one metadata request, and keeps them
    /// for the producer's lifetime. librdkafka 2.0.2 asks for a topic it first produces to only at
    /// its next one-second topic scan, so without this a new worker's first records wait up to a
    /// second (and an exactly-once worker's first commit with them). Blocks for up to `timeout`.
    public func prepare(topics: [String], timeout: Duration) throws(KafkaError) {
        preparedTopics.withLock { prepared in
            for topic in topics { prepared.append(rd_kafka_topic_new(handle.pointer, topic, nil)) }
        }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        // Not all topics: the ones this client knows, which now include `topics`.
        let err = rd_kafka_metadata(handle.pointer, 0, nil, &metadata, timeout.milliseconds)
        if let metadata { rd_kafka_metadata_destroy(metadata) }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "metadata for \(topics)") }
    }

    /// The client name librdkafka gave this producer.
    public var name: String { handle.name }

    /// The fatal error that ended this producer, if any: it must then be destroyed.
    public var fatalError: KafkaError? { handle.fatalError }

    /// Errors the client reported in the background (broker down, resolution failures...), oldest first.
    public var recentErrors: [KafkaError] { handle.context.errors }

    /// Fails unless the cluster answers a metadata request within `timeout`.
    public func checkConnection(timeout: Duration = .seconds(10)) throws(KafkaError) {
        try handle.checkConnection(timeout: timeout)
    }

    /// The cluster's id, or nil when it cannot be learnt within `timeout`. librdkafka's mock cluster
    /// (the embedded broker) calls itself `mockCluster…`.
    public func clusterID(timeout: Duration = .seconds(10)) -> String? {
        handle.clusterID(timeout: timeout)
    }

    /// The partition count of `topic`, or nil when it does not exist.
    public func partitionCount(of topic: String, timeout: Duration = .seconds(10)) throws(KafkaError) -> Int? {
        try handle.partitionCount(topic: topic, timeout: timeout)
    }

    /// Queues `record` for delivery and returns the id its `DeliveryReport` will carry.
    ///
    /// When the local queue is full this serves delivery reports (kept for the next `poll`) until
    /// there is room: librdkafka's queue is the backpressure.
    @discardableResult
    public func send(_ record: OutgoingRecord) throws(KafkaError) -> UInt64 {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        while true {
            let err = produce(record, id: id)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR { return id }
            if err == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                serve(timeout: .milliseconds(100))
                continue
            }
            if err == RD_KAFKA_RESP_ERR__FATAL, let fatal = fatalError { throw fatal }
            throw KafkaError(err, "produce to \(record.topic)")
        }
    }

    private func produce(_ record: OutgoingRecord, id: UInt64) -> rd_kafka_resp_err_t {
        var headers: OpaquePointer? = nil
        if !record.headers.isEmpty {
            headers = rd_kafka_headers_new(record.headers.count)
            for header in record.headers {
                let added: rd_kafka_resp_err_t
                if let value = header.value {
                    added = value.withUnsafeBytes {
                        rd_kafka_header_add(headers, header.name, -1, $0.baseAddress, $0.count)
                    }
                } else {
                    added = rd_kafka_header_add(headers, header.name, -1, nil, 0)
                }
                precondition(added == RD_KAFKA_RESP_ERR_NO_ERROR, "rd_kafka_header_add cannot fail on a new list")
            }
        }
        let opaque = UnsafeMutableRawPointer(bitPattern: UInt(id))
        let err = withOptionalBytes(record.key) { key in
            withOptionalBytes(record.value) { value in
                // Hands `headers` to librdkafka on success only.
                p2c_produce(
                    handle.pointer, record.topic, record.partition ?? RD_KAFKA_PARTITION_UA,
                    key.baseAddress, key.count, value.baseAddress, value.count,
                    headers, record.timestamp ?? 0, opaque
                )
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR, let headers { rd_kafka_headers_destroy(headers) }
        return err
    }

    /// Serves callbacks for up to `timeout` and returns the delivery reports gathered since the last call.
    public func poll(timeout: Duration = .zero) -> [DeliveryReport] {
        pollLock.withLock { _ in
            rd_kafka_poll(handle.pointer, timeout.milliseconds)
            return takeReports()
        }
    }

    /// Waits until every queued record is delivered or failed, or `timeout` passes; returns the
    /// delivery reports gathered since the last `poll`.
    public func flush(timeout: Duration) throws(KafkaError) -> [DeliveryReport] {
        let (err, reports) = pollLock.withLock { _ in
            let err = rd_kafka_flush(handle.pointer, timeout.milliseconds)
            // On a timeout the reports gathered so far stay for the next `poll`.
            return (err, err == RD_KAFKA_RESP_ERR_NO_ERROR ? takeReports() : [])
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(err, "flush: \(outstanding) records still queued after \(timeout)")
        }
        return reports
    }

    /// Records queued or in flight, not yet reported.
    public var outstanding: Int { Int(rd_kafka_outq_len(handle.pointer)) }

    /// Runs a librdkafka call that may serve callbacks, under the poll lock.
    func servingCallbacks<T>(_ body: () -> T) -> T {
        pollLock.withLock { _ in body() }
    }

    private func serve(timeout: Duration) {
        pollLock.withLock { _ in _ = rd_kafka_poll(handle.pointer, timeout.milliseconds) }
    }

    /// Only under `pollLock`.
    private func takeReports() -> [DeliveryReport] {
        let context = handle.context
        guard !context.pendingReports.isEmpty else { return [] }
        defer { context.pendingReports.removeAll(keepingCapacity: true) }
        return context.pendingReports
    }
}

/// The outcome of one sent record.
public struct DeliveryReport: Sendable, Equatable {
    /// The id `send` returned.
    public var id: UInt64
    public var partition: Int32
    /// The record's offset, or -1 when it failed.
    public var offset: Int64
    /// Why it failed, or nil when the broker has it.
    public var error: KafkaError?
}

/// C-callable delivery-report callback; runs inside poll or flush while `pollLock` is held.
private let deliveryCallback:
    @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = {
        _, message, opaque in
        guard let message, let opaque else { return }
        let context = ClientContext.from(opaque)
        let entry = message.pointee
        let error: KafkaError? = entry.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(entry.err)
        context.pendingReports.append(
            DeliveryReport(
                id: UInt64(UInt(bitPattern: entry._private)),
                partition: entry.partition,
                offset: error == nil ? entry.offset : -1,
                error: error
            )
        )
    }

@inline(__always)
func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    guard let bytes else { return body(UnsafeRawBufferPointer(start: nil, count: 0)) }
    return bytes.withUnsafeBytes(body)
}
