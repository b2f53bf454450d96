import Foundation
import Kafka
import Synchronization
import TestSupport
import Testing

/// A fleet on the embedded broker, every part its own process.
private final class Fleet: @unchecked Sendable {
    // @unchecked: used from one test's blocking closure at a time.
    let broker: Spawned
    let bootstrap: String
    var workers: [Int: Spawned] = [:]
    private var ports: [Int: Int] = [:]
    private var nextWorker = 0

    init() throws {
        broker = try Spawned(p2cBinary, ["broker", "--topics", topicsDirectory])
        bootstrap = broker.readLine() ?? ""
    }

    /// Starts a worker; with `instance`, a static member of its group (`P2C_GROUP_INSTANCE_ID`).
    @discardableResult
    func startWorker(flow: String, instance: String? = nil) throws -> Int {
        nextWorker += 1
        let port = freePort()
        ports[nextWorker] = port
        var environment = [
            "P2C_BOOTSTRAP_SERVERS": bootstrap, "P2C_SESSION_TIMEOUT_MS": "6000", "P2C_METRICS_PORT": String(port),
        ]
        environment["P2C_GROUP_INSTANCE_ID"] = instance
        workers[nextWorker] = try Spawned(
            p2cBinary, ["worker", "--flow", flow, "--streams", "orders", "--topics", topicsDirectory],
            environment: environment)
        return nextWorker
    }

    func kill(_ id: Int) {
        _ = workers.removeValue(forKey: id)?.stop(SIGKILL)
    }

    /// CRM orders (3 lines each) written in batches with pauses, on a thread of its own.
    func produceInBackground(batches: Int, ordersPerBatch: Int, pause: Double) -> Finished {
        let finished = Finished()
        let writer = Writer(bootstrap: bootstrap)
        Thread {
            for batch in 0..<batches {
                let first = batch * ordersPerBatch + 1
                try? writer.produceOrders(
                    side: "crm", prefix: "C", range: first...(first + ordersPerBatch - 1), lines: 3)
                Thread.sleep(forTimeInterval: pause)
            }
            finished.set()
        }.start()
        return finished
    }

    /// A flag another thread sets once.
    final class Finished: Sendable {
        private let done = Mutex(false)
        func set() { done.withLock { $0 = true } }
        func wait() { while !done.withLock({ $0 }) { Thread.sleep(forTimeInterval: 0.05) } }
    }

    /// Waits (up to a minute) until every running worker holds partitions and each flow's partitions
    /// are all assigned: the group has settled, so the run starts without a rebalance in flight.
    func waitUntilAssigned(partitions: Int) async {
        for _ in 0..<600 {
            var perFlow: [String: (workers: Int, assigned: Int)] = [:]
            var allHold = true
            for port in workers.keys.compactMap({ ports[$0] }) {
                guard let text = await get(port, "/metrics")?.body,
                    let line = text.split(separator: "\n").first(where: { $0.hasPrefix("p2c_assigned_partitions{") }),
                    let flow = line.split(separator: "\"").dropFirst().first,
                    let count = Int(line.split(separator: " ").last ?? "")
                else {
                    allHold = false
                    continue
                }
                if count == 0 { allHold = false }
                perFlow[String(flow), default: (0, 0)].workers += 1
                perFlow[String(flow), default: (0, 0)].assigned += count
            }
            if allHold && !perFlow.isEmpty && perFlow.values.allSatisfy({ $0.assigned == partitions }) { return }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// A counter or gauge of one worker's /metrics (the first sample of that name), nil when it does not answer.
    func metric(_ id: Int, _ name: String) async -> Int? {
        guard let port = ports[id], let text = await get(port, "/metrics")?.body,
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }
            )
        else { return nil }
        return Int(Double(line.split(separator: " ").last ?? "") ?? -1)
    }

