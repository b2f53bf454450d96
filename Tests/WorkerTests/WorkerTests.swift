import Foundation
import Kafka
import ProspectToCash
import Synchronization
import TestSupport
import Testing
import Topology

@testable import Worker

/// An embedded cluster of `brokers` with every topic of `Topics/`, and that catalog.
private func clusterWithTopics(brokers: Int) throws -> (EmbeddedCluster, TopicCatalog) {
    let broker = TestBroker(brokers: brokers)
    return (broker.cluster, broker.catalog)
}

/// A worker on its own thread, as `p2c worker` runs it.
private final class RunningWorker: Sendable {
    let worker: Worker
    private let finished = Mutex<(done: Bool, error: String?)>((false, nil))

    init(_ worker: Worker) {
        self.worker = worker
        Thread { [self] in
            var failure: String?
            do { try worker.run() } catch { failure = "\(error)" }
            finished.withLock { $0 = (true, failure) }
        }.start()
    }

    /// Stops the worker and waits for `run()` to return; its error, if any.
    func stop() -> String? {
        worker.stop()
        while !finished.withLock({ $0.done }) { Thread.sleep(forTimeInterval: 0.02) }
        return finished.withLock { $0.error }
    }
}

@Suite("A worker between the CRM and the ERP", .serialized, .timeLimit(.minutes(2)))
struct WorkerTests {
    private func configuration(
        _ cluster: EmbeddedCluster, delivery: WorkerConfiguration.Delivery
    ) -> WorkerConfiguration {
        var configuration = WorkerConfiguration()
        configuration.delivery = delivery
        configuration.flow = .crmToERP
        configuration.streams = [.orders]
        configuration.kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: "worker-test")
        configuration.transactionalID = "worker-test-1"
        configuration.sessionTimeout = .seconds(6)
        // Not set: the worker recognises the embedded broker and commits offsets outside the transaction too.
        configuration.mapping.companyDefaults["USMF"] = .init(site: "1", warehouse: "13")
        configuration.mapping.numberSequences = .init(crm: #"C\d+"#, erp: #"F\d+"#)
        return configuration
    }

    private func event(
        _ type: String, number: String, data: String, origin: String? = nil, company: String? = "USMF"
    )
        -> OutgoingRecord
    {
        var headers = [
            KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", "\(type)-\(number)-\(data.count)"),
            KafkaHeader("ce_source", "crm"), KafkaHeader("ce_type", type), KafkaHeader("ce_subject", "USMF/\(number)"),
            KafkaHeader("content-type", "application/json"),
        ]
        if let company { headers.append(KafkaHeader("ce_company", company)) }
        if let origin { headers.append(KafkaHeader("ce_origin", origin)) }
        return OutgoingRecord(
            topic: "crm.orders.changes", key: Array("USMF/\(number)".utf8), value: Array(data.utf8), headers: headers)
    }

