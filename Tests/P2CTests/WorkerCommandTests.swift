import Foundation
import Kafka
import Runtime
import TestSupport
import Testing

/// A port nothing listens on right now.
func freePort() -> Int { LocalHTTP.freePort() }

/// GET `path` from a local port: status and body, or nil when nothing answers.
func get(_ port: Int, _ path: String) async -> (status: Int, body: String)? {
    try? await AsyncBridge.onThread { LocalHTTP.get(port: port, path: path) } ?? nil
}

@Suite("p2c worker, as a deployment runs it", .serialized, .timeLimit(.minutes(2)))
struct WorkerCommandTests {
    @Test(
        "A worker process maps what arrives, dead-letters poison, drops echoes, serves its probes, and ends with 0 on SIGTERM within 10 s"
    )
    func workerProcess() async throws {
        let port = freePort()
        let outcome = try await Blocking.run {
            let broker = try Spawned(p2cBinary, ["broker", "--topics", topicsDirectory])
            let bootstrap = broker.readLine() ?? ""
            let worker = try Spawned(
                p2cBinary,
                ["worker", "--flow", "erp-to-crm", "--streams", "orders,invoices", "--topics", topicsDirectory],
                environment: [
                    "P2C_BOOTSTRAP_SERVERS": bootstrap, "P2C_SESSION_TIMEOUT_MS": "6000",
                    "P2C_TRANSACTIONAL_ID": "worker-process-test", "P2C_METRICS_PORT": String(port),
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
            // Two poison events and two echoes among them.
            let base = [
                KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_source", "erp"),
                KafkaHeader("ce_company", "USMF"),
            ]
            try producer.send(
                OutgoingRecord(
                    topic: "erp.orders.changes", key: Array("USMF/F999001".utf8), value: Array("{oops".utf8),
                    headers: base + [
                        KafkaHeader("ce_id", "bad-1"), KafkaHeader("ce_type", "SalesOrderHeader.upserted"),
                    ]))
            try producer.send(
                OutgoingRecord(
                    topic: "erp.orders.changes", key: Array("USMF/F999002".utf8),
                    value: Array(#"{"SALESORDERNUMBER":"F999002","SALESORDERPROCESSINGSTATUS":"teleported"}"#.utf8),
                    headers: base + [
                        KafkaHeader("ce_id", "bad-2"), KafkaHeader("ce_type", "SalesOrderHeader.upserted"),
                    ]))
            for echo in 3...4 {
                try producer.send(
                    OutgoingRecord(
                        topic: "erp.orders.changes", key: Array("USMF/F99900\(echo)".utf8),
                        value: Array(#"{"SALESORDERNUMBER":"F99900\#(echo)"}"#.utf8),
                        headers: base + [
                            KafkaHeader("ce_id", "echo-\(echo)"), KafkaHeader("ce_type", "SalesOrderHeader.upserted"),
                            KafkaHeader("ce_origin", "p2c"),
                        ]))
            }
            _ = try producer.flush(timeout: .seconds(10))
            var configuration = ConsumerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrap), groupID: "crm-reader")
            configuration.sessionTimeoutMilliseconds = 6_000
            let reader = try KafkaConsumer(configuration: configuration)
            try reader.subscribe(["crm.orders.inbound", "erp.orders.changes.dlq"])
            var received: [KafkaRecord] = []
            var letters: [KafkaRecord] = []
            let deadline = ContinuousClock.now + .seconds(60)
            while (received.count < 20 || letters.count < 2) && ContinuousClock.now < deadline {
                if case .record(let record)? = try reader.poll(timeout: .milliseconds(100)) {
                    if record.topic == "crm.orders.inbound" { received.append(record) } else { letters.append(record) }
                }
            }
            try reader.close()
            return (received, letters, worker, broker)
        }
        let (received, letters, worker, broker) = outcome
        #expect(
            Set(letters.compactMap { $0.header("p2c_error_code")?.text }) == ["malformed_json", "unknown_enum_value"])
        #expect(letters.allSatisfy { $0.header("p2c_source_topic")?.text == "erp.orders.changes" })
        defer { _ = broker.stop() }
        // The operations surface, while the worker runs.
        let ready = await get(port, "/readyz")
        let healthy = await get(port, "/healthz")
        // librdkafka reports statistics every 5 s: wait for the lag of the assigned partitions.
        func caughtUp(_ text: String?) -> Bool {
            let lines = (text ?? "").split(separator: "\n").filter { $0.hasPrefix("p2c_consumer_lag{") }
            return !lines.isEmpty && lines.allSatisfy { $0.hasSuffix(" 0") }
        }
        var metrics = await get(port, "/metrics")
        for _ in 0..<150 where !caughtUp(metrics?.body) {
            try await Task.sleep(for: .milliseconds(100))
            metrics = await get(port, "/metrics")
        }
        let missing = await get(port, "/nothing")
        let (status, stopTime, log) = try await Blocking.run {
            let stopStart = ContinuousClock.now
            let status = worker.stop(SIGTERM)
            return (status, ContinuousClock.now - stopStart, worker.standardError)
        }
        #expect(ready?.status == 200)
        #expect(healthy?.status == 200)
        #expect(missing?.status == 404)
        let text = metrics?.body ?? ""
        #expect(text.contains(#"p2c_events_consumed_total{flow="erp-to-crm",stream="orders"} 24"#))
        #expect(text.contains(#"p2c_events_produced_total{flow="erp-to-crm",stream="orders"} 20"#))
        #expect(text.contains(#"p2c_events_dead_lettered_total{flow="erp-to-crm",stream="invoices"} 0"#))
        #expect(text.contains(#"p2c_events_dead_lettered_total{flow="erp-to-crm",stream="orders"} 2"#))
        #expect(text.contains(#"p2c_echoes_dropped_total{flow="erp-to-crm",stream="orders"} 2"#))
        #expect(text.contains("# TYPE p2c_end_to_end_latency_seconds histogram"))
        // Everything was read: every assigned partition of both streams shows lag 0.
        let lagLines = text.split(separator: "\n").filter { $0.hasPrefix("p2c_consumer_lag{") }
        #expect(lagLines.count == 24 + 12)
        #expect(lagLines.allSatisfy { $0.hasSuffix(" 0") })
        #expect(text.contains(#"p2c_processing_seconds_count{flow="erp-to-crm"} 24"#))
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
        "A worker started while a killed one still holds the group says every 5 s what it waits for, then takes the partitions"
    )
    func waitIsNeverSilent() async throws {
        let (stderr, ready) = try await Blocking.run {
            let broker = try TestBroker()
            defer { broker.stop() }
            var environment = broker.environment
            environment["P2C_SESSION_TIMEOUT_MS"] = "15000"
            let worker = ["worker", "--flow", "erp-to-crm", "--streams", "origins", "--topics", topicsDirectory]
            let first = try Spawned(p2cBinary, worker, environment: environment)
            Thread.sleep(forTimeInterval: 6)
            _ = first.stop(SIGKILL)
            let port = freePort()
            environment["P2C_METRICS_PORT"] = String(port)
            let second = try Spawned(p2cBinary, worker, environment: environment)
            var ready = false
            let deadline = ContinuousClock.now + .seconds(40)
            while !ready && ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: 0.5)
                ready =
                    LocalHTTP.get(port: port, path: "/metrics")?.body.contains(
                        "p2c_assigned_partitions{flow=\"erp-to-crm\"} 3") ?? false
            }
            _ = second.stop(SIGTERM)
            return (second.finish().stderr, ready)
        }
        #expect(ready, "the partitions come once the killed member's session is over")
        #expect(stderr.contains(#""msg":"waiting for the group to take this member in"#), "\(stderr.suffix(800))")
    }

    @Test("SIGTERM while the cluster is unreachable still ends the worker with 0 within 10 s")
    func stopWithoutCluster() async throws {
        let (status, elapsed) = try await Blocking.run {
            let worker = try Spawned(
                p2cBinary, ["worker", "--flow", "crm-to-erp", "--topics", topicsDirectory],
                environment: ["P2C_BOOTSTRAP_SERVERS": "127.0.0.1:1", "P2C_METRICS_PORT": "0"])
            Thread.sleep(forTimeInterval: 3)
            let start = ContinuousClock.now
            let status = worker.stop(SIGTERM)
            return (status, ContinuousClock.now - start)
        }
        #expect(status == 0)
        #expect(elapsed < .seconds(10))
    }

    @Test(
        "A bad setting fails at start with one line naming it and exit code 2",
        arguments: [
            (
                ["worker", "--flow", "sideways"], [String: String](),
                "--flow must be one of crm-to-erp, erp-to-crm, got 'sideways'"
            ),
            (["worker"], ["P2C_FLOW": "sideways"], "P2C_FLOW must be one of crm-to-erp, erp-to-crm, got 'sideways'"),
            (
                ["worker", "--flow", "crm-to-erp", "--streams", "products"], [:],
                "none of [\"products\"] flows crm-to-erp"
            ),
            (
                ["worker", "--flow", "crm-to-erp", "--streams", "leads"], [:],
                "--streams must be stream names from customers, contacts"
            ),
            (
                ["worker", "--flow", "crm-to-erp"], ["P2C_COMMIT_INTERVAL_MS": "soon"],
                "P2C_COMMIT_INTERVAL_MS must be an integer from 1 to 60000, got 'soon'"
            ),
            // The file and the environment accept the same values (the file's test has the same line).
            (
                ["worker", "--flow", "crm-to-erp"], ["P2C_SESSION_TIMEOUT_MS": "1"],
                "P2C_SESSION_TIMEOUT_MS must be an integer from 1000 to 3600000, got '1'"
            ),
            (
                ["worker", "--flow", "crm-to-erp"], ["P2C_SHUTDOWN_TIMEOUT_MS": "0"],
                "P2C_SHUTDOWN_TIMEOUT_MS must be an integer from 1000 to 600000, got '0'"
            ),
            (["worker", "--flow", "crm-to-erp"], ["P2C_KAFKA_LINGER_MS": "soon"], "kafka.linger.ms"),
            (
                ["worker", "--flow", "crm-to-erp", "--bootstrap-servers", "localhost"], [:],
                "bootstrap.servers: \"localhost\" is not host:port"
            ),
        ] as [([String], [String: String], String)])
    func badSettings(arguments: [String], environment: [String: String], message: String) throws {
        try badSettingsCase(arguments: arguments, environment: environment, message: message)
    }

    @Test(
        "A bad value in the configuration file is named with its key",
        arguments: [
            (#"{"metricsPort": 70000}"#, "metricsPort must be an integer from 0 to 65535"),
            (#"{"watchdogSeconds": "soon"}"#, "watchdogSeconds must be an integer"),
            (#"{"delivery": "twice"}"#, "delivery must be one of exactly-once, at-least-once, got 'twice'"),
            (#"{"flow": "crm-to-erp", "partitions": 3}"#, #"unknown key "partitions""#),
            (#"{"kafka": {"linger.ms": "soon"}}"#, "kafka.linger.ms"),
            (#"{"mapping": {"syncProspects": "yes"}}"#, "mapping.syncProspects"),
            (#"{"mapping": {"syncProspect": true}}"#, #"unknown key "mapping.syncProspect""#),
            (
                #"{"mapping": {"numberSequences": {"crm": "C", "erm": "F"}}}"#,
                #"unknown key "mapping.numberSequences.erm""#
            ),
            (
                #"{"mapping": {"fieldMaps": [{"map": "m", "fo_feld": "X", "map_type": "=", "ce_column": "x"}]}}"#,
                #"unknown key "mapping.fieldMaps[0].fo_feld""#
            ),
            (#"{"metricsPort": true}"#, "metricsPort must be an integer from 0 to 65535, got"),
            // 0 and 1 are integers (the error is the next setting's).
            (#"{"metricsPort": 0, "commitMaxRecords": 1, "passThrough": "yes"}"#, "passThrough must be true or false"),
            (#"{"sessionTimeoutMs": 1}"#, "sessionTimeoutMs must be an integer from 1000 to 3600000, got 1"),
            // A mapping setting that cannot be compiled is the deployment's to fix: exit 2, not a
            // restart loop, and named as the file names it.
            (
                #"{"mapping": {"numberSequences": {"crm": "C(\\d+", "erp": "^F\\d+$"}}}"#,
                #"mapping.numberSequences.crm: "C(\d+" is not a regular expression"#
            ),
            (
                #"{"mapping": {"fieldMaps": [{"map": "No such map", "fo_field": "X", "map_type": "=", "ce_column": "x"}]}}"#,
                #"mapping.fieldMaps: there is no map named "No such map""#
            ),
        ])
    func badFile(text: String, message: String) throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("p2c-worker-\(UUID().uuidString).json")
        try text.write(to: file, atomically: true, encoding: .utf8)
        try badSettingsCase(arguments: ["worker", "--config", file.path], environment: [:], message: message)
    }

    private func badSettingsCase(arguments: [String], environment: [String: String], message: String) throws {
        let result = try Spawned(p2cBinary, arguments + ["--topics", topicsDirectory], environment: environment)
            .finish()
        #expect(result.status == 2)
        #expect(result.stderr.contains(message))
        #expect(result.stderr.split(separator: "\n").count == 1)
    }
}
