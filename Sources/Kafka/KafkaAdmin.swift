import CRdKafka

/// Cluster administration: which topics exist, and creating topics through the Admin API.
/// Every call blocks; run it off Swift's cooperative pool.
public final class KafkaAdmin: Sendable {
    private let handle: KafkaHandle

    public init(configuration: KafkaConfiguration) throws(KafkaError) {
        try configuration.validate()
        let conf = try makeConf(
            [("bootstrap.servers", configuration.bootstrapServers), ("client.id", configuration.clientID)]
                + configuration.properties.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        let context = ClientContext()
        context.install(on: conf)
        handle = try KafkaHandle(type: RD_KAFKA_PRODUCER, conf: conf, context: context)
    }

    /// The cluster's id (`mockCluster…` for librdkafka's mock), or nil when unreachable.
    public func clusterID(timeout: Duration = .seconds(10)) -> String? { handle.clusterID(timeout: timeout) }

    /// Every topic of the cluster with its partition count.
    public func topics(timeout: Duration = .seconds(10)) throws(KafkaError) -> [String: Int] {
        try handle.checkConnection(timeout: timeout)
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle.pointer, 1, nil, &metadata, timeout.milliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(err, "list topics") }
        defer { rd_kafka_metadata_destroy(metadata) }
        var result: [String: Int] = [:]
        for index in 0..<Int(metadata.pointee.topic_cnt) {
            let topic = metadata.pointee.topics[index]
            guard topic.err == RD_KAFKA_RESP_ERR_NO_ERROR else { continue }
            result[String(cString: topic.topic)] = Int(topic.partition_cnt)
        }
        return result
    }

    /// A topic to create.
    public struct NewTopic: Sendable {
        public var name: String
        public var partitions: Int
        public var replicationFactor: Int
        public var config: [String: String]

        public init(name: String, partitions: Int, replicationFactor: Int, config: [String: String]) {
            self.name = name
            self.partitions = partitions
            self.replicationFactor = replicationFactor
            self.config = config
        }
    }

    /// Creates `topics` with CreateTopics; returns each topic's error (nil when created).
    public func create(
        _ topics: [NewTopic], timeout: Duration = .seconds(30)
    ) throws(KafkaError) -> [String: KafkaError?] {
        guard !topics.isEmpty else { return [:] }
        var newTopics: [OpaquePointer?] = []
        defer { for topic in newTopics { rd_kafka_NewTopic_destroy(topic) } }
        for topic in topics {
            let (created, text) = withErrorBuffer {
                rd_kafka_NewTopic_new(topic.name, Int32(topic.partitions), Int32(topic.replicationFactor), $0, $1)
            }
            guard let created else { throw KafkaError(code: .invalidConfiguration, message: "\(topic.name): \(text)") }
            newTopics.append(created)
            for (name, value) in topic.config.sorted(by: { $0.key < $1.key }) {
                try KafkaError.check(rd_kafka_NewTopic_set_config(created, name, value), "\(topic.name) \(name)")
            }
        }
        let queue = rd_kafka_queue_new(handle.pointer)
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(handle.pointer, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        newTopics.withUnsafeMutableBufferPointer {
            rd_kafka_CreateTopics(handle.pointer, $0.baseAddress, $0.count, options, queue)
        }
        guard let event = rd_kafka_queue_poll(queue, timeout.milliseconds) else {
            throw KafkaError(code: .timedOut, message: "CreateTopics: no answer within \(timeout)", isRetriable: true)
        }
        defer { rd_kafka_event_destroy(event) }
        let eventError = rd_kafka_event_error(event)
        if eventError != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(eventError, "CreateTopics: " + String(cString: rd_kafka_event_error_string(event)))
        }
        guard let result = rd_kafka_event_CreateTopics_result(event) else {
            throw KafkaError(code: .state, message: "CreateTopics: unexpected answer")
        }
        var count = 0
        guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return [:] }
        var outcome: [String: KafkaError?] = [:]
        for index in 0..<count {
            let topic = results[index]
            let name = String(cString: rd_kafka_topic_result_name(topic))
            let err = rd_kafka_topic_result_error(topic)
            outcome[name] =
                err == RD_KAFKA_RESP_ERR_NO_ERROR
                ? nil : KafkaError(err, rd_kafka_topic_result_error_string(topic).map { String(cString: $0) })
        }
        return outcome
    }
}

// MARK: - Consumer groups

extension KafkaAdmin {
    /// A consumer group as the coordinator describes it.
    public struct GroupDescription: Sendable, Equatable {
        /// `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Dead` or `Unknown`.
        public var state: String
        public var members: [Member]

        /// One live member: what an operator needs to find the process.
        public struct Member: Sendable, Equatable, CustomStringConvertible {
            public var clientID: String
            public var host: String
            /// The coordinator's id for the member; a static member's starts with its `group.instance.id`.
            public var memberID: String

            public var description: String { "\(clientID) on \(host) (member \(memberID))" }
        }

        /// No member holds the group: its offsets can be moved.
        public var isInactive: Bool { members.isEmpty && (state == "Empty" || state == "Dead") }
    }

    /// Describes `group` (ListGroups and DescribeGroups, through `rd_kafka_list_groups`) without
    /// joining it, so a live group is not rebalanced. Throws `.unsupportedFeature` when the cluster
    /// does not offer those requests (librdkafka 2.0.2's mock cluster does not). Blocks up to `timeout`.
    ///
    /// Not `rd_kafka_DescribeConsumerGroups`: in 2.0.2 a handle that got its unsupported-feature
    /// answer could no longer be destroyed (`rd_kafka_destroy` waited forever), and a test process
    /// that kept the handle instead failed an assertion in librdkafka's queue code moments later.
    public func describeGroup(_ group: String, timeout: Duration = .seconds(10)) throws(KafkaError) -> GroupDescription
    {
        var list: UnsafePointer<rd_kafka_group_list>?
        let err = rd_kafka_list_groups(handle.pointer, group, &list, timeout.milliseconds)
        try KafkaError.check(err, "describe group \(group)")
        guard let list else { throw KafkaError(code: .state, message: "describe group \(group): no answer") }
        defer { rd_kafka_group_list_destroy(list) }
        func text(_ pointer: UnsafeMutablePointer<CChar>?) -> String { pointer.map { String(cString: $0) } ?? "" }
        for index in 0..<Int(list.pointee.group_cnt) {
            let info = list.pointee.groups[index]
            guard text(info.group) == group else { continue }
            try KafkaError.check(info.err, "describe group \(group)")
            let members = (0..<Int(info.member_cnt)).map { index in
                let member = info.members[index]
                return GroupDescription.Member(
                    clientID: text(member.client_id), host: text(member.client_host), memberID: text(member.member_id))
            }
            return GroupDescription(state: text(info.state), members: members)
        }
        // A group the coordinator does not know has no members.
        return GroupDescription(state: "Dead", members: [])
    }
}