    @Test(
        "Orders in, ERP records out in order with their keys; poison to the DLQ with its reason; echoes dropped; a restart redoes nothing",
        arguments: [WorkerConfiguration.Delivery.exactlyOnce, .atLeastOnce])
    func ordersFlow(delivery: WorkerConfiguration.Delivery) async throws {
        let outcome = try await Blocking.run { [self] in
            let (cluster, catalog) = try clusterWithTopics(brokers: 1)
            var inputs: [OutgoingRecord] = []
            for order in 1...50 {
                let number = "C\(String(format: "%06d", order))"
                inputs.append(
                    event(
                        "salesorder.upserted", number: number,
                        data: #"{"msdyn_salesordernumber":"\#(number)","name":"Order \#(order)"}"#))
                for line in 1...3 {
                    inputs.append(
                        event(
                            "salesorderdetail.upserted", number: number,
                            data:
                                #"{"salesorderid":{"msdyn_salesordernumber":"\#(number)"},"productid":{"msdyn_productnumber":"D000\#(line)"},"sequencenumber":\#(line),"quantity":3,"manualdiscountamount":10.00}"#
                        ))
                }
            }
            let poison = [
                event("salesorder.upserted", number: "C900001", data: "{not json"),
                event(
                    "salesorder.upserted", number: "C900002", data: #"{"msdyn_salesordernumber":"C900002"}"#,
                    company: nil),
                event("salesorder.upserted", number: "SO-77", data: #"{"msdyn_salesordernumber":"SO-77"}"#),
            ]
            let echoes = [
                event(
                    "salesorder.upserted", number: "C900003", data: #"{"msdyn_salesordernumber":"C900003"}"#,
                    origin: "p2c"),
                event(
                    "salesorder.upserted", number: "C900004", data: #"{"msdyn_salesordernumber":"C900004"}"#,
                    origin: "p2c"),
            ]
            let source = try KafkaProducer(
                configuration: ProducerConfiguration(
                    kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)))
            for record in inputs + poison + echoes { try source.send(record) }
            _ = try source.flush(timeout: .seconds(10))

            let first = RunningWorker(
                try Worker(configuration: configuration(cluster, delivery: delivery), catalog: catalog))
            let reader = try subscribedReader(
                cluster, group: "reader", topics: ["erp.orders.inbound", "crm.orders.changes.dlq"])
            var outputs: [KafkaRecord] = []
            var deadLetters: [KafkaRecord] = []
            let deadline = ContinuousClock.now + .seconds(60)
            while (outputs.count < 200 || deadLetters.count < 3) && ContinuousClock.now < deadline {
                if case .record(let record)? = try reader.poll(timeout: .milliseconds(100)) {
                    if record.topic == "erp.orders.inbound" {
                        outputs.append(record)
                    } else {
                        deadLetters.append(record)
                    }
                }
            }
            let firstError = first.stop()
            let echoesDropped = first.worker.metrics.streams[.orders]!.echoes.value

            // A second worker of the same group resumes after the committed offsets: nothing is redone.
            let second = RunningWorker(
                try Worker(configuration: configuration(cluster, delivery: delivery), catalog: catalog))
            let extra = try reader.records(for: .seconds(5))
            let secondError = second.stop()
            try reader.close()
            return (outputs, deadLetters, extra.count, echoesDropped, firstError, secondError, poison)
        }
        let (outputs, deadLetters, redone, echoesDropped, firstError, secondError, poison) = outcome
        #expect(firstError == nil)
        #expect(secondError == nil)
        #expect(outputs.count == 200)
        #expect(redone == 0)
        #expect(echoesDropped == 2)

        var byKey: [String: [String]] = [:]
        for record in outputs {
            let key = String(decoding: record.key ?? [], as: UTF8.self)
            byKey[key, default: []].append(record.header("ce_type")?.text ?? "")
            #expect(record.header("ce_subject")?.text == key)
        }
        #expect(byKey.count == 50)
        for (key, types) in byKey {
            #expect(
                types == ["SalesOrderHeader.upserted"] + Array(repeating: "SalesOrderLine.upserted", count: 3), "\(key)"
            )
        }
        #expect(Set(outputs.compactMap { $0.header("ce_id")?.text }).count == 200)
        let line = try #require(outputs.first { $0.header("ce_type")?.text == "SalesOrderLine.upserted" })
        let data = String(decoding: line.value ?? [], as: UTF8.self)
        #expect(data.contains(#""LINEDISCOUNTAMOUNT":3.33"#) && data.contains(#""FIXEDPRICECHARGES":-0.01"#))

        #expect(deadLetters.count == 3)
        #expect(
            Set(deadLetters.compactMap { $0.header("p2c_error_code")?.text }) == [
                "malformed_json", "missing_company", "number_sequence_clash",
            ])
        for letter in deadLetters {
            #expect(letter.header("p2c_source_topic")?.text == "crm.orders.changes")
            #expect(letter.header("p2c_source_partition") != nil && letter.header("p2c_source_offset") != nil)
            let message = letter.header("p2c_error_message")?.text ?? ""
            #expect(message.count > 10)
            let original = try #require(poison.first { $0.key == letter.key })
            #expect(letter.value == original.value)
            #expect(Array(letter.headers.prefix(original.headers.count)) == original.headers)
        }
    }
}

extension KafkaConsumer {
    func records(for duration: Duration) throws -> [KafkaRecord] {
        var result: [KafkaRecord] = []
        let deadline = ContinuousClock.now + duration
        while ContinuousClock.now < deadline {
            if case .record(let record) = try poll(timeout: .milliseconds(100)) { result.append(record) }
        }
        return result
    }
}

