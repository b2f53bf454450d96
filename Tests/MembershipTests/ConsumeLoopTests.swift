import Foundation
import Kafka
import Membership
import Runtime
import Synchronization
import Testing

/// What the loop asked of a member, in order.
final class RecordingMember: ConsumeLoopMember, @unchecked Sendable {
    // @unchecked: `calls` is behind a mutex; the rest is set before the loop runs.
    let calls = Mutex<[String]>([])
    var failOnRecord: String?

    func note(_ call: String) { calls.withLock { $0.append(call) } }

    func beforePoll() throws -> Duration? { .milliseconds(20) }

    func take(_ record: KafkaRecord) throws {
        let value = String(decoding: record.value ?? [], as: UTF8.self)
        note("take \(value)")
        if value == failOnRecord { throw MemberFailure(record: value) }
    }

    func afterPoll(idle: Bool) throws {}

    func rebalanced(_ event: RebalanceEvent) throws {
        switch event {
        case .assigned: note("assigned")
        case .revoked: note("revoked")
        case .lost: note("lost")
        }
    }

    func finish() { note("finish") }
    func abandon() { note("abandon") }
    func closed() { note("closed") }

    var taken: [String] { calls.withLock { $0.filter { $0.hasPrefix("take ") } } }

    struct MemberFailure: Error { var record: String }
}

@Suite("The consume loop every fleet member shares (worker, apply, capture)", .serialized, .timeLimit(.minutes(1)))
struct ConsumeLoopTests {
    let cluster: EmbeddedCluster
    let topic = "loop-input"

    init() throws {
        cluster = try EmbeddedCluster(brokers: 1)
        try cluster.createTopic(topic, partitions: 2)
        let producer = try KafkaProducer(
            configuration: ProducerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), transactionalID: nil))
        for number in 0..<10 {
            _ = try producer.send(
                OutgoingRecord(topic: topic, key: Array("k\(number % 2)".utf8), value: Array("r\(number)".utf8)))
        }
        _ = try producer.flush(timeout: .seconds(10))
    }

    func loop(group: String, log: Log = Log(minimumLevel: .warning)) throws -> (ConsumeLoop, Liveness, Counter) {
        let configuration = ConsumerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), groupID: group,
            sessionTimeoutMilliseconds: 6_000)
        let consumer = try KafkaConsumer(configuration: configuration)
        try consumer.subscribe([topic])
        let liveness = Liveness()
        let rebalances = Counter()
        return (
            ConsumeLoop(
                consumer: consumer, liveness: liveness, rebalances: rebalances, shutdownTimeout: .seconds(3),
                sessionTimeout: .seconds(6), log: log),
            liveness, rebalances
        )
    }

    /// How `run` ended, once it did.
    final class Outcome: Sendable {
        let result = Mutex<Result<Void, any Error>?>(nil)
        var isOver: Bool { result.withLock { $0 != nil } }
    }

    /// Runs the loop on a thread of its own.
    func start(_ loop: ConsumeLoop, _ member: RecordingMember) -> Outcome {
        let outcome = Outcome()
        Thread {
            let result = Result { try loop.run(member) }
            outcome.result.withLock { $0 = result }
        }.start()
        return outcome
    }

    func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
    }

    @Test(
        "Records reach the member in partition order, the probes turn ready on joining, and a stop finishes, leaves the group and closes, in that order"
    )
    func stopFinishesInOrder() async throws {
        let (loop, liveness, rebalances) = try loop(group: "loop-stop")
        let member = RecordingMember()
        let outcome = start(loop, member)
        try await waitUntil { member.taken.count == 10 }
        #expect(liveness.isReady)
        #expect(rebalances.value >= 1)
        let taken = member.taken
        for key in ["r0", "r2", "r4", "r6", "r8"] as [String] {
            #expect(taken.contains("take \(key)"))
        }
        // One partition's records (same key) in the order they were written.
        let even = taken.filter { ["take r0", "take r2", "take r4", "take r6", "take r8"].contains($0) }
        #expect(even == ["take r0", "take r2", "take r4", "take r6", "take r8"])

        let stopped = ContinuousClock.now
        loop.stop()
        try await waitUntil { outcome.isOver }
        #expect(ContinuousClock.now - stopped < .seconds(10))
        let result = outcome.result.withLock { $0 }
        #expect(throws: Never.self) { try result?.get() }
        let calls = member.calls.withLock { $0 }.filter { !$0.hasPrefix("take ") }
        #expect(calls.first == "assigned")
        // Leaving the group revokes the partitions, after the last commit.
        #expect(Array(calls.suffix(3)) == ["finish", "revoked", "closed"])
        #expect(!calls.contains("abandon"))
    }

    @Test("A member that fails abandons its work, the group is left, and run throws the failure")
    func failureAbandons() async throws {
        let (loop, _, _) = try loop(group: "loop-fail", log: Log(minimumLevel: .error))
        let member = RecordingMember()
        member.failOnRecord = "r3"
        let outcome = start(loop, member)
        try await waitUntil { outcome.isOver }
        let result = outcome.result.withLock { $0 }
        #expect(throws: RecordingMember.MemberFailure.self) { try result?.get() }
        let calls = member.calls.withLock { $0 }
        #expect(calls.contains("take r3"))
        #expect(calls.contains("abandon"))
        #expect(!calls.contains("finish"))
        #expect(!calls.contains("closed"))
    }
}
