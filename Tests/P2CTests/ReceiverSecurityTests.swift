import Connectors
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Synchronization
import TestSupport
import Testing

/// A client that sends exactly the bytes an attacker would, on a socket of its own.
private enum Raw {
    static func connect(_ port: Int) -> Int32? { LocalHTTP.connect(port: port, timeoutSeconds: 10) }

    /// Sends what the socket takes; false once the peer has gone.
    @discardableResult
    static func send(_ descriptor: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL))
            }
            guard count > 0 else { return false }
            sent += count
        }
        return true
    }

    /// The status of the response on `descriptor`, nil when none came.
    static func status(_ descriptor: Int32) -> Int? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while !bytes.contains(10) {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return nil }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self).split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }

    /// Sends `request` on a new connection to `port`: the response's status.
    static func exchange(_ port: Int, _ request: String) -> Int? {
        guard let descriptor = connect(port) else { return nil }
        defer { close(descriptor) }
        send(descriptor, Array(request.utf8))
        return status(descriptor)
    }
}

/// The peak resident memory of process `pid` (`VmHWM`), in MiB.
private func peakMemory(_ pid: Int32) -> Int {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
    return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) / 1024
}

@Suite("p2c capture's receiver and probes under an attacker's requests", .serialized, .timeLimit(.minutes(4)))
struct ReceiverSecurityTests {
    let captureClient = "5a1e0c3d-0000-4000-8000-00000000f102"
    let personClient = "5a1e0c3d-0000-4000-8000-00000000f103"

