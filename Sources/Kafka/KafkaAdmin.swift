import CRdKafka

/// Cluster administration: which topics exist, and creating topics through the Admin API.
/// Every call blocks; run it off Swift's cooperative pool.
public final class KafkaAdmin: Sendable {
    let handle: KafkaHandle

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
            public var memberID: String
            /// Set for a static member (`group.instance.id`).
            public var instanceID: String?

            public var description: String {
                "\(clientID) on \(host)" + (instanceID.map { " (instance \($0))" } ?? "") + " [\(memberID)]"
            }
        }

        /// No member holds the group: its offsets can be moved.
        public var isInactive: Bool { members.isEmpty && (state == "Empty" || state == "Dead") }
    }

    /// Describes `group` (DescribeGroups through `rd_kafka_DescribeConsumerGroups`) without joining
    /// it, so a live group is not rebalanced. Throws `.unsupportedFeature` when the cluster does
    /// not offer DescribeGroups (librdkafka 2.0.2's mock cluster does not). Blocks up to `timeout`.
    ///
    /// librdkafka 2.0.2 then never finishes destroying the handle (`rd_kafka_destroy` waits
    /// forever; seen with the mock's unsupported-feature answer, the only one this project can
    /// observe), so an admin that described a group is left to the end of the process: use a
    /// short-lived one, as `p2c replay` does.
    public func describeGroup(_ group: String, timeout: Duration = .seconds(10)) throws(KafkaError) -> GroupDescription
    {
        handle.mustNotDestroy.store(true, ordering: .relaxed)
        let queue = rd_kafka_queue_new(handle.pointer)
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(handle.pointer, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        let (set, text) = withErrorBuffer {
            rd_kafka_AdminOptions_set_request_timeout(options, timeout.milliseconds, $0, $1)
        }
        guard set == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(set, "DescribeConsumerGroups: \(text)") }
        group.withCString { name in
            var names: [UnsafePointer<CChar>?] = [name]
            names.withUnsafeMutableBufferPointer {
                rd_kafka_DescribeConsumerGroups(handle.pointer, $0.baseAddress, 1, options, queue)
            }
        }
        // The request timeout bounds the answer; the margin covers the queue hop.
        guard let event = rd_kafka_queue_poll(queue, (timeout + .seconds(1)).milliseconds) else {
            throw KafkaError(
                code: .timedOut, message: "DescribeConsumerGroups: no answer within \(timeout)", isRetriable: true)
        }
        defer { rd_kafka_event_destroy(event) }
        let eventError = rd_kafka_event_error(event)
        if eventError != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(
                eventError, "DescribeConsumerGroups: " + String(cString: rd_kafka_event_error_string(event)))
        }
        guard let result = rd_kafka_event_DescribeConsumerGroups_result(event) else {
            throw KafkaError(code: .state, message: "DescribeConsumerGroups: unexpected answer")
        }
        var count = 0
        guard let groups = rd_kafka_DescribeConsumerGroups_result_groups(result, &count), count == 1,
            let description = groups[0]
        else {
            throw KafkaError(code: .state, message: "DescribeConsumerGroups: no description of \(group)")
        }
        if let error = rd_kafka_ConsumerGroupDescription_error(description) {
            let code = rd_kafka_error_code(error)
            throw KafkaError(code, "DescribeConsumerGroups \(group): " + String(cString: rd_kafka_error_string(error)))
        }
        var members: [GroupDescription.Member] = []
        for index in 0..<rd_kafka_ConsumerGroupDescription_member_count(description) {
            guard let member = rd_kafka_ConsumerGroupDescription_member(description, index) else { continue }
            func text(_ pointer: UnsafePointer<CChar>?) -> String? { pointer.map { String(cString: $0) } }
            members.append(
                GroupDescription.Member(
                    clientID: text(rd_kafka_MemberDescription_client_id(member)) ?? "",
                    host: text(rd_kafka_MemberDescription_host(member)) ?? "",
                    memberID: text(rd_kafka_MemberDescription_consumer_id(member)) ?? "",
                    instanceID: text(rd_kafka_MemberDescription_group_instance_id(member)).flatMap {
                        $0.isEmpty ? nil : $0
                    }))
        }
        let state = String(
            cString: rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupDescription_state(description)))
        return GroupDescription(state: state, members: members)
    }
}
