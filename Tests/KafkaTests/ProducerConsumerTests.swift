import Foundation
import Kafka
import Synchronization
import Testing

@Suite("Producing and consuming over the embedded cluster", .timeLimit(.minutes(2)))
struct ProducerConsumerTests {
    @Test("Java's murmur2 reference vector")
    func murmur2Vector() {
        // From Kafka's UtilsTest: murmur2("21") == -973932308.
        #expect(Int32(bitPattern: javaMurmur2(Array("21".utf8))) == -973_932_308)
    }

    @Test("Each key's records arrive in order, on the partition Java would pick, with key, headers and timestamp")
    func keyOrderKept() async throws {
        let topic = try TestCluster.topic("orders", partitions: 6)
        let keys = (0..<300).map { "USMF/C\(String(format: "%06d", $0))" }
        var outgoing: [OutgoingRecord] = []
        for sequence in 0..<10 {
            for key in keys {
                outgoing.append(
                    OutgoingRecord(
                        topic: topic, key: Array(key.utf8), value: Array("{\"seq\":\(sequence)}".utf8),
                        headers: [KafkaHeader("ce_id", "\(key)#\(sequence)"), KafkaHeader("empty", nil)],
                        timestamp: 1_700_000_000_000 + Int64(sequence)))
            }
        }
        let sent = outgoing
        let (reports, received) = try await Blocking.run {
            let producer = try TestCluster.producer()
            let reports = try producer.sendAll(sent)
            let consumer = try TestCluster.consumer(group: TestCluster.unique("order-group"))
            try consumer.subscribe([topic])
            let received = try consumer.records(count: sent.count)
            try consumer.close()
            return (reports, received)
        }

        #expect(reports.count == outgoing.count)
        #expect(reports.allSatisfy { $0.error == nil && $0.offset >= 0 })
        #expect(Set(reports.map(\.id)).count == outgoing.count)
        #expect(received.count == outgoing.count)

        var byKey: [String: [KafkaRecord]] = [:]
        for record in received { byKey[String(decoding: record.key ?? [], as: UTF8.self), default: []].append(record) }
        #expect(byKey.count == keys.count)
        for (key, records) in byKey {
            let sequences = records.map { String(decoding: $0.value ?? [], as: UTF8.self) }
            #expect(sequences == (0..<10).map { "{\"seq\":\($0)}" }, "key \(key) out of order")
            #expect(Set(records.map(\.partition)) == [javaPartition(key, partitions: 6)], "key \(key) partition")
            #expect(records.map(\.timestamp) == (0..<10).map { 1_700_000_000_000 + Int64($0) })
            for (sequence, record) in records.enumerated() {
                #expect(record.headers == [KafkaHeader("ce_id", "\(key)#\(sequence)"), KafkaHeader("empty", nil)])
                #expect(record.topic == topic)
            }
        }
    }

    @Test("A full local queue makes send wait for deliveries instead of failing")
    func queueFullBackpressure() async throws {
        let topic = try TestCluster.topic("backpressure", partitions: 3)
        let reports = try await Blocking.run {
            let producer = try TestCluster.producer { $0.maxQueuedMessages = 20 }
            var reports: [DeliveryReport] = []
            // No poll between sends: only send's own waiting makes room.
            for index in 0..<3000 {
                try producer.send(
                    OutgoingRecord(
                        topic: topic, key: Array("k\(index % 7)".utf8), value: [UInt8](repeating: 1, count: 100)))
            }
            reports += try producer.flush(timeout: .seconds(30))
            return reports
        }
        #expect(reports.count == 3000)
        #expect(reports.allSatisfy { $0.error == nil })
    }

