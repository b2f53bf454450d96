import CRdKafka
import Foundation
import Synchronization

/// Owns one `rd_kafka_t` and destroys it in `deinit`; the base of producers, consumers and the
/// embedded cluster.
final class KafkaHandle: Sendable {
    /// The C handle. Reach it only through methods of this module; never let it escape.
    /// `rd_kafka_t` is thread-safe, which is what makes this class `Sendable`.
    nonisolated(unsafe) let pointer: OpaquePointer
    /// What the callbacks reach; kept alive as long as the handle.
    let context: ClientContext
    /// Set when destroying the handle would crash (see `KafkaConsumer.close`): it is then left to
    /// the end of the process.
    let mustNotDestroy = Atomic<Bool>(false)

    /// Creates the handle; `rd_kafka_new` takes the conf on success only, so it is freed here on failure.
    init(type: rd_kafka_type_t, conf: OpaquePointer, context: ClientContext) throws(KafkaError) {
        let (handle, text) = withErrorBuffer { rd_kafka_new(type, conf, $0, $1) }
        guard let handle else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(code: .invalidConfiguration, message: text)
        }
        self.pointer = handle
        self.context = context
    }

    deinit {
        guard mustNotDestroy.load(ordering: .relaxed) else {
            // Returns once librdkafka's threads are gone: no callback reaches the context after it.
            rd_kafka_destroy(pointer)
            return
        }
        // The client lives on to the end of the process, and its threads still call back into the
        // context (a request timing out, a log line): it must outlive them, or they lock a freed
        // Mutex ("Unknown error occurred while attempting to acquire a Mutex", seen in CI).
        _ = Unmanaged.passRetained(context)
    }

    /// The client's name, e.g. `p2c#producer-1`.
    var name: String { String(cString: rd_kafka_name(pointer)) }

    /// The fatal error that ended this client, if any.
    var fatalError: KafkaError? {
        let (err, text) = withErrorBuffer { rd_kafka_fatal_error(pointer, $0, $1) }
        guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        return KafkaError(code: .init(err), message: text, isFatal: true)
    }

    /// Asks the cluster for metadata; fails with the most telling error seen when it cannot connect.
    /// Blocks for up to `timeout`.
    func checkConnection(timeout: Duration) throws(KafkaError) {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(pointer, 0, nil, &metadata, timeout.milliseconds)
        if let metadata { rd_kafka_metadata_destroy(metadata) }
        guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return }
        let reason = context.lastError.map { ": \($0.message)" } ?? ""
        throw KafkaError(code: .init(err), message: "cannot reach the cluster\(reason)", isRetriable: true)
    }

    /// The cluster's id, or nil when it cannot be learnt within `timeout`. Blocks.
    func clusterID(timeout: Duration) -> String? {
        guard let id = rd_kafka_clusterid(pointer, timeout.milliseconds) else { return nil }
        defer { rd_kafka_mem_free(pointer, id) }
        return String(cString: id)
    }

    /// Partition count of `topic`, or nil when the cluster does not know it. Blocks for up to `timeout`.
    func partitionCount(topic: String, timeout: Duration) throws(KafkaError) -> Int? {
        let rkt = rd_kafka_topic_new(pointer, topic, nil)
        defer { rd_kafka_topic_destroy(rkt) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(pointer, 0, rkt, &metadata, timeout.milliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(err, "metadata for \(topic)") }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt > 0 else { return nil }
        let entry = metadata.pointee.topics[0]
        guard entry.err == RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        return Int(entry.partition_cnt)
    }
}

/// What librdkafka's callbacks need to reach: the error log, delivery reports and the rebalance
/// handler. One per client, passed as the conf's opaque; the client keeps it alive.
final class ClientContext: @unchecked Sendable {
    // @unchecked: `errors` and `rebalanceHandler` are behind a Mutex; `pendingReports` is only
    // touched inside librdkafka calls that serve callbacks, which the producer serialises with its
    // `pollLock`, so one lock per poll guards a whole batch of delivery reports.
    private let recentErrors = Mutex<[KafkaError]>([])
    private static let errorCapacity = 16
    let rebalanceHandler = Mutex<(@Sendable (RebalanceEvent) -> Void)?>(nil)
    /// Receives librdkafka's statistics JSON (every `statistics.interval.ms`), inside poll.
    let statisticsHandler = Mutex<(@Sendable ([UInt8]) -> Void)?>(nil)
    /// Whether the group ever handed this consumer an assignment (even an empty one).
    let everAssigned = Atomic<Bool>(false)
    var pendingReports: [DeliveryReport] = []