@Suite("Worker health")
struct WorkerHealthTests {
    @Test(
        "/healthz follows the loop: healthy right after a turn, unhealthy once it has been quiet longer than the watchdog"
    )
    func watchdog() async throws {
        let metrics = WorkerMetrics(flow: .crmToERP)
        metrics.liveness.tick()
        #expect(metrics.liveness.isHealthy(watchdog: .seconds(60)))
        try await Task.sleep(for: .milliseconds(30))
        #expect(!metrics.liveness.isHealthy(watchdog: .milliseconds(10)))
        metrics.liveness.tick()
        #expect(metrics.liveness.isHealthy(watchdog: .milliseconds(10)))
        #expect(!metrics.isReady)
    }
}

/// A consumer of `topics` in its own group, as the tests read a worker's outputs.
private func subscribedReader(_ cluster: EmbeddedCluster, group: String, topics: [String]) throws -> KafkaConsumer {
    var configuration = ConsumerConfiguration(
        kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers), groupID: group)
    configuration.sessionTimeoutMilliseconds = 6_000
    let reader = try KafkaConsumer(configuration: configuration)
    try reader.subscribe(topics)
    return reader
}

/// A one-broker cluster holding ERP order headers 1...`count` on erp.orders.changes, with event
/// ids `<ids>-<index>`.
private func clusterWithERPOrders(_ count: Int, ids: String) throws -> (EmbeddedCluster, TopicCatalog) {
    let (cluster, catalog) = try clusterWithTopics(brokers: 1)
    let source = try KafkaProducer(
        configuration: ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)))
    for index in 1...count { try source.send(erpOrder(index, id: "\(ids)-\(index)")) }
    _ = try source.flush(timeout: .seconds(60))
    return (cluster, catalog)
}

/// ERP order header `F<index>` of company USMF, event id `id`, as the ERP publishes it.
private func erpOrder(_ index: Int, id: String) -> OutgoingRecord {
    let number = "F\(String(format: "%06d", index))"
    return OutgoingRecord(
        topic: "erp.orders.changes", key: Array("USMF/\(number)".utf8),
        value: Array(#"{"SALESORDERNUMBER":"\#(number)"}"#.utf8),
        headers: [
            KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", id), KafkaHeader("ce_source", "erp"),
            KafkaHeader("ce_type", "SalesOrderHeader.upserted"), KafkaHeader("ce_company", "USMF"),
        ])
}

@Suite("A worker through broker trouble", .serialized, .timeLimit(.minutes(3)))
struct WorkerFaultTests {
    @Test("Injected NOT_COORDINATOR, REQUEST_TIMED_OUT and transport errors and a broker outage lose nothing")
    func survivesFaults() async throws {
        let outcome = try await Blocking.run {
            let (cluster, catalog) = try clusterWithTopics(brokers: 3)
            var configuration = WorkerConfiguration()
            configuration.flow = .erpToCRM
            configuration.streams = [.orders]
            configuration.kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: "fault-test")
            configuration.transactionalID = "fault-test-1"
            configuration.sessionTimeout = .seconds(6)
            let worker = RunningWorker(try Worker(configuration: configuration, catalog: catalog))
            let source = try KafkaProducer(
                configuration: ProducerConfiguration(
                    kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)))
            func produce(_ range: ClosedRange<Int>, waitForDelivery: Bool = true) throws {
                for index in range { try source.send(erpOrder(index, id: "f-\(index)")) }
                if waitForDelivery { _ = try source.flush(timeout: .seconds(60)) }
            }
            try produce(1...200)
            Thread.sleep(forTimeInterval: 4)
            // Coordinator and request errors on the transactional path, then on produce and fetch.
            cluster.failNextRequests(.endTransaction, with: [.notCoordinator, .requestTimedOut])
            cluster.failNextRequests(.transactionOffsetCommit, with: [.notCoordinator, .coordinatorNotAvailable])
            cluster.failNextRequests(.addPartitionsToTransaction, with: [.requestTimedOut])
            cluster.failNextRequests(.produce, with: [.requestTimedOut, .transport])
            cluster.failNextRequests(.fetch, with: [.transport])
            try produce(201...400)
            Thread.sleep(forTimeInterval: 2)
            // A broker goes away for two seconds while records keep coming.
            try cluster.setBrokerDown(2)
            try produce(401...500, waitForDelivery: false)
            Thread.sleep(forTimeInterval: 2)
            try cluster.setBrokerUp(2)
            try produce(501...600)

            let reader = try subscribedReader(cluster, group: "fault-reader", topics: ["crm.orders.inbound"])
            var records: [KafkaRecord] = []
            var ids: Set<String> = []
            let deadline = ContinuousClock.now + .seconds(90)
            while ids.count < 600 && ContinuousClock.now < deadline {
                if case .record(let record)? = try reader.poll(timeout: .milliseconds(100)) {
                    records.append(record)
                    ids.insert(record.header("ce_causationid")?.text ?? "")
                }
            }
            try reader.close()
            let error = worker.stop()
            return (records, ids, error, worker.worker.metrics.aborts.value)
        }
        let (records, ids, error, aborts) = outcome
        #expect(error == nil)
        let missing = Set((1...600).map { "f-\($0)" }).subtracting(ids)
        #expect(missing.isEmpty, "\(missing.count) inputs have no output, e.g. \(missing.sorted().prefix(5))")
        print("faults: \(records.count) records for 600 inputs, \(aborts) aborted batches")
        // Every input has exactly one distinct output value. Repeats come from the mock: it shows
        // aborted writes, and the injected produce errors make the test's own source producer write
        // some inputs twice (its idempotence is not enforced by the mock), at new offsets.
        var byInput: [String: Set<[UInt8]>] = [:]
        for record in records {
            var value = record.value ?? []
            // The output id and time differ between repeats; the mapped record itself must not.
            if let data = try? JSONParser.parse(value).objectValue { value = data.jsonBytes }
            byInput[record.header("ce_causationid")?.text ?? "", default: []].insert(value)
        }
        #expect(byInput.count == 600)
        #expect(byInput.values.allSatisfy { $0.count == 1 })
    }
}

