import Foundation
import Kafka
import Testing

@Suite("Transactions over the embedded cluster", .timeLimit(.minutes(2)))
struct TransactionTests {
    private func records(_ topic: String, _ label: String, count: Int) -> [OutgoingRecord] {
        (0..<count).map {
            OutgoingRecord(topic: topic, key: Array("USMF/\(label)".utf8), value: Array("\(label)-\($0)".utf8))
        }
    }

    @Test("A committed transaction is visible under read_committed and an aborted one never is")
    func committedVisibleAbortedNot() async throws {
        let topic = try TestCluster.topic("txn-visibility", partitions: 2)
        let batches = (
            records(topic, "committed", count: 5), records(topic, "aborted", count: 5),
            records(topic, "after", count: 5)
        )
        let (committedView, uncommittedView) = try await Blocking.run {
            let producer = try TestCluster.producer(transactionalID: TestCluster.unique("txn"))
            try producer.initTransactions()
            try producer.beginTransaction()
            for record in batches.0 { try producer.send(record) }
            try producer.commitTransaction()
            try producer.beginTransaction()
            for record in batches.1 { try producer.send(record) }
            _ = try producer.flush(timeout: .seconds(10))
            try producer.abortTransaction()
            try producer.beginTransaction()
            for record in batches.2 { try producer.send(record) }
            try producer.commitTransaction()

            let committed = try TestCluster.consumer(
                group: TestCluster.unique("rc"), readCommitted: true, reportPartitionEnd: true)
            try committed.subscribe([topic])
            // Read to the end of both partitions: whatever a read_committed reader can see.
            let committedView = try committed.recordsToEnd(partitions: 2)
            let uncommitted = try TestCluster.consumer(group: TestCluster.unique("ru"), readCommitted: false)
            try uncommitted.subscribe([topic])
            let uncommittedView = try uncommitted.records(count: 15)
            try committed.close()
            try uncommitted.close()
            return (committedView, uncommittedView)
        }
        let seen = Set(committedView.map { String(decoding: $0.value!, as: UTF8.self) })
        #expect(seen.isSuperset(of: (0..<5).flatMap { ["committed-\($0)", "after-\($0)"] }))
        // The aborted records really were written: a read_uncommitted reader sees them.
        #expect(uncommittedView.filter { String(decoding: $0.value!, as: UTF8.self).hasPrefix("aborted-") }.count == 5)
        withKnownIssue(MockLimits.abortedRecordsVisible) {
            #expect(seen == Set((0..<5).flatMap { ["committed-\($0)", "after-\($0)"] }))
        }
    }

    @Test("Offsets sent in a committed transaction survive a consumer restart; those of an aborted one do not")
    func transactionalOffsetsSurviveRestart() async throws {
        let input = try TestCluster.topic("txn-input", partitions: 1)
        let output = try TestCluster.topic("txn-output", partitions: 1)
        let group = TestCluster.unique("txn-group")
        let outcome = try await Blocking.run {
            let source = try TestCluster.producer()
            _ = try source.sendAll(records(input, "C000001", count: 10))

            let producer = try TestCluster.producer(transactionalID: TestCluster.unique("ctp"))
            try producer.initTransactions()

            // First run: map 4 records and commit them with the input position.
            let first = try TestCluster.consumer(group: group)
            try first.subscribe([input])
            let firstBatch = try first.records(count: 4)
            try producer.beginTransaction()
            for record in firstBatch {
                try producer.send(OutgoingRecord(topic: output, key: record.key, value: record.value))
            }
            let partition = TopicPartition(input, 0)
            try producer.sendOffsetsToTransaction(
                [firstBatch.last!.nextOffset], groupMetadata: first.groupMetadata())
            try producer.commitTransaction()

            // Then 3 more, aborted: neither their output nor their offsets may count.
            let aborted = try first.records(count: 3)
            try producer.beginTransaction()
            for record in aborted {
                try producer.send(OutgoingRecord(topic: output, key: record.key, value: record.value))
            }
            try producer.sendOffsetsToTransaction([aborted.last!.nextOffset], groupMetadata: first.groupMetadata())
            // Flushed first, so the aborted records reach the broker and only the abort can hide them.
            _ = try producer.flush(timeout: .seconds(10))
            try producer.abortTransaction()
            try first.close()

            // Restart: a new member of the group resumes after the committed transaction.
            let second = try TestCluster.consumer(group: group)
            try second.subscribe([input])
            let resumed = try second.records(count: 6)
            let committed = try second.committed([partition])
            try second.close()

            let reader = try TestCluster.consumer(group: TestCluster.unique("reader"), reportPartitionEnd: true)
            try reader.subscribe([output])
            let outputs = try reader.recordsToEnd(partitions: 1)
            try reader.close()
            return (firstBatch.map(\.offset), aborted.map(\.offset), resumed.map(\.offset), committed, outputs.count)
        }
        let (firstOffsets, abortedOffsets, resumedOffsets, committed, outputCount) = outcome
        #expect(firstOffsets == [0, 1, 2, 3])
        #expect(abortedOffsets == [4, 5, 6])
        withKnownIssue(MockLimits.transactionalOffsetsDropped) {
            #expect(resumedOffsets == [4, 5, 6, 7, 8, 9])
            #expect(committed == [TopicPartitionOffset(input, 0, offset: 4)])
        }
        withKnownIssue(MockLimits.abortedRecordsVisible) {
            #expect(outputCount == 4)
        }
    }

