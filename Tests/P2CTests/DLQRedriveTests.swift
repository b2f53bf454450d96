import Foundation
import Kafka
import TestSupport
import Testing

@Suite("p2c dlq redrive", .serialized, .timeLimit(.minutes(3)))
struct DLQRedriveTests {
    @Test(
        "After a fix, a re-drive interrupted by SIGKILL and run again maps every refused event exactly once, and leaves the rest"
    )
    func drainAfterAFix() async throws {
        let total = 400
        let outcome = try await Blocking.run {
            let broker = try TestBroker()
            defer { broker.stop() }
            let (bootstrap, environment, producer) = (broker.bootstrap, broker.environment, broker.producer)
            func config(_ companies: String) throws -> String {
                let file = FileManager.default.temporaryDirectory.appendingPathComponent(
                    "redrive-\(UUID().uuidString).json")
                try #"{"mapping": {"companies": \#(companies)}}"#.write(to: file, atomically: true, encoding: .utf8)
                return file.path
            }
            func worker(_ configuration: String) throws -> Spawned {
                try Spawned(
                    p2cBinary,
                    [
                        "worker", "--flow", "erp-to-crm", "--streams", "origins", "--topics", topicsDirectory,
                        "--config", configuration,
                    ], environment: environment)
            }
            let dlq = ["dlq", "--flow", "erp-to-crm", "--topics", topicsDirectory]
            // Company DEMF is not configured yet: its origins are refused. One malformed event too.
            for index in 0...total {
                try producer.send(
                    OutgoingRecord(
                        topic: "erp.origins.changes", key: Array("DEMF/O\(index)".utf8),
                        value: Array((index == 0 ? "{oops" : #"{"ORIGINCODE":"O\#(index)"}"#).utf8),
                        headers: [
                            KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", "origin-\(index)"),
                            KafkaHeader("ce_source", "erp"), KafkaHeader("ce_type", "SalesOrderOrigin.upserted"),
                            KafkaHeader("ce_company", "DEMF"),
                        ]))
            }
            _ = try producer.flush(timeout: .seconds(10))
            let before = try worker(try config(#"["USMF"]"#))
            var listed = ""
            let deadline = ContinuousClock.now + .seconds(60)
            repeat {
                Thread.sleep(forTimeInterval: 0.5)
                listed = try run(p2cBinary, ["dlq", "list"] + dlq.dropFirst() + ["--bootstrap-servers", bootstrap])
                    .stdout
            } while !listed.contains("erp.origins.changes.dlq: \(total + 1) dead letters")
                && ContinuousClock.now < deadline
            _ = before.stop(SIGTERM)

            // The fix: DEMF is configured. Re-drive its letters, killed after the first transactions.
            let after = try worker(try config(#"["USMF", "DEMF"]"#))
            let interrupted = try Spawned(
                p2cBinary, ["dlq", "redrive"] + dlq.dropFirst() + ["--code", "company_not_allowed", "--batch", "5"],
                environment: environment)
            var progress: [String] = []
            while let line = interrupted.readLine() {
                progress.append(line)
                if line.hasPrefix("re-driven ") { break }
            }
            _ = interrupted.stop(SIGKILL)
            let dryRun = try Spawned(
                p2cBinary, ["dlq", "redrive"] + dlq.dropFirst() + ["--code", "company_not_allowed", "--dry-run"],
                environment: environment
            ).finish()
            let rest = try Spawned(
                p2cBinary, ["dlq", "redrive"] + dlq.dropFirst() + ["--code", "company_not_allowed"],
                environment: environment
            ).finish()
            let again = try Spawned(
                p2cBinary, ["dlq", "redrive"] + dlq.dropFirst() + ["--code", "company_not_allowed"],
                environment: environment
            ).finish()

            var readerConfiguration = ConsumerConfiguration(
                kafka: KafkaConfiguration(bootstrapServers: bootstrap), groupID: "redrive-reader")
            readerConfiguration.sessionTimeoutMilliseconds = 6_000
            let reader = try KafkaConsumer(configuration: readerConfiguration)
            try reader.subscribe(["crm.origins.inbound"])
            var outputs: [KafkaRecord] = []
            var ids: Set<String> = []
            var quietSince = ContinuousClock.now
            let end = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < end && (ids.count < total || ContinuousClock.now - quietSince < .seconds(3)) {
                if case .record(let record)? = try reader.poll(timeout: .milliseconds(100)) {
                    outputs.append(record)
                    ids.insert(record.header("ce_id")?.text ?? "")
                    quietSince = .now
                }
            }
            try reader.close()
            let finalList = try run(p2cBinary, ["dlq", "list"] + dlq.dropFirst() + ["--bootstrap-servers", bootstrap])
            _ = after.stop(SIGTERM)
            return (listed, progress, dryRun, rest, again, outputs, finalList.stdout)
        }
        let (listed, progress, dryRun, rest, again, outputs, finalList) = outcome
        #expect(listed.contains("company_not_allowed: \(total)"), "\(listed)")
        #expect(listed.contains("malformed_json: 1"))
        #expect(progress.first?.hasPrefix("\(total) of \(total + 1) dead letters selected") == true, "\(progress)")
        // Killed midway: some letters were done, the rest is what the second run selects.
        let left = dryRun.stdout.split(separator: "\n").first.flatMap { Int($0.split(separator: " ")[0]) } ?? -1
        #expect(left > 0 && left < total, "\(dryRun.stdout)")
        #expect(dryRun.stdout.contains("dry run: nothing re-driven"))
        #expect(rest.status == 0, "\(rest.stderr)")
        #expect(rest.stdout.contains("re-driven \(left)/\(left)"), "\(rest.stdout)")
        #expect(again.stdout.hasPrefix("0 of 1 dead letters selected"), "\(again.stdout)")
        // Every refused origin reached the CRM once, with the id of its first reading.
        let keys = Set(outputs.map { String(decoding: $0.key ?? [], as: UTF8.self) })
        #expect(keys == Set((1...total).map { "DEMF/O\($0)" }))
        let ids = outputs.compactMap { $0.header("ce_id")?.text }
        #expect(Set(ids).count == total)
        #expect(ids.allSatisfy { $0.hasPrefix("erp.origins.changes/") && $0.hasSuffix("#0") }, "\(ids.prefix(3))")
        withKnownIssue(
            "librdkafka 2.0.2's mock shows the killed run's open transaction to read_committed readers",
            isIntermittent: true
        ) {
            #expect(outputs.count == total)
        }
        // The malformed event is still there; the re-driven ones are gone from the list.
        #expect(finalList.contains("erp.origins.changes.dlq: 1 dead letter (\(total) re-driven before, not shown)"))
        #expect(finalList.contains("malformed_json: 1"))
    }
}