extension WorkerFaultTests {
    @Test(
        "Exactly-once on a slow broker: the next batch is read while the one before commits, and each input comes out once"
    )
    func readsWhileCommitting() async throws {
        let outcome = try await Blocking.run {
            let (cluster, catalog) = try clusterWithERPOrders(600, ids: "s")
            // Every request now takes 20 ms more: a commit (offsets, then the transaction's end)
            // takes several round trips, a batch of 100 records far less to read and map.
            try cluster.setRoundTripTime(broker: 1, milliseconds: 20)
            var configuration = WorkerConfiguration()
            configuration.flow = .erpToCRM
            configuration.streams = [.orders]
            configuration.commitMaxRecords = 100
            configuration.kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: "slow-test")
            configuration.transactionalID = "slow-test-1"
            configuration.sessionTimeout = .seconds(6)
            let worker = RunningWorker(try Worker(configuration: configuration, catalog: catalog))
            let reader = try subscribedReader(cluster, group: "slow-reader", topics: ["crm.orders.inbound"])
            var ids: [String] = []
            let deadline = ContinuousClock.now + .seconds(90)
            while Set(ids).count < 600 && ContinuousClock.now < deadline {
                if case .record(let record)? = try reader.poll(timeout: .milliseconds(100)) {
                    ids.append(record.header("ce_causationid")?.text ?? "")
                }
            }
            ids += try reader.records(for: .seconds(1)).map { $0.header("ce_causationid")?.text ?? "" }
            try reader.close()
            let error = worker.stop()
            let metrics = worker.worker.metrics
            return (ids, error, metrics.readWhileCommitting.value, metrics.commits.value, metrics.aborts.value)
        }
        let (ids, error, readWhileCommitting, commits, aborts) = outcome
        #expect(error == nil)
        #expect(aborts == 0)
        #expect(Set(ids) == Set((1...600).map { "s-\($0)" }))
        #expect(ids.count == 600, "\(ids.count - Set(ids).count) outputs repeated")
        #expect(commits >= 6)
        // Records were read and mapped while a commit was in flight, not after it.
        #expect(readWhileCommitting > 0)
        print("slow broker: \(commits) commits, \(readWhileCommitting) of 600 records read while committing")
    }

    @Test("At-least-once: outputs the broker refuses rewind the worker to its committed offsets, and nothing is lost")
    func atLeastOnceRefusedDelivery() async throws {
        let outcome = try await Blocking.run {
            let (cluster, catalog) = try clusterWithERPOrders(300, ids: "a")
            // The inputs are in; the worker's first produce requests are refused for good (not
            // retried), so some outputs fail their delivery.
            cluster.failNextRequests(.produce, with: [.topicAuthorizationFailed, .topicAuthorizationFailed])
            var configuration = WorkerConfiguration()
            configuration.delivery = .atLeastOnce
            configuration.flow = .erpToCRM
            configuration.streams = [.orders]
            configuration.kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: "alo-fault")
            configuration.sessionTimeout = .seconds(6)
            let worker = RunningWorker(try Worker(configuration: configuration, catalog: catalog))

            let reader = try subscribedReader(cluster, group: "alo-fault-reader", topics: ["crm.orders.inbound"])
            var ids: Set<String> = []
            let deadline = ContinuousClock.now + .seconds(60)
            while ids.count < 300 && ContinuousClock.now < deadline {
                if case .record(let record)? = try reader.poll(timeout: .milliseconds(100)) {
                    ids.insert(record.header("ce_causationid")?.text ?? "")
                }
            }
            try reader.close()
            let error = worker.stop()
            // What the group committed: every input, once the worker has stopped.
            let admin = try KafkaConsumer(
                configuration: ConsumerConfiguration(
                    kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers),
                    groupID: configuration.resolvedGroupID))
            let partitions = catalog["erp.orders.changes"]?.partitions ?? 0
            let committed = try admin.committed(
                (0..<Int32(partitions)).map { TopicPartition("erp.orders.changes", $0) })
            try admin.close()
            return (ids, error, worker.worker.metrics.aborts.value, committed.map { max(0, $0.offset) }.reduce(0, +))
        }
        let (ids, error, aborts, committed) = outcome
        #expect(error == nil)
        let missing = Set((1...300).map { "a-\($0)" }).subtracting(ids)
        #expect(missing.isEmpty, "\(missing.count) inputs have no output, e.g. \(missing.sorted().prefix(5))")
        #expect(aborts >= 1, "no delivery failed: the injected errors did not reach the worker")
        #expect(committed == 300)
    }
}