    @Test(
        "A backlog larger than the consumer's prefetch is read whole and in order, its fetchers woken as the queue runs low; an idle consumer sends no wake-up"
    )
    func backlogWakesFetchers() async throws {
        let topic = try TestCluster.topic("backlog", partitions: 1)
        // 20 000 records of 100 bytes, four times what the consumer may hold in its queue.
        let outgoing = (0..<20_000).map { index in
            OutgoingRecord(
                topic: topic, key: nil,
                value: Array(String(format: "%08d", index).utf8) + [UInt8](repeating: 7, count: 92))
        }
        let (received, wakesWhenDone, wakesLater) = try await Blocking.run {
            _ = try TestCluster.producer().sendAll(outgoing)
            let consumer = try TestCluster.consumer(group: TestCluster.unique("backlog")) {
                $0.maxPrefetchKilobytes = 512
            }
            try consumer.subscribe([topic])
            let received = try consumer.records(count: outgoing.count, limit: .seconds(90))
            // The drained queue: the last wake-up, if the backlog's end did not already send it.
            _ = try consumer.poll(timeout: .milliseconds(100))
            let wakesWhenDone = consumer.fetcherWakes
            _ = try consumer.records(for: .milliseconds(500))
            let wakesLater = consumer.fetcherWakes
            try consumer.close()
            return (received, wakesWhenDone, wakesLater)
        }
        #expect(received.count == outgoing.count)
        #expect(received.map(\.value) == outgoing.map(\.value))
        #expect(wakesWhenDone > 0, "the backlog never woke the fetchers")
        #expect(wakesLater == wakesWhenDone, "an idle consumer sent wake-ups")
    }

    @Test(
        "A producer that prepared its topics knows their partitions before its first send; one that did not learns them only later"
    )
    func preparedTopicsAreKnown() async throws {
        let topic = try TestCluster.topic("prepared", partitions: 3)
        let (refused, acceptedUnprepared) = try await Blocking.run {
            // Partition 7 does not exist: refused at once only when the partitions are known.
            let record = OutgoingRecord(topic: topic, partition: 7, key: nil, value: [1])
            let prepared = try TestCluster.producer()
            try prepared.prepare(topics: [topic], timeout: .seconds(10))
            var refused: KafkaError?
            do { try prepared.send(record) } catch { refused = error as? KafkaError }
            let unprepared = try TestCluster.producer()
            let accepted = (try? unprepared.send(record)) != nil
            _ = try? unprepared.flush(timeout: .seconds(5))
            return (refused, accepted)
        }
        #expect(refused?.code == .unknownPartition, "\(String(describing: refused))")
        #expect(acceptedUnprepared, "a new producer queues records for a topic it knows nothing of yet")
    }

    @Test("A record larger than the broker accepts fails with its error code")
    func oversizedRecordFails() async throws {
        let topic = try TestCluster.topic("oversized", partitions: 1)
        let error = try await Blocking.run { () -> KafkaError? in
            let producer = try TestCluster.producer()
            do {
                try producer.send(
                    OutgoingRecord(topic: topic, key: nil, value: [UInt8](repeating: 0, count: 2_000_000)))
                return nil
            } catch {
                return error as? KafkaError
            }
        }
        #expect(error?.code == .messageSizeTooLarge)
    }

