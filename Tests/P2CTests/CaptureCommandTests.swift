import Connectors
import Foundation
import Kafka
import OData
import ProspectToCash
import Runtime
import TestSupport
import Testing

@Suite("p2c capture, as a deployment runs it against p2c simulate dataverse", .serialized, .timeLimit(.minutes(3)))
struct CaptureCommandTests {
    let captureClient = "7c1e0c3d-0000-4000-8000-00000000c001"
    let personClient = "7c1e0c3d-0000-4000-8000-00000000c002"

    @Test(
        "kill -9 of a capture process in the middle of a snapshot and of a delta round: after a restart every change is published, none twice"
    )
    func killDuringSnapshotAndDelta() async throws {
        let broker = try TestBroker()
        defer { broker.stop() }
        let simulator = try SimulatorProcess([
            "dataverse", "--client", "\(captureClient):capture-secret", "--client",
            "\(personClient):person-secret", "--faults", "latency=100ms",
        ])
        defer { simulator.stop() }
        let (url, tenant) = (simulator.url, simulator.tenant)
        let person = simulator.client(personClient, "person-secret", api: .dataverse)
        let accounts = 200
        func batch(_ numbers: ClosedRange<Int>, _ body: String) async throws {
            let changes = ODataBatch([
                .changeSet(
                    numbers.map { number in
                        ODataMessage(
                            method: "PATCH", url: "\(url)/api/data/v9.2/accounts(accountnumber='US-\(number)')",
                            headers: HTTPHeaders([("Content-Type", "application/json")]), body: Array(body.utf8))
                    })
            ]).encoded()
            let answer = try await person.sendRaw(
                "POST", "$batch", body: changes.body, headers: HTTPHeaders([("Content-Type", changes.contentType)]))
            #expect(answer.status == 200)
        }
        try await batch(1...accounts, #"{"customertypecode":3}"#)
        let environment = broker.environment.merging([
            "P2C_DATAVERSE_URL": url, "P2C_DATAVERSE_TENANT_ID": tenant, "P2C_DATAVERSE_CLIENT_ID": captureClient,
            "P2C_DATAVERSE_CLIENT_SECRET": "capture-secret", "P2C_DATAVERSE_AUTHORITY": url,
            "P2C_CAPTURE_COMPANY": "USMF", "P2C_CAPTURE_PAGE_SIZE": "2", "P2C_STREAMS": "customers",
        ]) { $1 }
        let metricsPort = freePort()
        func start() throws -> Spawned {
            try Spawned(
                p2cBinary,
                [
                    "capture", "--topics", topicsDirectory, "--poll-interval-ms", "200", "--metrics-port",
                    String(metricsPort),
                ],
                environment: environment)
        }
        // What the running process has published: its own counter, cheap enough to watch closely.
        @Sendable func publishedByProcess() -> Int {
            guard let text = LocalHTTP.get(port: metricsPort, path: "/metrics", timeoutSeconds: 1)?.body,
                let line = text.split(separator: "\n").first(where: { $0.hasPrefix("p2c_capture_published_total{") })
            else { return 0 }
            return Int(line.split(separator: " ").last ?? "") ?? 0
        }
        // SIGKILLs `process` as soon as it has published `count`, watching from a thread of its own
        // (the test's tasks can wait seconds for a turn on a loaded machine); false when it never did.
        func kill(_ process: Spawned, whenPublished count: Int) async throws -> Bool {
            try await AsyncBridge.onThread {
                let deadline = ContinuousClock.now + .seconds(60)
                while publishedByProcess() < count && ContinuousClock.now < deadline { usleep(10_000) }
                guard publishedByProcess() >= count else { return false }
                return process.stop(SIGKILL) != 0
            }
        }
        @Sendable func published() throws -> [KafkaRecord] { try broker.read("crm.customers.changes", partitions: 6) }
        func waitFor(_ count: Int, within limit: Duration) async throws {
            let deadline = ContinuousClock.now + limit
            while try await AsyncBridge.onThread({ try published().count }) < count && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
            }
        }

        // The snapshot: killed once part of it is published.
        var capture = try start()
        #expect(try await kill(capture, whenPublished: 40))
        let before = try published().count
        #expect(before < accounts, "killed in the middle of the snapshot")
        capture = try start()
        try await waitFor(accounts, within: .seconds(90))

        // A delta round of 150 updates, made at once in one $batch: killed while it is read. First
        // the snapshot ends (the mock shows the killed process's aborted records, so Kafka's count
        // can reach 200 early): the process's counter stands still for 2 s.
        func standingStill() async throws -> Int {
            try await AsyncBridge.onThread {
                var last = publishedByProcess()
                var since = ContinuousClock.now
                let deadline = ContinuousClock.now + .seconds(90)
                while ContinuousClock.now - since < .seconds(2) && ContinuousClock.now < deadline {
                    usleep(100_000)
                    let now = publishedByProcess()
                    if now != last { (last, since) = (now, ContinuousClock.now) }
                }
                return last
            }
        }
        // Read 2 changes a page, a request (100 ms) and a Kafka transaction each: killed once part is
        // published, 70 pages before the round ends. On a loaded machine the watch can see the count
        // late and find the round done: then another round, up to three.
        var rounds = 0
        var landedInside = false
        while !landedInside && rounds < 3 {
            rounds += 1
            let base = try await standingStill()
            try await batch(1...150, #"{"customertypecode":3,"description":"updated-\#(rounds)"}"#)
            #expect(try await kill(capture, whenPublished: base + 10))
            let afterKill = try published().count
            landedInside = afterKill < accounts + 150 * rounds
            capture = try start()
            try await waitFor(accounts + 150 * rounds, within: .seconds(60))
        }
        #expect(landedInside, "a kill landed inside a delta round (\(rounds) rounds)")
        #expect(capture.stop(SIGTERM) == 0)

        let records = try published()
        let ids = records.compactMap { $0.header("ce_id")?.text }
        #expect(Set(ids).count == ids.count, "none published twice")
        #expect(records.count == accounts + 150 * rounds)
        let numbers = Set(
            records.compactMap { (try? JSONParser.parse($0.value ?? []))?.objectValue?["accountnumber"]?.stringValue })
        #expect(numbers.count == accounts, "no row lost")
        for round in 1...rounds {
            let updated = records.filter {
                (try? JSONParser.parse($0.value ?? []))?.objectValue?["description"] == .string("updated-\(round)")
            }
            #expect(updated.count == 150, "no change of round \(round) lost")
        }
    }

    @Test(
        "A missing company, a bad mode or poll interval, or a missing Dataverse setting fails with one line naming it and exit 2",
        arguments: [
            ([:], "company is required: --company, P2C_CAPTURE_COMPANY or \"company\" in the file"),
            (
                ["P2C_CAPTURE_COMPANY": "USMF", "P2C_CAPTURE_MODE": "push"],
                "P2C_CAPTURE_MODE must be one of poll, webhook, got 'push'"
            ),
            (
                ["P2C_SIDE": "erp", "P2C_CAPTURE_MODE": "poll"],
                "mode poll is Dataverse change tracking; erp captures F&O's data events (webhook)"
            ),
            (
                ["P2C_CAPTURE_COMPANY": "USMF", "P2C_CAPTURE_POLL_INTERVAL_MS": "5"],
                "P2C_CAPTURE_POLL_INTERVAL_MS must be an integer from 100 to 3600000, got '5'"
            ),
            (
                ["P2C_SIDE": "erp", "P2C_CAPTURE_WEBHOOK_MAX_REQUESTS": "0"],
                "P2C_CAPTURE_WEBHOOK_MAX_REQUESTS must be an integer from 1 to 256, got '0'"
            ),
            (
                ["P2C_CAPTURE_COMPANY": "USMF", "P2C_LISTEN_ADDRESS": "everywhere"],
                "P2C_LISTEN_ADDRESS must be an IPv4 address (0.0.0.0: every interface), got 'everywhere'"
            ),
            (
                [
                    "P2C_SIDE": "erp", "P2C_FNO_URL": "https://usmf.operations.dynamics.com", "P2C_FNO_TENANT_ID": "t",
                    "P2C_FNO_CLIENT_ID": "c", "P2C_FNO_CLIENT_SECRET": "s", "P2C_CAPTURE_WEBHOOK_KEY": "k",
                    "P2C_CAPTURE_WEBHOOK_PORT": "http",
                ], "P2C_CAPTURE_WEBHOOK_PORT must be an integer from 0 to 65535, got 'http'"
            ),
            (
                ["P2C_CAPTURE_COMPANY": "USMF", "P2C_CAPTURE_RECHECK_MS": "2000"],
                "recheckMs applies to --side erp (F&O's data events, read by their key)"
            ),
            (["P2C_CAPTURE_COMPANY": "USMF"], "P2C_DATAVERSE_URL (or dataverse.url in the file) is required"),
        ] as [([String: String], String)])
    func badSettings(environment: [String: String], message: String) throws {
        var clean = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("P2C_") }
        clean["P2C_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
        let result = try Spawned(
            p2cBinary, ["capture", "--topics", topicsDirectory], environment: clean.merging(environment) { $1 }
        ).finish()
        #expect(result.status == 2)
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
    }
}