@Suite("A worker whose offset commit is refused", .serialized, .timeLimit(.minutes(2)))
struct RefusedCommitTests {
    @Test(
        "Offsets the group refuses during a rebalance are committed once it is over, though nothing new arrives",
        arguments: [WorkerConfiguration.Delivery.atLeastOnce, .exactlyOnce])
    func refusedCommit(delivery: WorkerConfiguration.Delivery) async throws {
        let (committed, ends, error) = try await Blocking.run {
            let (cluster, catalog) = try clusterWithTopics(brokers: 1)
            var configuration = WorkerConfiguration()
            configuration.delivery = delivery
            configuration.flow = .erpToCRM
            configuration.streams = [.orders]
            configuration.kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: "refused")
            configuration.transactionalID = "refused-1"
            configuration.sessionTimeout = .seconds(6)
            let worker = RunningWorker(try Worker(configuration: configuration, catalog: catalog))
            while worker.worker.metrics.assignedPartitions.load(ordering: .relaxed) == 0 {
                Thread.sleep(forTimeInterval: 0.05)
            }
            // The next commits answer as a group in the middle of a rebalance does; then one
            // quiet burst of orders, all on one partition, and nothing after it.
            cluster.failNextRequests(.offsetCommit, with: [.rebalanceInProgress, .rebalanceInProgress])
            let source = try KafkaProducer(
                configuration: ProducerConfiguration(
                    kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)))
            for index in 1...20 {
                try source.send(
                    OutgoingRecord(
                        topic: "erp.orders.changes", key: Array("USMF/F000001".utf8),
                        value: Array(#"{"SALESORDERNUMBER":"F000001"}"#.utf8),
                        headers: [
                            KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", "refused-\(index)"),
                            KafkaHeader("ce_source", "erp"), KafkaHeader("ce_type", "SalesOrderHeader.upserted"),
                            KafkaHeader("ce_company", "USMF"),
                        ]))
            }
            _ = try source.flush(timeout: .seconds(30))

            let group = try KafkaConsumer(
                configuration: ConsumerConfiguration(
                    kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers),
                    groupID: configuration.resolvedGroupID))
            let partitions = (0..<Int32(24)).map { TopicPartition("erp.orders.changes", $0) }
            let ends = try partitions.map { try group.watermarks($0, timeout: .seconds(5)).high }
            var committed: [Int64] = []
            let deadline = ContinuousClock.now + .seconds(30)
            repeat {
                Thread.sleep(forTimeInterval: 0.2)
                committed = try group.committed(partitions, timeout: .seconds(5)).map { max(0, $0.offset) }
            } while committed != ends && ContinuousClock.now < deadline
            try group.close()
            return (committed, ends, worker.stop())
        }
        #expect(error == nil)
        #expect(ends.reduce(0, +) == 20)
        #expect(committed == ends, "the group's committed offsets stay behind the input")
    }
}