    @Test("Two consumers of a group split the partitions, and one takes over all when the other leaves")
    func groupSplitAndTakeOver() async throws {
        let topic = try TestCluster.topic("split", partitions: 6)
        let group = TestCluster.unique("split-group")
        let outcome = try await Blocking.run {
            let first = try TestCluster.consumer(group: group)
            let second = try TestCluster.consumer(group: group)
            let events = EventLog()
            first.onRebalance { events.append($0) }
            try first.subscribe([topic])
            try second.subscribe([topic])

            var split: ([TopicPartition], [TopicPartition]) = ([], [])
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                _ = try first.poll(timeout: .milliseconds(50))
                _ = try second.poll(timeout: .milliseconds(50))
                split = (try first.assignment(), try second.assignment())
                if !split.0.isEmpty, !split.1.isEmpty, split.0.count + split.1.count == 6 { break }
            }

            try second.close()
            var takeover: [TopicPartition] = []
            let takeoverDeadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < takeoverDeadline {
                _ = try first.poll(timeout: .milliseconds(100))
                takeover = try first.assignment()
                if takeover.count == 6 { break }
            }

            let producer = try TestCluster.producer()
            _ = try producer.sendAll(
                (0..<60).map { OutgoingRecord(topic: topic, key: Array("key-\($0)".utf8), value: [1]) })
            let afterwards = try first.records(count: 60)
            try first.close()
            return (split, takeover, afterwards.count, events.all)
        }
        let (split, takeover, consumedAfterwards, events) = outcome
        #expect(!split.0.isEmpty && !split.1.isEmpty)
        #expect(Set(split.0).isDisjoint(with: Set(split.1)))
        #expect(Set(split.0 + split.1).count == 6)
        #expect(Set(takeover) == Set((0..<6).map { TopicPartition(topic, $0) }))
        #expect(consumedAfterwards == 60)
        #expect(events.contains { if case .assigned = $0 { true } else { false } })
        #expect(events.last == .revoked(takeover) || events.contains { if case .revoked = $0 { true } else { false } })
    }

    @Test("A bad bootstrap address fails with a clear error")
    func badBootstrap() async throws {
        #expect {
            _ = try KafkaProducer(
                configuration: ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: "localhost")))
        } throws: { error in
            "\(error)".contains("bootstrap.servers: \"localhost\" is not host:port")
        }
        let error = try await Blocking.run { () -> KafkaError? in
            let producer = try KafkaProducer(
                configuration: ProducerConfiguration(
                    kafka: KafkaConfiguration(bootstrapServers: "no-such-host.invalid:9092")))
            do {
                try producer.checkConnection(timeout: .seconds(3))
                return nil
            } catch {
                return error as? KafkaError
            }
        }
        #expect(error?.message.contains("cannot reach the cluster") == true)
        #expect(error?.message.contains("no-such-host.invalid") == true)
    }

    @Test(
        "A bad property fails with the property named",
        arguments: [
            (["no.such.property": "1"], "kafka.no.such.property"),
            (["socket.timeout.ms": "soon"], "kafka.socket.timeout.ms"),
            (["security.protocol": "carrier-pigeon"], "kafka.security.protocol"),
        ])
    func badProperty(properties: [String: String], named: String) {
        var configuration = ProducerConfiguration(kafka: TestCluster.kafka)
        configuration.kafka.properties = properties
        #expect {
            _ = try KafkaProducer(configuration: configuration)
        } throws: { error in
            (error as? KafkaError)?.code == .invalidConfiguration && "\(error)".contains(named)
        }
        #expect(throws: KafkaError.self) {
            _ = try KafkaConsumer(configuration: ConsumerConfiguration(kafka: configuration.kafka))
        }
    }
}

@Suite("One configuration for both clients")
struct SharedPropertiesTests {
    @Test("A producer-only property is left out of the consumer, a consumer-only one out of the producer")
    func rolesKeepTheirOwn() throws {
        // Values that would fail if they were applied: the other client never sees them.
        let kafka = KafkaConfiguration(
            bootstrapServers: "127.0.0.1:1", properties: ["linger.ms": "soon", "fetch.wait.max.ms": "soon"])
        #expect {
            _ = try KafkaProducer(configuration: ProducerConfiguration(kafka: kafka))
        } throws: { "\($0)".contains("linger.ms") }
        #expect {
            _ = try KafkaConsumer(configuration: ConsumerConfiguration(kafka: kafka))
        } throws: { "\($0)".contains("fetch.wait.max.ms") }
    }
}

/// Rebalance events gathered from the consumer's callback.
final class EventLog: Sendable {
    private let events = Mutex<[RebalanceEvent]>([])
    func append(_ event: RebalanceEvent) { events.withLock { $0.append(event) } }
    var all: [RebalanceEvent] { events.withLock { $0 } }
}