    @Test(
        "An attacker without the key crashes nothing and costs nothing: an overflowing chunk size, 64 posts of 4 MiB (peak memory under the chart's 128 MiB), a slowloris on both ports, 2,000 idle connections; the probes keep answering, an idle receiver stays live, and a person's change is published each time"
    )
    func attacker() async throws {
        HTTPServer.raiseDescriptorLimit()
        let broker = try TestBroker()
        defer { broker.stop() }
        let webhookPort = freePort()
        let simulator = try SimulatorProcess([
            "finance-operations", "--client", "\(captureClient):capture-secret", "--client",
            "\(personClient):person-secret", "--data-events",
            "CustomersV3:http://127.0.0.1:\(webhookPort)/fno:events-key",
        ])
        defer { simulator.stop() }
        let probes = freePort()
        let capture = try Spawned(
            p2cBinary,
            [
                "capture", "--side", "erp", "--topics", topicsDirectory, "--webhook-port", String(webhookPort),
                "--metrics-port", String(probes), "--listen-address", "127.0.0.1",
            ],
            environment: broker.environment.merging([
                "P2C_FNO_URL": simulator.url, "P2C_FNO_TENANT_ID": simulator.tenant,
                "P2C_FNO_CLIENT_ID": captureClient, "P2C_FNO_CLIENT_SECRET": "capture-secret",
                "P2C_FNO_AUTHORITY": simulator.url, "P2C_CAPTURE_WEBHOOK_KEY": "events-key",
                "P2C_WATCHDOG_SECONDS": "2",
            ]) { $1 })
        let pid = capture.process.processIdentifier
        var ready = false
        for _ in 0..<300 where !ready {
            ready = await get(probes, "/readyz")?.status == 200
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(ready)
        let person = simulator.client(personClient, "person-secret", api: .financeOperations)
        var customers = 0
        /// A person's new customer in F&O, published by the receiver within `limit` (the simulator's
        /// post, the read-back, Kafka, and this test's read of the topic included).
        func personsChangeGetsThrough(_ step: String, within limit: Duration = .seconds(20)) async throws {
            customers += 1
            let account = "SEC-\(customers)"
            let started = ContinuousClock.now
            let created = try await person.send(
                "POST", "CustomersV3?cross-company=true",
                body: ["dataAreaId": "USMF", "CustomerAccount": .string(account)])
            #expect(created.status == 201, "\(step)")
            var published = false
            while !published && ContinuousClock.now - started < limit {
                let changes = try await AsyncBridge.onThread { try broker.read("erp.customers.changes", partitions: 6) }
                published = changes.contains { $0.header("ce_subject")?.text == "USMF/\(account)" }
                if !published { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(published, "\(step): the person's change is published within \(limit)")
            #expect(capture.process.isRunning, "\(step): the receiver lives")
        }

        // The first change takes the receiver's first reads and the producer's first connection.
        try await personsChangeGetsThrough("before any attack", within: .seconds(90))

        // 1. An 80-byte chunked body whose second chunk size overflows: refused, crashing nothing.
        let overflow =
            "POST /fno HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7fffffffffffffff\r\n"
        #expect(Raw.exchange(webhookPort, overflow) == 401, "no key: refused from the head")
        let keyed = overflow.replacingOccurrences(of: "Host: x", with: "Host: x\r\nx-p2c-webhook-key: events-key")
        #expect(Raw.exchange(webhookPort, keyed) == 413, "with the key: the chunk size is over the body limit")
        try await personsChangeGetsThrough("after the overflowing chunk")

        // 2. 64 concurrent posts of 4 MiB with a wrong key: refused before any body is read.
        let body = [UInt8](repeating: UInt8(ascii: "x"), count: 4 * 1024 * 1024)
        let statuses = Mutex<[Int?]>([])
        try await AsyncBridge.onThread {
            let group = DispatchGroup()
            for _ in 0..<64 {
                group.enter()
                Thread {
                    defer { group.leave() }
                    guard let descriptor = Raw.connect(webhookPort) else { return }
                    defer { close(descriptor) }
                    let head = "POST /fno?code=wrong HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n"
                    Raw.send(descriptor, Array(head.utf8))
                    Raw.send(descriptor, body)
                    let status = Raw.status(descriptor)
                    statuses.withLock { $0.append(status) }
                }.start()
            }
            group.wait()
        }
        let answered = statuses.withLock { $0 }.compactMap { $0 }
        #expect(answered.allSatisfy { $0 == 401 }, "\(answered)")
        let peak = peakMemory(pid)
        #expect(peak > 0 && peak < 128, "peak memory \(peak) MiB")
        let metrics = await get(probes, "/metrics")?.body ?? ""
        #expect(metrics.contains(#"p2c_capture_refused_posts_total{side="erp",mode="webhook"} 65"#), "\(metrics)")
        try await personsChangeGetsThrough("after 64 posts of 4 MiB")

        // 3. Slowloris: 64 connections on the receiver's port and 16 on the probes', a byte a second.
        let slow =
            (0..<64).compactMap { _ in Raw.connect(webhookPort) } + (0..<16).compactMap { _ in Raw.connect(probes) }
        #expect(slow.count == 80)
        let dripping = Atomic<Bool>(true)
        let drip = Thread {
            let request = Array("POST /fno HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8)
            var index = 0
            while dripping.load(ordering: .relaxed) {
                for descriptor in slow {
                    _ = withUnsafeBytes(of: request[index % request.count]) {
                        Glibc.send(descriptor, $0.baseAddress, 1, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                    }
                }
                index += 1
                Thread.sleep(forTimeInterval: 1)
            }
        }
        drip.start()
        for _ in 0..<3 {
            #expect(await get(probes, "/healthz")?.status == 200, "the probes answer during a slowloris")
            try await Task.sleep(for: .seconds(1))
        }
        try await personsChangeGetsThrough("during a slowloris")
        dripping.store(false, ordering: .relaxed)
        for descriptor in slow { close(descriptor) }

        // 4. A flood of 2,000 connections held open on the receiver's port.
        let flood = try await AsyncBridge.onThread { (0..<2_000).compactMap { _ in Raw.connect(webhookPort) } }
        #expect(flood.count == 2_000)
        #expect(await get(probes, "/healthz")?.status == 200, "the probes answer during a flood of the other port")
        try await personsChangeGetsThrough("during a flood of 2,000 connections")
        for descriptor in flood { close(descriptor) }

        // 5. Idle for twice the watchdog: still live; an unauthenticated post changes nothing.
        try await Task.sleep(for: .seconds(4))
        #expect(await get(probes, "/healthz")?.status == 200, "an idle receiver stays live")

        #expect(capture.stop(SIGTERM, within: .seconds(10))?.status == 0)
        let logs = capture.finish().stderr
        #expect(!logs.contains("events-key"), "no key in a log")
    }
}
