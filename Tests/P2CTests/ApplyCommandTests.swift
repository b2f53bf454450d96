import Foundation
import Kafka
import Runtime
import TestSupport
import Testing

@Suite("p2c apply, as a deployment runs it against p2c simulate dataverse", .serialized, .timeLimit(.minutes(3)))
struct ApplyCommandTests {
    let applyClient = "5a1e0c3d-0000-4000-8000-00000000a991"
    let personClient = "5a1e0c3d-0000-4000-8000-00000000b992"

    /// The environment apply reads its Dataverse connection from, for a simulator at `url`.
    private func environment(_ url: String, tenant: String, secret: String = "apply-secret") -> [String: String] {
        [
            "P2C_DATAVERSE_URL": url, "P2C_DATAVERSE_TENANT_ID": tenant, "P2C_DATAVERSE_CLIENT_ID": applyClient,
            "P2C_DATAVERSE_CLIENT_SECRET": secret, "P2C_DATAVERSE_AUTHORITY": url,
        ]
    }

    @Test(
        "An order whose customer Dataverse lacks is dead-lettered by apply after referenceWaitMs; dlq list shows it in crm.orders.inbound.dlq; once the customer exists, dlq redrive puts it back and apply writes it"
    )
    func applyLetterRedriven() async throws {
        let broker = try TestBroker()
        defer { broker.stop() }
        let simulator = try SimulatorProcess([
            "dataverse", "--client", "\(applyClient):apply-secret", "--client", "\(personClient):person-secret",
        ])
        defer { simulator.stop() }
        _ = try broker.producer.send(
            OutgoingRecord(
                topic: "crm.orders.inbound", key: Array("USMF/S-404".utf8),
                value: Array(#"{"msdyn_salesordernumber":"S-404","customerid":{"accountnumber":"US-404"}}"#.utf8),
                headers: [KafkaHeader("ce_type", "salesorder.upserted"), KafkaHeader("ce_id", "e-404")]))
        _ = try broker.producer.flush(timeout: .seconds(10))
        let apply = try Spawned(
            p2cBinary, ["apply", "--side", "crm", "--topics", topicsDirectory],
            environment: broker.environment.merging(environment(simulator.url, tenant: simulator.tenant)) { $1 }
                .merging(["P2C_APPLY_REFERENCE_WAIT_MS": "1000"]) { $1 })
        defer { _ = apply.stop(SIGTERM) }
        let dlq = ["--flow", "erp-to-crm", "--topics", topicsDirectory, "--bootstrap-servers", broker.bootstrap]
        var listed = ""
        let deadline = ContinuousClock.now + .seconds(60)
        while !listed.contains("crm.orders.inbound.dlq: 1 dead letter") && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(500))
            listed = try await AsyncBridge.onThread { try run(p2cBinary, ["dlq", "list"] + dlq).stdout }
        }
        #expect(listed.contains("crm.orders.inbound.dlq: 1 dead letter"), "\(listed)")
        #expect(listed.contains("reference_missing"))
        let filtered = try await AsyncBridge.onThread {
            try run(p2cBinary, ["dlq", "list", "--stream", "orders", "--key", "USMF/S-405"] + dlq).stdout
        }
        #expect(filtered.contains("crm.orders.inbound.dlq: 0 dead letters"), "\(filtered)")