    /// SIGTERM to every worker at once; each one's exit status and time, nil for a worker still
    /// running after `limit` (then killed; its last log lines are printed).
    func terminateAll(within limit: Duration) -> [(status: Int32, took: Duration)?] {
        let started = ContinuousClock.now
        let running = workers.sorted { $0.key < $1.key }.map(\.value)
        for worker in running { Glibc.kill(worker.process.processIdentifier, SIGTERM) }
        var ended: [Duration?] = Array(repeating: nil, count: running.count)
        while ContinuousClock.now - started < limit && ended.contains(where: { $0 == nil }) {
            for (index, worker) in running.enumerated() where ended[index] == nil && !worker.process.isRunning {
                ended[index] = ContinuousClock.now - started
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        let outcomes = zip(running, ended).map { worker, took -> (status: Int32, took: Duration)? in
            let outcome = worker.waitForExit(since: started, within: .zero).map {
                (status: $0.status, took: took ?? $0.took)
            }
            if outcome?.status != 0 {
                print(
                    "worker \(worker.process.processIdentifier) ended with \(outcome.map { "\($0.status)" } ?? "no exit"):\n"
                        + worker.standardError.split(separator: "\n").suffix(6).joined(separator: "\n"))
            }
            return outcome
        }
        workers.removeAll()
        return outcomes
    }

    /// The logs of the workers stopped so far.
    var logs: [String] = []

    /// SIGTERM to one worker; its exit code (its log is printed when it is not 0).
    func stop(_ id: Int) -> Int32 {
        guard let worker = workers.removeValue(forKey: id) else { return -1 }
        let status = worker.stop(SIGTERM)
        logs.append(worker.standardError)
        if status != 0 {
            print(
                "worker \(id) exited with \(status):\n"
                    + worker.standardError.split(separator: "\n").suffix(8).joined(separator: "\n"))
        }
        return status
    }

    /// SIGTERM to every worker; their exit codes.
    func stopAll() -> [Int32] {
        let statuses = workers.keys.sorted().map { stop($0) }
        workers.removeAll()
        _ = broker.stop()
        return statuses
    }

    func produceOrders(side: String, prefix: String, range: ClosedRange<Int>, lines: Int) throws {
        try Writer(bootstrap: bootstrap).produceOrders(side: side, prefix: prefix, range: range, lines: lines)
    }

    /// Writes orders as a CRM or ERP connector would.
    struct Writer: Sendable {
        let bootstrap: String

        /// `count` orders (a header and `lines` lines each) from `side`, in the real field names.
        func produceOrders(side: String, prefix: String, range: ClosedRange<Int>, lines: Int) throws {
            let producer = try KafkaProducer(
                configuration: ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: bootstrap)))
            for order in range {
                let number = "\(prefix)\(String(format: "%06d", order))"
                let crm = side == "crm"
                var records = [
                    crm ? #"{"msdyn_salesordernumber":"\#(number)"}"# : #"{"SALESORDERNUMBER":"\#(number)"}"#
                ]
                for line in 1...lines {
                    records.append(
                        crm
                            ? #"{"salesorderid":{"msdyn_salesordernumber":"\#(number)"},"productid":{"msdyn_productnumber":"D1"},"sequencenumber":\#(line),"msdyn_shippingsite":{"msdyn_siteid":"1"},"msdyn_shippingwarehouse":{"msdyn_warehouseidentifier":"13"}}"#
                            : #"{"SALESORDERNUMBER":"\#(number)","LINECREATIONSEQUENCENUMBER":\#(line),"PRODUCTNUMBER":"D1"}"#
                    )
                }
                for (index, value) in records.enumerated() {
                    let type =
                        index == 0
                        ? (crm ? "salesorder" : "SalesOrderHeader") : (crm ? "salesorderdetail" : "SalesOrderLine")
                    try producer.send(
                        OutgoingRecord(
                            topic: "\(side).orders.changes", key: Array("USMF/\(number)".utf8),
                            value: Array(value.utf8),
                            headers: [
                                KafkaHeader("ce_specversion", "1.0"), KafkaHeader("ce_id", "\(number)-\(index)"),
                                KafkaHeader("ce_source", side), KafkaHeader("ce_type", "\(type).upserted"),
                                KafkaHeader("ce_company", "USMF"),
                            ]))
                    _ = producer.poll()
                }
            }
            _ = try producer.flush(timeout: .seconds(30))
        }
    }

