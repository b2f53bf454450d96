import Foundation

/// Every topic of `Topics/`, loaded and checked once; the one source the broker, `p2c topics`,
/// the workers and the Helm chart use.
public struct TopicCatalog: Sendable, Equatable {
    /// Topics in declaration order (files sorted by name).
    public let topics: [TopicDeclaration]
    private let byName: [String: Int]

    /// Builds a catalog from declarations, rejecting an inconsistent set.
    public init(_ topics: [TopicDeclaration]) throws(TopicCatalogError) {
        var byName: [String: Int] = [:]
        for (index, topic) in topics.enumerated() {
            if byName[topic.name] != nil {
                throw TopicCatalogError("topic \"\(topic.name)\" is declared twice")
            }
            byName[topic.name] = index
        }
        self.topics = topics
        self.byName = byName
        try checkFlows()
    }

    /// The declaration named `name`.
    public subscript(name: String) -> TopicDeclaration? {
        byName[name].map { topics[$0] }
    }

    /// The topic of `role` on `side` for `stream`, if declared.
    public func topic(_ role: Role, side: Side, stream: SyncStream) -> TopicDeclaration? {
        self[role.topicName(side: side, stream: stream)]
    }

    /// The routes `flow` runs: every stream whose source side publishes changes.
    public func routes(for flow: Flow) -> [Route] {
        SyncStream.allCases.compactMap { stream in
            guard let input = topic(.changes, side: flow.source, stream: stream),
                let output = topic(.inbound, side: flow.target, stream: stream),
                let deadLetters = topic(.dlq, side: flow.source, stream: stream)
            else { return nil }
            return Route(flow: flow, stream: stream, input: input, output: output, deadLetters: deadLetters)
        }
    }

    /// Every stream flows exactly where `SyncStream.sources` says, with its inbound and DLQ topics.
    private func checkFlows() throws(TopicCatalogError) {
        for stream in SyncStream.allCases {
            for side in Side.allCases {
                let flows = stream.sources.contains(side)
                for role in Role.allCases where role != .state {
                    let expectedSide = role == .inbound || role == .inboundDLQ ? side.other : side
                    let name = role.topicName(side: expectedSide, stream: stream)
                    let declared = self[name] != nil
                    if flows && !declared {
                        throw TopicCatalogError(
                            "stream \(stream.rawValue) flows \(side.rawValue) → \(side.other.rawValue) but topic \"\(name)\" is not declared"
                        )
                    }
                    if !flows && declared {
                        throw TopicCatalogError(
                            "topic \"\(name)\": stream \(stream.rawValue) does not flow \(side.rawValue) → \(side.other.rawValue)"
                        )
                    }
                }
            }
        }
    }
}

/// Why `Topics/` was refused, naming the file and topic.
public struct TopicCatalogError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