    @Test("Offsets committed by a consumer survive a restart (the at-least-once path)")
    func consumerOffsetsSurviveRestart() async throws {
        let input = try TestCluster.topic("commit-input", partitions: 1)
        let group = TestCluster.unique("commit-group")
        let (resumed, committed) = try await Blocking.run {
            _ = try TestCluster.producer().sendAll(records(input, "C000002", count: 8))
            let first = try TestCluster.consumer(group: group)
            try first.subscribe([input])
            let batch = try first.records(count: 5)
            try first.store([batch.last!.nextOffset])
            try first.commit()
            try first.close()
            let second = try TestCluster.consumer(group: group)
            try second.subscribe([input])
            let resumed = try second.records(count: 3)
            let committed = try second.committed([TopicPartition(input, 0)])
            try second.close()
            return (resumed.map(\.offset), committed)
        }
        #expect(resumed == [5, 6, 7])
        #expect(committed == [TopicPartitionOffset(input, 0, offset: 5)])
    }

    @Test("A fenced producer's commit fails fatally")
    func fencedCommitIsFatal() async throws {
        let error = try await transactionError { cluster in
            // What a broker answers a zombie whose transactional id a newer instance took over.
            cluster.failNextRequests(.endTransaction, with: [KafkaError.Code(rawValue: 47)])  // INVALID_PRODUCER_EPOCH
        }
        #expect(error?.isFatal == true)
        #expect(error?.requiresAbort == false)
    }

    @Test("A transaction whose partition is refused must be aborted, and the producer goes on after the abort")
    func refusedPartitionRequiresAbort() async throws {
        let topic = "txn-abortable"
        let (error, recovered) = try await Blocking.run { () -> (KafkaError?, Bool) in
            let cluster = try TestCluster.isolated(topics: [topic: 1])
            let producer = try TestCluster.producer(on: cluster, transactionalID: "abortable")
            try producer.initTransactions()
            cluster.failNextRequests(.addPartitionsToTransaction, with: [.topicAuthorizationFailed])
            try producer.beginTransaction()
            try producer.send(OutgoingRecord(topic: topic, key: nil, value: [1]))
            var failure: KafkaError?
            do {
                try producer.commitTransaction(timeout: .seconds(10))
            } catch {
                failure = error as? KafkaError
            }
            guard failure?.requiresAbort == true else { return (failure, false) }
            try producer.abortTransaction()
            try producer.beginTransaction()
            try producer.send(OutgoingRecord(topic: topic, key: nil, value: [2]))
            try producer.commitTransaction()
            return (failure, true)
        }
        #expect(error?.requiresAbort == true)
        #expect(error?.isFatal == false)
        #expect(recovered)
    }

    /// Runs one transaction with `inject` applied before its commit, and returns the commit's error.
    private func transactionError(inject: @escaping @Sendable (EmbeddedCluster) -> Void) async throws -> KafkaError? {
        try await Blocking.run { () -> KafkaError? in
            let topic = "txn-error"
            let cluster = try TestCluster.isolated(topics: [topic: 1])
            let producer = try TestCluster.producer(on: cluster, transactionalID: "txn-error")
            try producer.initTransactions()
            try producer.beginTransaction()
            try producer.send(OutgoingRecord(topic: topic, key: nil, value: [1]))
            _ = try producer.flush(timeout: .seconds(10))
            inject(cluster)
            do {
                try producer.commitTransaction(timeout: .seconds(10))
                return nil
            } catch {
                return error as? KafkaError
            }
        }
    }
}

/// What librdkafka 2.0.2's mock cluster does not implement (rdkafka_mock_handlers.c): a real
/// cluster passes these expectations; the mock fails them, and `withKnownIssue` says so if that changes.
enum MockLimits {
    static let abortedRecordsVisible: Comment =
        "The 2.0.2 mock answers Fetch with no aborted transactions and LSO = high watermark, so read_committed still sees aborted and open transactions"
    static let transactionalOffsetsDropped: Comment =
        "The 2.0.2 mock acknowledges TxnOffsetCommit without storing the offsets"
}
