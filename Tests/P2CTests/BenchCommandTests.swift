import Foundation
import Kafka
import TestSupport
import Testing

/// `p2c bench` measures, it does not judge in tests: a small run must produce real numbers for the
/// worker and its pass-through baseline, and latency read back from the output topic.
@Suite("p2c bench", .serialized, .timeLimit(.minutes(3)))
struct BenchCommandTests {
    @Test("A small bench run reports events/s and CPU per event for both the pass-through and the mapping worker")
    func smallRun() async throws {
        let (status, output, errors) = try await Blocking.run {
            try run(
                p2cBinary,
                [
                    "bench", "--events", "600", "--workers", "1", "--delivery", "at-least-once", "--repeat", "2",
                    "--rate", "200", "--latency-seconds", "2", "--topics", topicsDirectory,
                ])
        }
        #expect(status == 0, "\(output)\n\(errors.suffix(2_000))")
        let row = output.split(separator: "\n").first { $0.hasPrefix("  at-least-once  1") }
        let numbers = row?.split(separator: " ").compactMap { Double($0) } ?? []
        // workers, raw events/s, raw CPU, mapped events/s, mapped CPU, CPU ratio, rate ratio, RSS
        #expect(numbers.count == 8, "\(row ?? "no row")")
        if numbers.count == 8 {
            #expect(numbers[1] > 0 && numbers[2] > 0 && numbers[3] > 0 && numbers[4] > 0)
            #expect(numbers[7] > 1, "a worker's RSS is more than 1 MiB")
        }
        #expect(output.contains("medians of 2 runs a side"))
        #expect(
            output.contains(
                "end-to-end latency, at-least-once, 1 worker at 200 events/s for 2 s (fetch.wait.max.ms 1): p50"))
        #expect(output.contains("worker resident memory at most"))
    }

    @Test(
        "A small bootstrap bench loads every record it seeded into Kafka, then customers through the whole chain into Dataverse with one and two identities, and again with the limits' window scaled down until the execution budget holds the load, and reports records/s beside dual-write's ceiling"
    )
    func bootstrapRun() throws {
        let (status, output, errors) = try run(
            p2cBinary,
            [
                "bench", "--bootstrap", "--documents", "60", "--page-size", "50", "--customers", "40", "--window", "2",
                "--apply-seconds", "5",
            ])
        #expect(status == 0, "\(errors.suffix(400))")
        #expect(output.contains("bootstrap: 300 records in"), "\(output)")
        #expect(output.contains("records/s (complete)"))
        #expect(output.contains("40 customers, 1 Dataverse identity: "), "\(output)")
        #expect(output.contains("40 customers, 2 Dataverse identities: "))
        #expect(
            output.contains("budget-bound: the Dataverse limits' window scaled to 2 s (40 requests, 8 s of execution)"))
        #expect(output.contains("3640 customers, 1 Dataverse identity: "), "\(output)")
        #expect(output.contains("7280 customers, 2 Dataverse identities: "))
        #expect(output.contains("of the 800 writes/s the budget allows"))
    }

    @Test(
        "A small end-to-end bench: accounts made in the simulated Sales reach the simulated F&O (polled and by webhook) and customers made in F&O reach Sales, with p50 and p99"
    )
    func endToEndRun() throws {
        let (status, output, errors) = try run(p2cBinary, ["bench", "--e2e", "--changes", "10"])
        #expect(status == 0, "\(errors.suffix(400))")
        #expect(output.contains("change tracking, poll interval 1000 ms: p50"), "\(output)")
        #expect(output.contains("webhooks: p50"))
        #expect(output.contains("by data events (erp-to-crm worker, apply into Dataverse): p50"))
    }

    @Test("Bad bench flags fail with one line and exit 2")
    func badFlags() throws {
        for arguments in [
            ["bench", "--workers", "0"], ["bench", "--delivery", "twice"], ["bench", "--events", "1"],
            ["bench", "--repeat", "0"], ["bench", "--apply", "--side", "sap"],
            ["bench", "--bootstrap", "--documents", "1"],
        ] {
            let (status, _, errors) = try run(p2cBinary, arguments)
            #expect(status == 2, "\(arguments)")
            #expect(errors.split(separator: "\n").count == 1, "\(arguments): \(errors)")
        }
    }
}