    func append(_ error: KafkaError) {
        recentErrors.withLock {
            if $0.count == Self.errorCapacity { $0.removeFirst() }
            $0.append(error)
        }
    }

    /// The last error librdkafka reported through its error callback.
    var lastError: KafkaError? { recentErrors.withLock { $0.last } }
    /// The last errors librdkafka reported, oldest first.
    var errors: [KafkaError] { recentErrors.withLock { $0 } }

    /// Installs the error and log callbacks, with this context as the conf's opaque.
    func install(on conf: OpaquePointer) {
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(self).toOpaque())
        rd_kafka_conf_set_error_cb(conf, errorCallback)
        rd_kafka_conf_set_log_cb(conf, logCallback)
        rd_kafka_conf_set_stats_cb(conf, statisticsCallback)
    }

    static func from(_ opaque: UnsafeMutableRawPointer) -> ClientContext {
        Unmanaged<ClientContext>.fromOpaque(opaque).takeUnretainedValue()
    }
}

/// C-callable error callback; runs inside poll on the polling thread.
private let errorCallback:
    @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = {
        _, err, reason, opaque in
        guard let opaque else { return }
        let code = rd_kafka_resp_err_t(rawValue: err)
        ClientContext.from(opaque).append(
            KafkaError(
                code: .init(code),
                message: reason.map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(code)),
                isFatal: code == RD_KAFKA_RESP_ERR__FATAL
            )
        )
    }

/// C-callable statistics callback; returns 0 so librdkafka frees the JSON after the copy.
private let statisticsCallback:
    @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int, UnsafeMutableRawPointer?) -> Int32 = {
        _, json, length, opaque in
        guard let json, let opaque, let handler = ClientContext.from(opaque).statisticsHandler.withLock({ $0 }) else {
            return 0
        }
        handler(Array(UnsafeRawBufferPointer(start: json, count: length)))
        return 0
    }

/// C-callable log callback; librdkafka may call it from any of its threads.
private let logCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void =
    {
        rk, level, facility, text in
        let facility = facility.map { String(cString: $0) } ?? ""
        let message = text.map { String(cString: $0) } ?? ""
        let clientName = rk.map { String(cString: rd_kafka_name($0)) } ?? ""
        // Errors are also kept on the client, so a failed connection check can say why.
        if level <= 3, let rk, let opaque = rd_kafka_opaque(rk) {
            ClientContext.from(opaque).append(KafkaError(code: .noError, message: message))
        }
        KafkaLog.emit(KafkaLog.Entry(level: level, facility: facility, client: clientName, message: message))
    }

/// Where librdkafka's own log lines go: standard error by default, or a handler the program sets.
public enum KafkaLog {
    /// One librdkafka log line.
    public struct Entry: Sendable {
        /// Syslog level: 0 emergency ... 3 error, 4 warning, 6 info, 7 debug.
        public var level: Int32
        /// librdkafka's subsystem, e.g. `FAIL` or `CGRPQUERY`.
        public var facility: String
        /// The client's name, e.g. `p2c#consumer-2`.
        public var client: String
        public var message: String
    }

    private static let handler = Mutex<(@Sendable (Entry) -> Void)?>(nil)

    /// Sends every later librdkafka log line to `newHandler` (called from librdkafka's threads).
    public static func setHandler(_ newHandler: @escaping @Sendable (Entry) -> Void) {
        handler.withLock { $0 = newHandler }
    }

    static func emit(_ entry: Entry) {
        if let handler = handler.withLock({ $0 }) {
            handler(entry)
        } else {
            let line = "%\(entry.level)|\(entry.facility)|\(entry.client)| \(entry.message)\n"
            FileHandle.standardError.write(Data(line.utf8))
        }
    }
}

extension Duration {
    /// Whole milliseconds, clamped to what librdkafka's `int` timeouts take.
    var milliseconds: Int32 {
        let (seconds, attoseconds) = components
        let total = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return Int32(clamping: total)
    }
}