    /// Reads `topic` until `distinct` different ce_ids arrived (or a minute passed), then a little longer.
    func read(_ topic: String, distinct: Int) throws -> [KafkaRecord] {
        var configuration = ConsumerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: bootstrap), groupID: "reader-\(topic)")
        configuration.sessionTimeoutMilliseconds = 6_000
        let reader = try KafkaConsumer(configuration: configuration)
        try reader.subscribe([topic])
        var records: [KafkaRecord] = []
        var ids: Set<String> = []
        var deadline = ContinuousClock.now + .seconds(90)
        var settled: ContinuousClock.Instant?
        while ContinuousClock.now < deadline {
            if case .record(let record)? = try reader.poll(timeout: .milliseconds(100)) {
                records.append(record)
                ids.insert(record.header("ce_id")?.text ?? "")
            }
            if ids.count >= distinct && settled == nil {
                settled = .now
                deadline = min(deadline, .now + .seconds(3))
            }
        }
        try reader.close()
        return records
    }
}

/// Checks keys, order and identity of a flow's output.
private func check(
    _ records: [KafkaRecord], orders: Int, lines: Int, header: String, line: String
) -> (distinct: Int, duplicates: Int) {
    var firstSeen: [String: KafkaRecord] = [:]
    var byKey: [String: [String]] = [:]
    var duplicates = 0
    for record in records {
        let id = record.header("ce_id")?.text ?? ""
        if let earlier = firstSeen[id] {
            duplicates += 1
            #expect(earlier.value == record.value && earlier.key == record.key, "duplicate \(id) differs")
            continue
        }
        firstSeen[id] = record
        let key = String(decoding: record.key ?? [], as: UTF8.self)
        #expect(record.header("ce_subject")?.text == key)
        byKey[key, default: []].append(record.header("ce_type")?.text ?? "")
    }
    #expect(byKey.count == orders)
    for (key, types) in byKey {
        #expect(
            types == ["\(header).upserted"] + Array(repeating: "\(line).upserted", count: lines), "\(key): \(types)")
    }
    return (firstSeen.count, duplicates)
}

