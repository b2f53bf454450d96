import Connectors
import Foundation
import Kafka
import ProspectToCash
import Runtime
import TestSupport
import Testing

@Suite(
    "p2c apply and capture --side erp, as a deployment runs them against p2c simulate finance-operations",
    .serialized, .timeLimit(.minutes(2)))
struct FinanceOperationsCommandTests {
    let applyClient = "5a1e0c3d-0000-4000-8000-00000000f001"
    let captureClient = "5a1e0c3d-0000-4000-8000-00000000f002"
    let personClient = "5a1e0c3d-0000-4000-8000-00000000f003"

    @Test(
        "An apply process writes an inbound customer into F&O; the capture process receives the data events, the apply identity's write as an echo and a person's as a change; both serve probes and metrics and end with 0 on SIGTERM within 10 s"
    )
    func applyAndCaptureProcesses() async throws {
        let broker = try TestBroker()
        defer { broker.stop() }
        let webhookPort = freePort()
        let simulator = try SimulatorProcess([
            "finance-operations", "--client", "\(applyClient):apply-secret", "--client",
            "\(captureClient):capture-secret", "--client", "\(personClient):person-secret", "--data-events",
            "CustomersV3:http://127.0.0.1:\(webhookPort)/fno:events-key",
        ])
        defer { simulator.stop() }
        let (url, tenant) = (simulator.url, simulator.tenant)
        func connection(_ client: String, _ secret: String) -> [String: String] {
            [
                "P2C_FNO_URL": url, "P2C_FNO_TENANT_ID": tenant, "P2C_FNO_CLIENT_ID": client,
                "P2C_FNO_CLIENT_SECRET": secret, "P2C_FNO_AUTHORITY": url,
            ]
        }
        let captureMetrics = freePort()
        let capture = try Spawned(
            p2cBinary,
            [
                "capture", "--side", "erp", "--topics", topicsDirectory, "--webhook-port", String(webhookPort),
                "--metrics-port", String(captureMetrics),
            ],
            environment: broker.environment.merging(connection(captureClient, "capture-secret")) { $1 }.merging([
                "P2C_CAPTURE_WEBHOOK_KEY": "events-key", "P2C_FNO_APPLY_CLIENT_IDS": applyClient,
            ]) { $1 })
        let applyMetrics = freePort()
        let apply = try Spawned(
            p2cBinary, ["apply", "--side", "erp", "--topics", topicsDirectory, "--metrics-port", String(applyMetrics)],
            environment: broker.environment.merging(connection(applyClient, "apply-secret")) { $1 })
        _ = try broker.producer.send(
            OutgoingRecord(
                topic: "erp.customers.inbound", key: Array("USMF/US-042".utf8),
                value: Array(#"{"CUSTOMERACCOUNT":"US-042","CREDITLIMIT":100,"dataAreaId":"USMF"}"#.utf8),
                headers: [
                    KafkaHeader("ce_type", "CustomersV3.upserted"), KafkaHeader("ce_id", "e-1"),
                    KafkaHeader("ce_company", "USMF"),
                ]))
        _ = try broker.producer.flush(timeout: .seconds(10))
        var metrics = ""
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            metrics = await get(applyMetrics, "/metrics")?.body ?? ""
            if metrics.contains(#"p2c_apply_written_total{side="erp"} 1"#) { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(metrics.contains(#"p2c_apply_written_total{side="erp"} 1"#))
        #expect(metrics.contains(#"p2c_fno_requests_total{side="erp",kind="metadata"} 1"#))
        #expect(await get(applyMetrics, "/readyz")?.status == 200)
        #expect(await get(captureMetrics, "/readyz")?.status == 200)

        // A person's customer in another company.
        let person = simulator.client(personClient, "person-secret", api: .financeOperations)
        let created = try await person.send(
            "POST", "CustomersV3?cross-company=true",
            body: ["dataAreaId": "DEMF", "CustomerAccount": "DE-7", "SalesMemo": "walk-in"])
        #expect(created.status == 201)
        var changes: [KafkaRecord] = []
        while ContinuousClock.now < deadline {
            changes = try await AsyncBridge.onThread { try broker.read("erp.customers.changes", partitions: 6) }
            if changes.count >= 2 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let echo = try #require(changes.first { $0.header("ce_subject")?.text == "USMF/US-042" })
        #expect(echo.header("ce_origin")?.text == "p2c", "the apply identity's write is an echo")
        let change = try #require(changes.first { $0.header("ce_subject")?.text == "DEMF/DE-7" })
        #expect(change.header("ce_origin") == nil)
        #expect(change.header("ce_type")?.text == "CustomersV3.upserted")
        #expect((try JSONParser.parse(change.value ?? [])).objectValue?["SALESMEMO"] == "walk-in")
        let captured = await get(captureMetrics, "/metrics")?.body ?? ""
        #expect(captured.contains(#"p2c_capture_echoes_total{side="erp",mode="webhook"} 1"#), "\(captured)")

        #expect(apply.stop(SIGTERM, within: .seconds(10))?.status == 0)
        #expect(capture.stop(SIGTERM, within: .seconds(10))?.status == 0)
        let logs = apply.finish().stderr + capture.finish().stderr
        #expect(logs.contains(#""msg":"fno connected""#))
        #expect(!logs.contains("apply-secret") && !logs.contains("capture-secret"), "no secret in a log")
    }
}