        // The fix: the customer now exists in Sales; the letter goes back and is written.
        let person = simulator.client(personClient, "person-secret", api: .dataverse)
        #expect(
            try await person.send("PATCH", "accounts(accountnumber='US-404')", body: ["name": "Late Ltd."]).status
                == 204)
        let other = try await AsyncBridge.onThread {
            try run(p2cBinary, ["dlq", "redrive", "--key", "USMF/S-405", "--dry-run"] + dlq)
        }
        #expect(other.stdout.hasPrefix("0 of 1 dead letters selected"), "\(other.stdout)")
        let redrive = try await AsyncBridge.onThread {
            try run(
                p2cBinary,
                ["dlq", "redrive", "--code", "reference_missing", "--stream", "orders", "--key", "USMF/S-404"] + dlq)
        }
        #expect(redrive.stdout.hasPrefix("1 of 1 dead letters selected"), "\(redrive.stdout)")
        #expect(redrive.status == 0, "\(redrive.stderr)")
        var written = false
        while !written && ContinuousClock.now < deadline + .seconds(30) {
            try await Task.sleep(for: .milliseconds(500))
            written = try await person.send("GET", "salesorders(msdyn_salesordernumber='S-404')").status == 200
        }
        #expect(written, "apply wrote the re-driven order")
        let after = try await AsyncBridge.onThread { try run(p2cBinary, ["dlq", "list"] + dlq).stdout }
        #expect(after.contains("crm.orders.inbound.dlq: 0 dead letters"), "\(after)")
    }

    @Test(
        "An apply process writes an inbound account into Dataverse, serves its probes and metrics, and ends with 0 on SIGTERM within 10 s"
    )
    func applyProcess() async throws {
        let broker = try TestBroker()
        defer { broker.stop() }
        let simulator = try Spawned(
            p2cBinary,
            ["simulate", "dataverse", "--client", "\(applyClient):apply-secret", "--client", "\(personClient):other"])
        defer { _ = simulator.stop() }
        let url = simulator.readLine() ?? ""
        let tenant = String((simulator.readLine() ?? "").dropFirst("tenant ".count))
        _ = try broker.producer.send(
            OutgoingRecord(
                topic: "crm.customers.inbound", key: Array("USMF/US-042".utf8),
                value: Array(#"{"accountnumber":"US-042","name":"O'Brien Ltd."}"#.utf8),
                headers: [KafkaHeader("ce_type", "account.upserted"), KafkaHeader("ce_id", "e-1")]))
        _ = try broker.producer.flush(timeout: .seconds(10))
        let port = freePort()
        let apply = try Spawned(
            p2cBinary, ["apply", "--side", "crm", "--topics", topicsDirectory, "--metrics-port", String(port)],
            environment: broker.environment.merging(environment(url, tenant: tenant)) { $1 })
        var metrics = ""
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            metrics = await get(port, "/metrics")?.body ?? ""
            if metrics.contains(#"p2c_apply_written_total{side="crm"} 1"#) { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(metrics.contains(#"p2c_apply_written_total{side="crm"} 1"#))
        #expect(metrics.contains("p2c_http_requests_total"))
        #expect(metrics.contains(#"p2c_dataverse_requests_total{side="crm",kind="table_definitions"}"#))
        #expect(await get(port, "/readyz")?.status == 200)
        let stopped = apply.stop(SIGTERM, within: .seconds(10))
        #expect(stopped?.status == 0)
        let log = apply.finish().stderr
        #expect(log.contains(#""msg":"dataverse connected""#))
        #expect(!log.contains("apply-secret"), "the client secret never appears in a log")
    }

    @Test(
        "A missing or bad Dataverse setting, a secret in the file or a refused secret fails with one line naming it and exit 2",
        arguments: [
            ([:], "P2C_DATAVERSE_URL (or dataverse.url in the file) is required"),
            (["P2C_DATAVERSE_URL": "ftp://x"], "P2C_DATAVERSE_URL: not an http(s) URL"),
            (
                ["P2C_DATAVERSE_URL": "https://org.crm.dynamics.com", "P2C_DATAVERSE_TENANT_ID": "t"],
                "P2C_DATAVERSE_CLIENT_ID (or dataverse.clientId in the file) is required"
            ),
            (
                [
                    "P2C_DATAVERSE_URL": "https://org.crm.dynamics.com", "P2C_DATAVERSE_TENANT_ID": "t",
                    "P2C_DATAVERSE_CLIENT_ID": "c",
                ], "P2C_DATAVERSE_CLIENT_SECRET (or P2C_DATAVERSE_CLIENT_SECRET_FILE) is required"
            ),
            (
                ["P2C_APPLY_MAX_CONCURRENCY": "0"],
                "P2C_APPLY_MAX_CONCURRENCY must be an integer from 1 to 1000, got '0'"
            ),
            (["P2C_REFERENCE_WAIT_MS": "1000"], "P2C_REFERENCE_WAIT_MS is now P2C_APPLY_REFERENCE_WAIT_MS"),
            (
                [
                    "P2C_DATAVERSE_URL": "https://org.crm.dynamics.com", "P2C_DATAVERSE_TENANT_ID": "t",
                    "P2C_DATAVERSE_CLIENT_ID": "a,b", "P2C_DATAVERSE_CLIENT_SECRET": "only-one",
                ], "P2C_DATAVERSE_CLIENT_ID names 2 identities but the secrets are 1"
            ),
            (["P2C_SIDE": "sap"], "P2C_SIDE must be one of crm, erp, got 'sap'"),
            (["P2C_SIDE": "erp"], "P2C_FNO_URL (or fno.url in the file) is required"),
        ] as [([String: String], String)])
    func badSettings(environment: [String: String], message: String) throws {
        var clean = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("P2C_") }
        clean["P2C_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
        let process = try Spawned(
            p2cBinary, ["apply", "--topics", topicsDirectory], environment: clean.merging(environment) { $1 })
        let result = process.finish()
        #expect(result.status == 2)
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test(
        "A client secret in the configuration file, or a wrong one at the token endpoint, is refused at start with exit 2"
    )
    func secrets() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("apply-\(UUID()).json")
        try Data(#"{"dataverse": {"url": "https://org.crm.dynamics.com", "clientSecret": "x"}}"#.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let inFile = try Spawned(p2cBinary, ["apply", "--config", file.path, "--topics", topicsDirectory]).finish()
        #expect(inFile.status == 2)
        #expect(inFile.stderr.contains("dataverse.clientSecret: secrets are not read from the file"))

        let simulator = try Spawned(p2cBinary, ["simulate", "dataverse", "--client", "\(applyClient):apply-secret"])
        defer { _ = simulator.stop() }
        let url = simulator.readLine() ?? ""
        let tenant = String((simulator.readLine() ?? "").dropFirst("tenant ".count))
        let wrong = try Spawned(
            p2cBinary, ["apply", "--topics", topicsDirectory, "--bootstrap-servers", "127.0.0.1:1"],
            environment: environment(url, tenant: tenant, secret: "wrong")
        ).finish()
        #expect(wrong.status == 2)
        #expect(wrong.stderr.contains("invalid_client"))
        #expect(wrong.stderr.split(separator: "\n").count == 1)
    }
}