@Suite("Poison events", .serialized, .timeLimit(.minutes(2)))
struct PoisonTests {
    @Test("One event for each refusal code lands in the DLQ with its headers, and the same keys keep flowing behind it")
    func everyCode() async throws {
        // (code, ce_type, data, extra headers): each refused on the CRM orders stream.
        let poison: [(String, String, String, [KafkaHeader])] = [
            ("malformed_json", "salesorder.upserted", "{oops", []),
            ("not_an_object", "salesorder.upserted", "[1,2]", []),
            (
                "missing_attribute", "salesorder.upserted", #"{"msdyn_salesordernumber":"C000001"}"#,
                [KafkaHeader("ce_id", "")]
            ),
            (
                "unsupported_specversion", "salesorder.upserted", #"{"msdyn_salesordernumber":"C000001"}"#,
                [KafkaHeader("ce_specversion", "0.3")]
            ),
            ("unknown_type", "lead.upserted", #"{"msdyn_salesordernumber":"C000001"}"#, []),
            ("wrong_direction", "invoice.upserted", #"{"msdyn_invoicenumber":"C000001"}"#, []),
            (
                "missing_company", "salesorder.upserted", #"{"msdyn_salesordernumber":"C000001"}"#,
                [KafkaHeader("ce_company", "")]
            ),
            (
                "company_not_allowed", "salesorder.upserted", #"{"msdyn_salesordernumber":"C000001"}"#,
                [KafkaHeader("ce_company", "ZZZZ")]
            ),
            ("missing_key", "salesorder.upserted", #"{"name":"no number"}"#, []),
            ("key_mismatch", "salesorder.upserted", #"{"msdyn_salesordernumber":"C000002"}"#, []),
            (
                "wrong_field_type", "salesorder.upserted",
                #"{"msdyn_salesordernumber":"C000001","transactioncurrencyid":"USD"}"#, []
            ),
            (
                "bad_decimal", "salesorderdetail.upserted",
                #"{"salesorderid":{"msdyn_salesordernumber":"C000001"},"productid":{"msdyn_productnumber":"D1"},"quantity":"lots","manualdiscountamount":1}"#,
                []
            ),
            (
                "unknown_enum_value", "salesorder.upserted",
                #"{"msdyn_salesordernumber":"C000001","msdyn_salesorderpromisingmethod":7}"#, []
            ),
            (
                "number_sequence_clash", "salesorder.upserted", #"{"msdyn_salesordernumber":"SO-1"}"#,
                [KafkaHeader("ce_subject", "USMF/SO-1")]
            ),
            (
                "missing_site_or_warehouse", "salesorderdetail.upserted",
                #"{"salesorderid":{"msdyn_salesordernumber":"C000001"},"productid":{"msdyn_productnumber":"D1"}}"#,
                [KafkaHeader("ce_company", "DEMF"), KafkaHeader("ce_subject", "DEMF/C000001")]
            ),
            (
                "write_in_without_category", "salesorderdetail.upserted",
                #"{"salesorderid":{"msdyn_salesordernumber":"C000001"},"productdescription":"Engraving"}"#,
                [KafkaHeader("ce_company", "DEMF"), KafkaHeader("ce_subject", "DEMF/C000001")]
            ),
            (
                "invalid_quantity", "salesorderdetail.upserted",
                #"{"salesorderid":{"msdyn_salesordernumber":"C000001"},"productid":{"msdyn_productnumber":"D1"},"quantity":0,"manualdiscountamount":5}"#,
                []
            ),
        ]
        let outcome = try await Blocking.run {
            let (cluster, catalog) = try clusterWithTopics(brokers: 1)
            let source = try KafkaProducer(
                configuration: ProducerConfiguration(
                    kafka: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)))
            for (index, entry) in poison.enumerated() {
                // Defaults first; a test's own headers replace them (an empty value removes one).
                var headers: [String: String] = [
                    "ce_specversion": "1.0", "ce_id": "poison-\(index)", "ce_source": "crm", "ce_type": entry.1,
                    "ce_company": "USMF", "ce_subject": "USMF/C000001",
                ]
                for header in entry.3 { headers[header.name] = header.text }
                try source.send(
                    OutgoingRecord(
                        topic: "crm.orders.changes", key: Array("USMF/C000001".utf8), value: Array(entry.2.utf8),
                        headers: headers.filter { !$0.value.isEmpty }.sorted { $0.key < $1.key }.map {
                            KafkaHeader($0.key, $0.value)
                        }))
                // A valid change of the same order right behind each poison event.
                try source.send(
                    OutgoingRecord(
                        topic: "crm.orders.changes", key: Array("USMF/C000001".utf8),
                        value: Array(#"{"msdyn_salesordernumber":"C000001","name":"after \#(index)"}"#.utf8),
                        headers: [
                            KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", "good-\(index)"),
                            KafkaHeader("ce_source", "crm"),
                            KafkaHeader("ce_type", "salesorder.upserted"), KafkaHeader("ce_company", "USMF"),
                            KafkaHeader("ce_subject", "USMF/C000001"),
                        ]))
            }
            _ = try source.flush(timeout: .seconds(10))

            var configuration = WorkerConfiguration()
            configuration.flow = .crmToERP
            configuration.streams = [.orders]
            configuration.kafka = KafkaConfiguration(
                bootstrapServers: cluster.bootstrapServers, clientID: "poison-test")
            configuration.transactionalID = "poison-test-1"
            configuration.sessionTimeout = .seconds(6)
            configuration.mapping.companies = ["USMF", "DEMF"]
            configuration.mapping.companyDefaults["USMF"] = .init(
                site: "1", warehouse: "13", writeInCategory: "Write-in")
            configuration.mapping.numberSequences = .init(crm: #"C\d+"#, erp: #"F\d+"#)
            let worker = RunningWorker(try Worker(configuration: configuration, catalog: catalog))
            let reader = try subscribedReader(
                cluster, group: "poison-reader", topics: ["erp.orders.inbound", "crm.orders.changes.dlq"])
            var outputs: [KafkaRecord] = []
            var letters: [KafkaRecord] = []
            let deadline = ContinuousClock.now + .seconds(60)
            while (outputs.count < poison.count || letters.count < poison.count) && ContinuousClock.now < deadline {
                if case .record(let record)? = try reader.poll(timeout: .milliseconds(100)) {
                    if record.topic == "erp.orders.inbound" { outputs.append(record) } else { letters.append(record) }
                }
            }
            try reader.close()
            return (outputs, letters, worker.stop())
        }
        let (outputs, letters, error) = outcome
        #expect(error == nil)
        #expect(letters.map { $0.header("p2c_error_code")?.text ?? "" } == poison.map(\.0))
        #expect(outputs.map { $0.header("ce_causationid")?.text ?? "" } == poison.indices.map { "good-\($0)" })
        for (letter, entry) in zip(letters, poison) {
            #expect(letter.value == Array(entry.2.utf8), "\(entry.0): value changed")
            #expect(letter.key == Array("USMF/C000001".utf8))
            #expect(letter.header("p2c_source_topic")?.text == "crm.orders.changes")
            #expect(Int(letter.header("p2c_source_offset")?.text ?? "") != nil)
        }
        // Offsets: each letter points at its poison event, which precedes its good twin on the partition.
        let offsets = letters.compactMap { Int($0.header("p2c_source_offset")?.text ?? "") }
        #expect(offsets == offsets.sorted() && Set(offsets).count == poison.count)
    }
}
