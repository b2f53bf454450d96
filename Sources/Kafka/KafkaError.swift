import CRdKafka

/// An error from librdkafka, keeping its code and how a caller should react to it.
public struct KafkaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The librdkafka error code.
    public var code: Code
    /// What went wrong, in librdkafka's words or ours.
    public var message: String
    /// The client is unusable: destroy it (a worker exits non-zero and is restarted).
    public var isFatal: Bool
    /// The same call may succeed when retried.
    public var isRetriable: Bool
    /// The open transaction must be aborted before anything else (and the input rewound).
    public var requiresAbort: Bool

    public init(
        code: Code,
        message: String,
        isFatal: Bool = false,
        isRetriable: Bool = false,
        requiresAbort: Bool = false
    ) {
        self.code = code
        self.message = message
        self.isFatal = isFatal
        self.isRetriable = isRetriable
        self.requiresAbort = requiresAbort
    }

    /// Wraps a `rd_kafka_resp_err_t`, with librdkafka's text for it when `message` is nil.
    init(_ err: rd_kafka_resp_err_t, _ message: String? = nil) {
        self.init(
            code: Code(err),
            message: message ?? String(cString: rd_kafka_err2str(err)),
            isRetriable: Self.retriableCodes.contains(err.rawValue)
        )
    }

    /// Takes ownership of a `rd_kafka_error_t` (destroying it) and keeps its classification.
    init(taking error: OpaquePointer) {
        defer { rd_kafka_error_destroy(error) }
        self.init(
            code: Code(rd_kafka_error_code(error)),
            message: String(cString: rd_kafka_error_string(error)),
            isFatal: rd_kafka_error_is_fatal(error) != 0,
            isRetriable: rd_kafka_error_is_retriable(error) != 0,
            requiresAbort: rd_kafka_error_txn_requires_abort(error) != 0
        )
    }

    /// Throws when `err` is not `RD_KAFKA_RESP_ERR_NO_ERROR`.
    static func check(_ err: rd_kafka_resp_err_t, _ context: @autoclosure () -> String = "") throws(KafkaError) {
        guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return }
        let context = context()
        let text = String(cString: rd_kafka_err2str(err))
        throw KafkaError(err, context.isEmpty ? text : "\(context): \(text)")
    }

    /// Throws when a call returned a `rd_kafka_error_t` (taking ownership of it).
    static func check(_ error: OpaquePointer?) throws(KafkaError) {
        if let error { throw KafkaError(taking: error) }
    }

    public var description: String {
        var flags: [String] = []
        if isFatal { flags.append("fatal") }
        if isRetriable { flags.append("retriable") }
        if requiresAbort { flags.append("abort-required") }
        let suffix = flags.isEmpty ? "" : " [\(flags.joined(separator: ", "))]"
        return "\(code.name): \(message)\(suffix)"
    }

    /// Broker errors that librdkafka would retry by itself; used where it gives no classification.
    private static let retriableCodes: Set<Int32> = [
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__QUEUE_FULL,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
    ].reduce(into: []) { $0.insert($1.rawValue) }
}

extension KafkaError {
    /// A librdkafka error code (`rd_kafka_resp_err_t`), named as librdkafka names it.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The raw `rd_kafka_resp_err_t` value: negative for client errors, positive for broker errors.
        public var rawValue: Int32

        public init(rawValue: Int32) { self.rawValue = rawValue }
        init(_ err: rd_kafka_resp_err_t) { self.rawValue = err.rawValue }

        var err: rd_kafka_resp_err_t { rd_kafka_resp_err_t(rawValue: rawValue) }

        /// librdkafka's symbolic name, e.g. `NOT_COORDINATOR` or `_TRANSPORT`.
        public var name: String { String(cString: rd_kafka_err2name(err)) }
        public var description: String { name }

        public static let noError = Code(RD_KAFKA_RESP_ERR_NO_ERROR)
        public static let invalidConfiguration = Code(RD_KAFKA_RESP_ERR__INVALID_ARG)
        public static let transport = Code(RD_KAFKA_RESP_ERR__TRANSPORT)
        public static let timedOut = Code(RD_KAFKA_RESP_ERR__TIMED_OUT)
        public static let queueFull = Code(RD_KAFKA_RESP_ERR__QUEUE_FULL)
        public static let partitionEOF = Code(RD_KAFKA_RESP_ERR__PARTITION_EOF)
        public static let unknownPartition = Code(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
        public static let fenced = Code(RD_KAFKA_RESP_ERR__FENCED)
        public static let fatal = Code(RD_KAFKA_RESP_ERR__FATAL)
        public static let state = Code(RD_KAFKA_RESP_ERR__STATE)
        public static let allBrokersDown = Code(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        public static let requestTimedOut = Code(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT)
        public static let notCoordinator = Code(RD_KAFKA_RESP_ERR_NOT_COORDINATOR)
        public static let coordinatorNotAvailable = Code(RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE)
        public static let illegalGeneration = Code(RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION)
        public static let unknownMemberID = Code(RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID)
        public static let rebalanceInProgress = Code(RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS)
        public static let messageSizeTooLarge = Code(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
        public static let topicAuthorizationFailed = Code(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
        public static let unknownTopicOrPartition = Code(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        public static let unsupportedFeature = Code(RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE)
        public static let unsupportedVersion = Code(RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION)
    }
}

/// Runs `body` with a C error buffer and returns what librdkafka wrote into it.
func withErrorBuffer<T>(_ body: (UnsafeMutablePointer<CChar>, Int) -> T) -> (T, String) {
    var buffer = [CChar](repeating: 0, count: 512)
    let result = buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    return (result, text)
}
