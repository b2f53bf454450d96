import Kafka
import Topology

extension EmbeddedCluster {
    /// Creates every topic of `catalog` with its declared partitions.
    public func createTopics(_ catalog: TopicCatalog) throws {
        for topic in catalog.topics {
            try createTopic(topic.name, partitions: topic.partitions, replicationFactor: topic.replicationFactor)
        }
    }
}
