/// What it takes to bring a cluster to `Topics/`: topics to create, and topics that exist with
/// another partition count (never changed automatically: more partitions would move keys).
public struct TopicPlan: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        case create(TopicDeclaration)
        case inPlace(TopicDeclaration)
        case partitionsDiffer(TopicDeclaration, actual: Int)
    }

    public let steps: [Step]

    /// Compares `catalog` with the cluster's topics and their partition counts.
    public init(catalog: TopicCatalog, existing: [String: Int]) {
        steps = catalog.topics.map { topic in
            guard let actual = existing[topic.name] else { return .create(topic) }
            return actual == topic.partitions ? .inPlace(topic) : .partitionsDiffer(topic, actual: actual)
        }
    }

    /// The topics to create.
    public var missing: [TopicDeclaration] {
        steps.compactMap { if case .create(let topic) = $0 { topic } else { nil } }
    }

    /// One line per topic, for people.
    public var lines: [String] {
        steps.map { step in
            switch step {
            case .create(let topic):
                "create   \(topic.name)  partitions=\(topic.partitions) replicas=\(topic.replicationFactor) "
                    + topic.config.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            case .inPlace(let topic):
                "ok       \(topic.name)  partitions=\(topic.partitions)"
            case .partitionsDiffer(let topic, let actual):
                "differs  \(topic.name)  declared partitions=\(topic.partitions), cluster has \(actual) "
                    + "(left as is: changing the count moves keys to other partitions)"
            }
        }
    }
}
