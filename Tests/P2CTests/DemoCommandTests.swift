import Foundation
import Kafka
import TestSupport
import Testing

/// The main job, as a new user runs it: the whole product on one machine must end with both
/// systems in agreement, even when a worker of each flow is killed halfway.
@Suite("p2c demo", .serialized, .timeLimit(.minutes(4)))
struct DemoCommandTests {
    @Test(
        "The Kafka-only story (--kafka) with a worker of each flow SIGKILLed halfway ends with both systems agreeing and exit 0"
    )
    func demoWithChaos() async throws {
        let (status, output, errors) = try await Blocking.run {
            try run(
                p2cBinary,
                [
                    "demo", "--kafka", "--orders", "60", "--workers", "2", "--seed", "7", "--chaos", "--timeout", "150",
                    "--topics",
                    topicsDirectory,
                ])
        }
        #expect(status == 0, "\(output)\n\(errors.suffix(3_000))\n\(workerLogs(output))")
        #expect(output.contains("chaos: killed worker"))
        #expect(output.contains("mismatches: 0"))
        #expect(output.contains("dead letters:"))
        #expect(!output.contains("NOT EXPECTED"))
        #expect(output.contains("60 invoiced in the CRM"))
        #expect(output.contains("result: the systems agree"))
        // Every stream of the classic generation is reconciled, with records on both sides; the
        // party streams are not part of it.
        #expect(!output.contains("  parties "))
        for stream in ["customers", "contacts", "products", "quotes", "orders", "invoices", "origins"] {
            let row = output.split(separator: "\n").first { $0.hasPrefix("  \(stream) ") }
            let numbers = row?.split(separator: " ").dropFirst().compactMap { Int($0) } ?? []
            #expect(
                numbers.count == 5 && numbers[0] > 0 && numbers[1] > 0 && numbers[2] > 0,
                "\(row ?? "no row for \(stream)")")
        }
    }

    @Test(
        "The party generation's story: customers, then their parties, postal and electronic addresses, made on both sides, reach the other side and reconcile field by field"
    )
    func partyStory() async throws {
        let (status, output, errors) = try await Blocking.run {
            try run(
                p2cBinary,
                [
                    "demo", "--kafka", "--orders", "30", "--workers", "1", "--generation", "party", "--timeout", "150",
                    "--topics",
                    topicsDirectory,
                ])
        }
        #expect(status == 0, "\(output)\n\(errors.suffix(3_000))\n\(workerLogs(output))")
        #expect(output.contains("party maps"))
        #expect(output.contains("result: the systems agree"))
        let rows = output.split(separator: "\n")
        for stream in ["customers", "parties", "postaladdresses", "electronicaddresses"] {
            let row = rows.first { $0.hasPrefix("  \(stream) ") }
            let numbers = row?.split(separator: " ").dropFirst().compactMap { Int($0) } ?? []
            #expect(
                numbers.count == 5 && numbers[0] > 0 && numbers[1] > 0 && numbers[2] > 0 && numbers[4] > 0,
                "\(row ?? "no row for \(stream)")")
        }
        // Each side made customers of its own, each with a party: both directions are compared.
        let parties = rows.first { $0.hasPrefix("  parties ") }?.split(separator: " ").compactMap { Int($0) } ?? []
        #expect(parties.count == 5 && parties[2] == parties[0] + parties[1], "\(parties)")
    }

    @Test(
        "Over HTTP: a clerk's products and customers in F&O, sellers' accounts, prospects (half of them signing), quotes (half of them won, made orders) and orders in Sales, the ERP's prices, confirmations, shipments and invoices (each order's status changed twice, its data events in any order), through capture, workers and apply as processes, a capture and an apply member killed half-way; a planted dead letter; reconciled through both APIs, exit 0"
    )
    func demoOverHTTP() async throws {
        let (status, output, errors) = try await Blocking.run {
            try run(
                p2cBinary, ["demo", "--orders", "30", "--chaos", "--timeout", "150", "--topics", topicsDirectory])
        }
        #expect(status == 0, "\(output)\n\(errors.suffix(3_000))")
        #expect(output.contains("result: the systems agree, and every dead letter is a planted one"))
        #expect(output.contains("dead letters: 2 (the story planted 2"))
        #expect(!output.contains("NOT EXPECTED"))
        #expect(output.contains("chaos: SIGKILL capture crm"))
        #expect(output.contains("chaos: SIGKILL apply erp"))
        #expect(!output.contains("  fleet: "), "no member ended on its own or exited other than 0")
        let rows = output.split(separator: "\n")
        // 10 customers and 2 prospects, one of which signs; 6 quotes with 12 lines, 3 of them won (held
        // back from the ERP, which keeps the quote) and made orders with 6 lines: 33 orders with 66
        // lines, invoiced with as many.
        for (stream, crm, erp, heldBack) in [
            ("customers", 12, 11, 1), ("products", 6, 6, 0), ("quotes", 18, 18, 3), ("orders", 99, 99, 0),
            ("invoices", 99, 99, 0),
        ] {
            let numbers =
                rows.first { $0.hasPrefix("  \(stream) ") }?.split(separator: " ").compactMap { Int($0) } ?? []
            // CRM records, ERP records, compared, missing, different, held back.
            #expect(numbers.count == 6, "\(stream): \(numbers)")
            guard numbers.count == 6 else { continue }
            #expect(numbers[0] == crm && numbers[1] == erp && numbers[5] == heldBack, "\(stream): \(numbers)")
            #expect(numbers[3] == 0 && numbers[4] == 0, "\(stream): \(numbers)")
        }
    }

    /// The last lines of every worker's log, from the folder the report names.
    private func workerLogs(_ output: String) -> String {
        guard
            let line = output.split(separator: "\n").first(where: {
                $0.contains("worker logs: ") || $0.contains("fleet logs: ")
            }),
            let folder = line.split(separator: " ").last.map(String.init),
            let names = try? FileManager.default.contentsOfDirectory(atPath: folder)
        else { return "no worker logs" }
        return names.sorted().filter { $0.hasSuffix(".log") }.map { name in
            let text = (try? String(contentsOfFile: "\(folder)/\(name)", encoding: .utf8)) ?? ""
            return "== \(name)\n" + text.split(separator: "\n").suffix(15).joined(separator: "\n")
        }.joined(separator: "\n")
    }

    @Test("Bad demo flags fail with one line and exit 2")
    func badFlags() throws {
        for arguments in [
            ["demo", "--orders", "5"], ["demo", "--workers", "0"], ["demo", "--seed", "x"], ["demo", "--bogus"],
            ["demo", "--generation", "gab"], ["demo", "--generation", "party"],
        ] {
            let (status, _, errors) = try run(p2cBinary, arguments)
            #expect(status == 2, "\(arguments)")
            #expect(errors.split(separator: "\n").count == 1, "\(arguments): \(errors)")
        }
    }
}