@Suite("A fleet of worker processes", .serialized, .timeLimit(.minutes(5)))
struct FleetTests {
    @Test(
        "Three CRM → ERP and two ERP → CRM workers: every output, lines after their header, keys kept, no repeats in a stable group"
    )
    func fleetBothFlows() async throws {
        let fleet = try await Blocking.run {
            let fleet = try Fleet()
            for _ in 0..<3 { try fleet.startWorker(flow: "crm-to-erp") }
            for _ in 0..<2 { try fleet.startWorker(flow: "erp-to-crm") }
            return fleet
        }
        await fleet.waitUntilAssigned(partitions: 24)
        let outcome = try await Blocking.run {
            try fleet.produceOrders(side: "crm", prefix: "C", range: 1...1_000, lines: 4)
            try fleet.produceOrders(side: "erp", prefix: "F", range: 1...500, lines: 4)
            let toERP = try fleet.read("erp.orders.inbound", distinct: 5_000)
            let toCRM = try fleet.read("crm.orders.inbound", distinct: 2_500)
            return (toERP, toCRM, fleet.stopAll())
        }
        let (toERP, toCRM, statuses) = outcome
        // Five workers on one host, none configured with a transactional id: each has its own
        // (a shared one would fence the others), and says which in its start line.
        let started = fleet.logs.compactMap { log in
            log.split(separator: "\n").first { $0.contains(#""msg":"worker started""#) }.map(String.init)
        }
        let ids = started.compactMap { line in
            line.firstMatch(of: /"transactional_id":"([^"]+)"/).map { String($0.1) }
        }
        #expect(ids.count == 5 && Set(ids).count == 5, "\(ids)")
        #expect(
            started.allSatisfy {
                $0.contains(#""group_id":"p2c-crm-to-erp""#) || $0.contains(#""group_id":"p2c-erp-to-crm""#)
            })
        let erp = check(toERP, orders: 1_000, lines: 4, header: "SalesOrderHeader", line: "SalesOrderLine")
        let crm = check(toCRM, orders: 500, lines: 4, header: "salesorder", line: "salesorderdetail")
        #expect(erp.distinct == 5_000)
        #expect(crm.distinct == 2_500)
        #expect(statuses == [0, 0, 0, 0, 0])
        print("fleet: \(erp.duplicates) + \(crm.duplicates) repeated outputs")
        // Exactly once holds while the groups are stable. A rebalance during the run (a slow machine
        // can cost a member its session) makes the 2.0.2 mock repeat batches: see the scale test.
        if erp.duplicates + crm.duplicates > 0 {
            withKnownIssue("librdkafka 2.0.2's mock stores no transactional offsets and shows aborted writes") {
                #expect(erp.duplicates + crm.duplicates == 0)
            }
        }
    }

    @Test("Workers killed with SIGKILL at random moments: the rest finish, nothing is lost, order holds")
    func killNine() async throws {
        let outcome = try await Blocking.run {
            let fleet = try Fleet()
            for _ in 0..<3 { try fleet.startWorker(flow: "crm-to-erp") }
            // Orders keep arriving for about three seconds while workers are killed and replaced.
            let produced = fleet.produceInBackground(batches: 30, ordersPerBatch: 50, pause: 0.1)
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<3 {
                Thread.sleep(forTimeInterval: Double.random(in: 0.4...1.0, using: &generator))
                let victim = fleet.workers.keys.randomElement(using: &generator)!
                fleet.kill(victim)
                try fleet.startWorker(flow: "crm-to-erp")
            }
            produced.wait()
            let records = try fleet.read("erp.orders.inbound", distinct: 6_000)
            return (records, fleet.stopAll())
        }
        let (records, statuses) = outcome
        let result = check(records, orders: 1_500, lines: 3, header: "SalesOrderHeader", line: "SalesOrderLine")
        #expect(result.distinct == 6_000)
        #expect(statuses == [0, 0, 0])
        print("kill -9 run: \(result.distinct) distinct outputs, \(result.duplicates) duplicates")
        // On a real cluster a killed worker's open transaction is aborted and never read; the 2.0.2
        // mock shows it anyway, so its records can appear twice, with the same ce_id and value.
        if result.duplicates > 0 {
            withKnownIssue("librdkafka 2.0.2's mock shows aborted and open transactions to read_committed readers") {
                #expect(result.duplicates == 0)
            }
        }
    }

    @Test(
        "SIGTERM to a fleet right after a killed worker's partitions were reassigned: every worker exits 0 within 10 s"
    )
    func terminateDuringReassignment() async throws {
        let fleet = try await Blocking.run {
            let fleet = try Fleet()
            // One of them a static member (no LeaveGroup on its way out).
            for index in 0..<3 { try fleet.startWorker(flow: "crm-to-erp", instance: index == 2 ? "static-3" : nil) }
            return fleet
        }
        await fleet.waitUntilAssigned(partitions: 24)
        let produced = fleet.produceInBackground(batches: 100, ordersPerBatch: 20, pause: 0.05)
        let survivors = fleet.workers.keys.sorted().dropFirst()
        var before: [Int: Int] = [:]
        for id in survivors { before[id] = await fleet.metric(id, "p2c_rebalances_total") ?? 0 }
        fleet.kill(fleet.workers.keys.sorted().first!)
        let replacement = try await Blocking.run { try fleet.startWorker(flow: "crm-to-erp") }
        // The replacement's join starts the rebalance that hands out the killed worker's partitions.
        var reassigned = false
        let waitingSince = ContinuousClock.now
        while !reassigned && ContinuousClock.now - waitingSince < .seconds(30) {
            try await Task.sleep(for: .milliseconds(20))
            for id in survivors where await fleet.metric(id, "p2c_rebalances_total") ?? 0 > before[id]! {
                reassigned = true
            }
            if await fleet.metric(replacement, "p2c_assigned_partitions") ?? 0 > 0 { reassigned = true }
        }
        #expect(reassigned)
        let outcomes = try await Blocking.run { fleet.terminateAll(within: .seconds(10)) }
        try await Blocking.run { produced.wait() }
        _ = fleet.stopAll()
        print(
            "SIGTERM during reassignment: \(outcomes.map { $0.map { "\($0.status) after \($0.took)" } ?? "no exit" })")
        #expect(outcomes.count == 3)
        #expect(outcomes.allSatisfy { $0?.status == 0 })
    }

    @Test(
        "kill -9 of one of two workers while orders arrive: the other takes its partitions over and nothing is lost")
    func failover() async throws {
        let fleet = try await Blocking.run {
            let fleet = try Fleet()
            for _ in 1...2 { try fleet.startWorker(flow: "crm-to-erp") }
            return fleet
        }
        await fleet.waitUntilAssigned(partitions: 24)
        // 12 s of orders, one every 10 ms on average; the kill comes 2 s in.
        let produced = fleet.produceInBackground(batches: 120, ordersPerBatch: 10, pause: 0.1)
        try await Task.sleep(for: .seconds(2))
        let killed = Date()
        fleet.kill(fleet.workers.keys.min()!)
        let records = try await Blocking.run {
            produced.wait()
            return try fleet.read("erp.orders.inbound", distinct: 4_800)
        }
        let statuses = try await Blocking.run { fleet.stopAll() }
        let result = check(records, orders: 1_200, lines: 3, header: "SalesOrderHeader", line: "SalesOrderLine")
        #expect(result.distinct == 4_800)
        #expect(statuses == [0])
        // Fail-over time, for the README: the longest a partition went without output after the kill.
        let since = Int64(killed.timeIntervalSince1970 * 1000)
        var longest: Int64 = 0
        for records in Dictionary(grouping: records.filter { $0.timestamp >= since - 1_000 }, by: \.partition).values {
            let stamps = records.map(\.timestamp).sorted()
            for (earlier, later) in zip(stamps, stamps.dropFirst()) { longest = max(longest, later - earlier) }
        }
        print("fail-over after kill -9 (session timeout 6 s): the longest silence of a partition was \(longest) ms")
    }

    @Test("Scaling 1 → 4 → 2 workers while orders arrive: nothing lost, order kept, every worker exits 0")
    func scaleOutAndIn() async throws {
        let outcome = try await Blocking.run {
            let fleet = try Fleet()
            try fleet.startWorker(flow: "crm-to-erp")
            let produced = fleet.produceInBackground(batches: 40, ordersPerBatch: 25, pause: 0.15)
            Thread.sleep(forTimeInterval: 1)
            for _ in 0..<3 { try fleet.startWorker(flow: "crm-to-erp") }
            Thread.sleep(forTimeInterval: 4)
            var stopped: [Int32] = []
            for id in fleet.workers.keys.sorted().prefix(2) { stopped.append(fleet.stop(id)) }
            produced.wait()
            let records = try fleet.read("erp.orders.inbound", distinct: 4_000)
            return (records, stopped + fleet.stopAll())
        }
        let (records, statuses) = outcome
        let result = check(records, orders: 1_000, lines: 3, header: "SalesOrderHeader", line: "SalesOrderLine")
        #expect(result.distinct == 4_000)
        #expect(statuses == [0, 0, 0, 0])
        print("scale 1 → 4 → 2: \(result.distinct) distinct outputs, \(result.duplicates) repeated")
        // On a real cluster the offsets travel in the transaction: a stale generation fails the
        // transaction, which aborts unseen. The 2.0.2 mock drops transactional offsets, and the
        // fallback commit is refused mid-rebalance, so the next owner redoes the batch (same ids).
        if result.duplicates > 0 {
            withKnownIssue("librdkafka 2.0.2's mock stores no transactional offsets and shows aborted writes") {
                #expect(result.duplicates == 0)
            }
        }
    }
}
