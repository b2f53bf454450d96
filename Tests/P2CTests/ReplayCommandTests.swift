import Foundation
import Kafka
import TestSupport
import Testing

@Suite("p2c replay", .serialized, .timeLimit(.minutes(3)))
struct ReplayCommandTests {
    @Test(
        "Refused while a worker runs; after scaling to zero it moves the offsets back: the same ce_ids again, mapped with the changed map"
    )
    func replayAFlow() async throws {
        let outcome = try await Blocking.run {
            let broker = try TestBroker()
            defer { broker.stop() }
            let (bootstrap, environment, producer) = (broker.bootstrap, broker.environment, broker.producer)
            for index in 1...6 {
                try producer.send(
                    OutgoingRecord(
                        topic: "erp.origins.changes", key: Array("USMF/O\(index)".utf8),
                        value: Array(#"{"ORIGINCODE":"O\#(index)"}"#.utf8),
                        headers: [
                            KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", "origin-\(index)"),
                            KafkaHeader("ce_source", "erp"),
                            KafkaHeader("ce_type", "SalesOrderOrigin.upserted"), KafkaHeader("ce_company", "USMF"),
                        ]))
            }
            _ = try producer.flush(timeout: .seconds(10))
            var readerConfiguration = ConsumerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrap), groupID: "replay-reader")
            readerConfiguration.sessionTimeoutMilliseconds = 6_000
            let reader = try KafkaConsumer(configuration: readerConfiguration)
            try reader.subscribe(["crm.origins.inbound"])
            // Until `count` ce_ids are read mapped the `replayed` way (the mock shows aborted
            // transactions, so a worker's retried batch can be read twice: ids, not records).
            func read(until count: Int, replayed: Bool, into records: inout [KafkaRecord]) throws {
                let deadline = ContinuousClock.now + .seconds(60)
                while Set(records.filter { Self.replayed($0) == replayed }.compactMap { $0.header("ce_id")?.text })
                    .count
                    < count && ContinuousClock.now < deadline
                {
                    if case .record(let record)? = try reader.poll(timeout: .milliseconds(100)) {
                        records.append(record)
                    }
                }
            }
            let replay = ["replay", "--flow", "erp-to-crm", "--stream", "origins", "--topics", topicsDirectory]
            var outputs: [KafkaRecord] = []
            let first = try Spawned(
                p2cBinary, ["worker", "--flow", "erp-to-crm", "--streams", "origins", "--topics", topicsDirectory],
                environment: environment)
            try read(until: 6, replayed: false, into: &outputs)
            let refused = try Spawned(p2cBinary, replay + ["--to-earliest"], environment: environment).finish()
            _ = first.stop(SIGTERM)
            let stopped = ContinuousClock.now
            let dryRun = try Spawned(p2cBinary, replay + ["--to-offset", "2:1", "--dry-run"], environment: environment)
                .finish()
            let applied = try Spawned(p2cBinary, replay + ["--to-earliest"], environment: environment).finish()
            print("replay: accepted \(ContinuousClock.now - stopped) after the worker stopped")
            // The map changed before the replay: the origins map gains a constant column.
            let config = FileManager.default.temporaryDirectory.appendingPathComponent(
                "replay-\(UUID().uuidString).json")
            try
                #"{"mapping": {"fieldMaps": [{"map": "Sales order origin codes -> msdyn_salesorderorigins", "fo_field": "none", "map_type": ">>", "ce_column": "msdyn_replayed", "default": "true"}]}}"#
                .write(to: config, atomically: true, encoding: .utf8)
            let second = try Spawned(
                p2cBinary,
                [
                    "worker", "--flow", "erp-to-crm", "--streams", "origins", "--topics", topicsDirectory, "--config",
                    config.path,
                ],
                environment: environment)
            try read(until: 6, replayed: true, into: &outputs)
            _ = second.stop(SIGTERM)
            try reader.close()
            return (outputs, refused, dryRun, applied)
        }
        let (outputs, refused, dryRun, applied) = outcome
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("has live members"))
        // Said as soon as the probe is assigned part of the partitions, before it gives up.
        #expect(refused.stderr.contains("has other members (this tool holds"), "\(refused.stderr)")
        #expect(dryRun.status == 0)
        #expect(dryRun.stdout.hasPrefix("erp.origins.changes[2]: "))
        #expect(dryRun.stdout.contains(" → 1\ndry run: nothing changed"))
        #expect(applied.status == 0)
        #expect(applied.stdout.contains("moved 3 partitions of group p2c-erp-to-crm"))
        // The six were mapped with the built-in map, then the same six ce_ids again with the changed one.
        let changed = outputs.map(Self.replayed)
        let ids = outputs.map { $0.header("ce_id")?.text ?? "" }
        let first = Set(zip(ids, changed).filter { !$0.1 }.map(\.0))
        #expect(first.count == 6)
        #expect(Set(zip(ids, changed).filter { $0.1 }.map(\.0)) == first)
        #expect(changed == changed.sorted { !$0 && $1 }, "every replayed output after the first ones")
        withKnownIssue(
            "librdkafka 2.0.2's mock shows aborted transactions to read_committed readers", isIntermittent: true
        ) {
            #expect(outputs.count == 12, "each once a side")
        }
    }

    private static func replayed(_ record: KafkaRecord) -> Bool {
        String(decoding: record.value ?? [], as: UTF8.self).contains(#""msdyn_replayed":true"#)
    }

    @Test("Started while the fleet still runs, replay --wait goes through once the last worker has stopped")
    func replayWaitsForTheFleet() async throws {
        let outcome = try await Blocking.run {
            let broker = try TestBroker()
            defer { broker.stop() }
            let worker = ["worker", "--flow", "erp-to-crm", "--streams", "origins", "--topics", topicsDirectory]
            let fleet = try (0..<2).map { _ in try Spawned(p2cBinary, worker, environment: broker.environment) }
            // Both workers hold partitions before the replay starts.
            Thread.sleep(forTimeInterval: 5)
            let replay = try Spawned(
                p2cBinary,
                [
                    "replay", "--flow", "erp-to-crm", "--stream", "origins", "--to-earliest", "--wait", "40",
                    "--topics", topicsDirectory,
                ],
                environment: broker.environment)
            Thread.sleep(forTimeInterval: 1)
            let statuses = fleet.map { $0.stop(SIGTERM) }
            let stopped = ContinuousClock.now
            let result = replay.finish()
            return (statuses, result, ContinuousClock.now - stopped)
        }
        let (statuses, result, after) = outcome
        print("replay --wait: done \(after) after the fleet stopped")
        #expect(statuses == [0, 0])
        #expect(result.status == 0)
        #expect(result.stdout.contains("moved 3 partitions of group p2c-erp-to-crm"))
    }

    @Test(
        "On the embedded broker, with a worker's default session timeout (45 s): refused while the worker lives, a dry run, then --to-earliest --wait 60 goes through within 15 s of the worker's stop"
    )
    func replayAfterARefusedProbe() async throws {
        let outcome = try await Blocking.run {
            let broker = try TestBroker()
            defer { broker.stop() }
            var environment = broker.environment
            environment["P2C_SESSION_TIMEOUT_MS"] = "45000"
            let replay = ["replay", "--flow", "crm-to-erp", "--to-earliest", "--topics", topicsDirectory]
            let worker = try Spawned(
                p2cBinary, ["worker", "--flow", "crm-to-erp", "--topics", topicsDirectory], environment: environment)
            // The worker holds its partitions before the first replay starts.
            Thread.sleep(forTimeInterval: 6)
            let refused = try Spawned(p2cBinary, replay, environment: environment).finish()
            let status = worker.stop(SIGTERM)
            let stopped = ContinuousClock.now
            let dryRun = try Spawned(p2cBinary, replay + ["--dry-run"], environment: environment).finish()
            let applied = try Spawned(p2cBinary, replay + ["--wait", "60"], environment: environment).finish()
            return (refused, status, dryRun, applied, ContinuousClock.now - stopped)
        }
        let (refused, status, dryRun, applied, after) = outcome
        #expect(refused.status == 1 && refused.stderr.contains("has live members"), "\(refused.stderr)")
        #expect(status == 0)
        #expect(dryRun.status == 0)
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(applied.stdout.contains("moved 66 partitions of group p2c-crm-to-erp"))
        #expect(after < .seconds(15), "went through \(after) after the worker stopped")
    }

    @Test(
        "A targeted replay maps one document or one company's recent events again, with the same ids and the current map, while the worker runs"
    )
    func targeted() async throws {
        let outcome = try await Blocking.run {
            let broker = try TestBroker()
            defer { broker.stop() }
            let (bootstrap, environment, producer) = (broker.bootstrap, broker.environment, broker.producer)
            func origin(_ company: String, _ index: Int, echo: Bool = false) throws {
                var headers = [
                    KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", "\(company)-origin-\(index)-\(echo)"),
                    KafkaHeader("ce_source", "erp"), KafkaHeader("ce_type", "SalesOrderOrigin.upserted"),
                    KafkaHeader("ce_company", company),
                ]
                if echo { headers.append(KafkaHeader("ce_origin", "p2c")) }
                try producer.send(
                    OutgoingRecord(
                        topic: "erp.origins.changes", key: Array("\(company)/O\(index)".utf8),
                        value: Array(#"{"ORIGINCODE":"O\#(index)"}"#.utf8), headers: headers))
            }
            for index in 1...6 { try origin("USMF", index) }
            try origin("USMF", 3, echo: true)
            _ = try producer.flush(timeout: .seconds(10))
            Thread.sleep(forTimeInterval: 0.05)
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let since = formatter.string(from: Date())
            Thread.sleep(forTimeInterval: 0.05)
            for index in 7...8 { try origin("DEMF", index) }
            try origin("USMF", 9)
            _ = try producer.flush(timeout: .seconds(10))

            var readerConfiguration = ConsumerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrap), groupID: "targeted-reader")
            readerConfiguration.sessionTimeoutMilliseconds = 6_000
            let reader = try KafkaConsumer(configuration: readerConfiguration)
            try reader.subscribe(["crm.origins.inbound"])
            var outputs: [KafkaRecord] = []
            func read(until count: Int) throws {
                let deadline = ContinuousClock.now + .seconds(60)
                while outputs.count < count && ContinuousClock.now < deadline {
                    if case .record(let record)? = try reader.poll(timeout: .milliseconds(100)) {
                        outputs.append(record)
                    }
                }
            }
            let worker = try Spawned(
                p2cBinary, ["worker", "--flow", "erp-to-crm", "--streams", "origins", "--topics", topicsDirectory],
                environment: environment)
            try read(until: 9)
            let first = outputs.count
            // The map changed since: the origins map gains a constant column.
            let config = FileManager.default.temporaryDirectory.appendingPathComponent(
                "targeted-\(UUID().uuidString).json")
            try
                #"{"mapping": {"fieldMaps": [{"map": "Sales order origin codes -> msdyn_salesorderorigins", "fo_field": "none", "map_type": ">>", "ce_column": "msdyn_replayed", "default": "true"}]}}"#
                .write(to: config, atomically: true, encoding: .utf8)
            let replay = ["replay", "--flow", "erp-to-crm", "--topics", topicsDirectory, "--config", config.path]
            let dryRun = try Spawned(p2cBinary, replay + ["--key", "USMF/O3", "--dry-run"], environment: environment)
                .finish()
            let one = try Spawned(p2cBinary, replay + ["--key", "USMF/O3"], environment: environment).finish()
            let company = try Spawned(
                p2cBinary, replay + ["--company", "DEMF", "--since", since], environment: environment
            ).finish()
            try read(until: first + 3)
            // Anything more would be a record the replay should not have touched.
            let quiet = ContinuousClock.now + .seconds(2)
            while ContinuousClock.now < quiet {
                if case .record(let record)? = try reader.poll(timeout: .milliseconds(100)) { outputs.append(record) }
            }
            _ = worker.stop(SIGTERM)
            try reader.close()
            return (Array(outputs.prefix(first)), Array(outputs.dropFirst(first)), dryRun, one, company)
        }
        let (first, replayed, dryRun, one, company) = outcome
        #expect(first.count == 9, "10 origin events, one of them an echo")
        #expect(dryRun.status == 0, "\(dryRun.stderr)")
        #expect(dryRun.stdout.contains("→ crm.origins.inbound USMF/O3"))
        #expect(dryRun.stdout.contains("not synced: echo of a p2c write"))
        #expect(dryRun.stdout.contains("dry run: nothing sent"))
        #expect(one.status == 0, "\(one.stderr)")
        #expect(one.stdout.contains("2 of 10 change events selected; sent 1 to crm.origins.inbound; 1 not synced"))
        #expect(company.status == 0, "\(company.stderr)")
        #expect(company.stdout.contains("2 of "), "\(company.stdout)")
        #expect(company.stdout.contains("sent 2 to crm.origins.inbound"))
        // Exactly the three selected documents came again, with their first ids and the new map.
        let keys = replayed.map { String(decoding: $0.key ?? [], as: UTF8.self) }
        #expect(keys.sorted() == ["DEMF/O7", "DEMF/O8", "USMF/O3"])
        let firstIDs = Dictionary(
            first.map { (String(decoding: $0.key ?? [], as: UTF8.self), $0.header("ce_id")?.text ?? "") }
        ) { a, _ in a }
        for record in replayed {
            let key = String(decoding: record.key ?? [], as: UTF8.self)
            #expect(record.header("ce_id")?.text == firstIDs[key], "\(key)")
            #expect(String(decoding: record.value ?? [], as: UTF8.self).contains(#""msdyn_replayed":true"#))
        }
    }

    @Test(
        "--to-datetime finds the first record at or after the time, also on the mock (by searching record timestamps)")
    func toDatetime() async throws {
        let outcome = try await Blocking.run {
            let broker = try TestBroker()
            defer { broker.stop() }
            let (bootstrap, producer) = (broker.bootstrap, broker.producer)
            let start: Int64 = 1_795_000_000_000
            for index in 0..<6 {
                try producer.send(
                    OutgoingRecord(
                        topic: "erp.origins.changes", partition: 0, key: Array("USMF/O\(index)".utf8),
                        value: [0x7B, 0x7D],
                        timestamp: start + Int64(index) * 1_000))
            }
            _ = try producer.flush(timeout: .seconds(10))
            func dryRun(_ time: String) throws -> String {
                try run(
                    p2cBinary,
                    [
                        "replay", "--flow", "erp-to-crm", "--stream", "origins", "--partition", "0", "--to-datetime",
                        time,
                        "--dry-run", "--bootstrap-servers", bootstrap, "--topics", topicsDirectory,
                    ]
                ).stdout
            }
            // 1_795_000_000_000 ms is 2026-11-18T11:06:40Z.
            return (
                try dryRun("2026-11-18T11:06:42.500Z"), try dryRun("2026-11-18T11:00:00Z"),
                try dryRun("2026-11-18T12:00:00Z")
            )
        }
        #expect(outcome.0.hasPrefix("erp.origins.changes[0]: none → 3\n"))
        #expect(outcome.1.hasPrefix("erp.origins.changes[0]: none → 0\n"))
        #expect(outcome.2.hasPrefix("erp.origins.changes[0]: none → 6\n"))
    }

    @Test(
        "Exactly one target is required, and --to-offset needs one stream",
        arguments: [
            (["replay", "--flow", "erp-to-crm"], "give exactly one of --to-earliest, --to-offset or --to-datetime"),
            (["replay", "--flow", "erp-to-crm", "--to-offset", "1:5"], "--to-offset' needs --stream"),
            (["replay", "--flow", "erp-to-crm", "--stream", "orders", "--to-offset", "x"], "expects partition:offset"),
            (["replay", "--flow", "erp-to-crm", "--to-datetime", "yesterday"], "expects an ISO 8601 time"),
            (
                ["replay", "--flow", "crm-to-erp", "--stream", "invoices", "--to-earliest"],
                "stream invoices does not flow crm-to-erp"
            ),
            (["replay", "--flow", "erp-to-crm", "--company", "USMF"], "--company needs --since"),
            (
                ["replay", "--flow", "erp-to-crm", "--key", "USMF/C1", "--to-earliest"],
                "a targeted replay (--key, --company) does not"
            ),
            (["replay", "--flow", "erp-to-crm", "--key", "USMF/C1", "--since", "soon"], "expects an ISO 8601 time"),
            (
                ["replay", "--flow", "erp-to-crm", "--to-earliest", "--since", "2026-01-01T00:00:00Z"],
                "targeted replay"
            ),
        ] as [([String], String)])
    func usage(arguments: [String], message: String) throws {
        let result = try run(
            p2cBinary, arguments + ["--topics", topicsDirectory, "--bootstrap-servers", "127.0.0.1:1"])
        #expect(result.status == 2)
        #expect(result.stderr.contains(message))
    }
}
