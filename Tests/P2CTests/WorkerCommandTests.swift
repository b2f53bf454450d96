import Foundation
import Kafka
import Testing

@Suite("p2c worker, as a deployment runs it", .serialized, .timeLimit(.minutes(2)))
struct WorkerCommandTests {
    @Test("A worker process between two broker clients maps what arrives, and SIGTERM ends it with 0 within 10 s")
    func workerProcess() async throws {
        let outcome = try await Blocking.run {
            let broker = try Spawned(p2cBinary, ["broker", "--topics", topicsDirectory])
            let bootstrap = broker.readLine() ?? ""
            defer { _ = broker.stop() }
            let worker = try Spawned(
                p2cBinary,
                ["worker", "--flow", "erp-to-crm", "--streams", "orders,invoices", "--topics", topicsDirectory],
                environment: [
                    "P2C_BOOTSTRAP_SERVERS": bootstrap, "P2C_SESSION_TIMEOUT_MS": "6000",
                    "P2C_TRANSACTIONAL_ID": "worker-process-test",
                ])
            let producer = try KafkaProducer(
                configuration: ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: bootstrap)))
            for index in 1...20 {
                let number = "F\(String(format: "%06d", index))"
                try producer.send(
                    OutgoingRecord(
                        topic: "erp.orders.changes", key: Array("USMF/\(number)".utf8),
                        value: Array(
                            #"{"SALESORDERNUMBER":"\#(number)","SALESORDERSTATUS":"delivered","DOCUMENTSTATUS":"packingSlip"}"#
                                .utf8),
                        headers: [
                            KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", "erp-\(index)"),
                            KafkaHeader("ce_source", "erp"),
                            KafkaHeader("ce_type", "SalesOrderHeader.upserted"), KafkaHeader("ce_company", "USMF"),
                        ]))
            }
            _ = try producer.flush(timeout: .seconds(10))
            var configuration = ConsumerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrap), groupID: "crm-reader")
            configuration.sessionTimeoutMilliseconds = 6_000
            let reader = try KafkaConsumer(configuration: configuration)
            try reader.subscribe(["crm.orders.inbound"])
            var received: [KafkaRecord] = []
            let deadline = ContinuousClock.now + .seconds(60)
            while received.count < 20 && ContinuousClock.now < deadline {
                if case .record(let record)? = try reader.poll(timeout: .milliseconds(100)) { received.append(record) }
            }
            try reader.close()
            let stopStart = ContinuousClock.now
            let status = worker.stop(SIGTERM)
            let stopTime = ContinuousClock.now - stopStart
            return (received, status, stopTime, worker.standardError)
        }
        let (received, status, stopTime, log) = outcome
        #expect(received.count == 20)
        #expect(
            received.allSatisfy {
                String(decoding: $0.value ?? [], as: UTF8.self).contains(#""msdyn_processingstatus":192350004"#)
            })
        #expect(status == 0)
        #expect(stopTime < .seconds(10))
        #expect(log.contains(#""msg":"worker stopped""#))
        #expect(log.contains(#""produced":20"#))
    }

    @Test(
        "A bad setting fails at start with one line naming it and exit code 2",
        arguments: [
            (["worker", "--flow", "sideways"], [String: String](), "flow must be crm-to-erp or erp-to-crm"),
            (
                ["worker", "--flow", "crm-to-erp", "--streams", "products"], [:],
                "none of [\"products\"] flows crm-to-erp"
            ),
            (["worker", "--flow", "crm-to-erp", "--streams", "leads"], [:], "'leads' is not one of"),
            (
                ["worker", "--flow", "crm-to-erp"], ["P2C_COMMIT_INTERVAL_MS": "soon"],
                "P2C_COMMIT_INTERVAL_MS: commitIntervalMs must be a positive integer"
            ),
            (["worker", "--flow", "crm-to-erp"], ["P2C_KAFKA_LINGER_MS": "soon"], "kafka.linger.ms"),
            (
                ["worker", "--flow", "crm-to-erp", "--bootstrap-servers", "localhost"], [:],
                "bootstrap.servers: \"localhost\" is not host:port"
            ),
        ] as [([String], [String: String], String)])
    func badSettings(arguments: [String], environment: [String: String], message: String) throws {
        let result = try Spawned(p2cBinary, arguments + ["--topics", topicsDirectory], environment: environment)
            .finish()
        #expect(result.status == 2)
        #expect(result.stderr.contains(message))
        #expect(result.stderr.split(separator: "\n").count == 1)
    }
}
