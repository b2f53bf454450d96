import Foundation
import Kafka
import Operations
import ProspectToCash
import Runtime
import Simulation
import Synchronization
import Topology

/// `p2c demo --kafka`: the Kafka-only story, a simulated CRM and ERP in-process, on one thread.
public struct KafkaDemo: Sendable {
    var orders: Int
    var workers: Int
    var seed: UInt64
    var chaos: Bool
    var generation: MapGeneration
    var timeout: Int
    var catalog: TopicCatalog
    var topicsDirectory: String

    /// The embedded broker answers an empty fetch only when fetch.wait.max.ms runs out, even if
    /// records arrive meanwhile (a real broker answers at once): keep the wait short, or every hop
    /// costs up to the 500 ms default.
    static let fetchWait = "10"

    public init(
        orders: Int, workers: Int, seed: UInt64, chaos: Bool, generation: MapGeneration, timeout: Int,
        catalog: TopicCatalog, topicsDirectory: String
    ) {
        self.orders = orders
        self.workers = workers
        self.seed = seed
        self.chaos = chaos
        self.generation = generation
        self.timeout = timeout
        self.catalog = catalog
        self.topicsDirectory = topicsDirectory
    }

    public func execute(stopped: () -> Bool) throws -> Int32 {
        let started = EventTime.nowMilliseconds()
        let cluster = try EmbeddedCluster(brokers: 1)
        try cluster.createTopics(catalog)
        let bootstrap = cluster.bootstrapServers
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
            "p2c-demo-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let configuration = folder.appendingPathComponent("worker.json")
        try Data(
            """
            {"sessionTimeoutMs": 6000, "kafka": {"fetch.wait.max.ms": "\(Self.fetchWait)"},
             "mapping": \(Scenario.mappingConfiguration(generation))}
            """.utf8
        ).write(to: configuration)
        print(
            "p2c demo: embedded broker at \(bootstrap), \(catalog.topics.count) topics; \(orders) orders, \(workers) worker(s) per flow, seed \(seed), \(generation.rawValue) maps"
        )

        // The systems join their own groups while the workers start.
        let runID = String(started)
        let properties = ["fetch.wait.max.ms": Self.fetchWait]
        let crm = try Connector(side: .crm, bootstrapServers: bootstrap, runID: runID, properties: properties)
        let erp = try Connector(side: .erp, bootstrapServers: bootstrap, runID: runID, properties: properties)
        defer {
            crm.close()
            erp.close()
        }
        let fleet = Fleet(
            bootstrap: bootstrap, configuration: configuration.path, topics: topicsDirectory, logs: folder, name: "demo"
        )
        defer { fleet.stopAll() }
        for flow in Flow.allCases {
            for _ in 0..<workers { try fleet.start(flow) }
        }
        guard fleet.waitUntilReady(seconds: 60, stopped: stopped), try crm.waitUntilAssigned(),
            try erp.waitUntilAssigned()
        else {
            print("p2c demo: the workers did not become ready within 60 s; logs in \(folder.path)")
            return 1
        }
        print("p2c demo: \(fleet.members.count) workers ready after \(elapsed(since: started))")

        var options = Scenario.Options(orders: orders, seed: seed)
        options.generation = generation
        let scenario = Scenario(crm: crm, erp: erp, options: options)
        let lag = try Flow.allCases.map { flow in
            try GroupLag(
                bootstrapServers: bootstrap, group: "p2c-\(flow.rawValue)",
                topics: catalog.routes(for: flow).map { ($0.input.name, $0.input.partitions) })
        }
        defer { lag.forEach { $0.close() } }
        try scenario.start()

        let deadline = started + Int64(timeout) * 1000
        var lastReport = EventTime.nowMilliseconds()
        var reported = (crm: 0, erp: 0)
        var killed = false
        var settled = false
        var progress = Progress(at: started)
        while !stopped() {
            let now = EventTime.nowMilliseconds()
            if now > deadline {
                print("p2c demo: timed out after \(timeout) s with \(scenario.inFlight) documents in flight")
                break
            }
            try scenario.step(now: now)
            if chaos && !killed && scenario.documentsStarted * 2 >= scenario.documentsPlanned {
                killed = true
                for flow in Flow.allCases {
                    let pid = try fleet.kill(flow)
                    print("p2c demo: chaos: killed worker \(pid) of \(flow.rawValue) with SIGKILL; starting a new one")
                    try fleet.start(flow)
                }
            }
            if now - lastReport >= 1000 {
                lastReport = now
                let applied = (crm: crm.applied.values.reduce(0, +), erp: erp.applied.values.reduce(0, +))
                let lags = lag.map { $0.current().map(String.init) ?? "?" }
                print(
                    "[\(elapsed(since: started))] documents \(scenario.documentsStarted)/\(scenario.documentsPlanned), in flight \(scenario.inFlight), orders invoiced \(scenario.invoicedOrders) | applied crm→erp \(applied.erp) (+\(applied.erp - reported.erp)/s), erp→crm \(applied.crm) (+\(applied.crm - reported.crm)/s) | lag crm→erp \(lags[0]), erp→crm \(lags[1]) | e2e p50 \(millis(erp.latencies, crm.latencies, 0.5)) p99 \(millis(erp.latencies, crm.latencies, 0.99))"
                )
                reported = applied
                for event in try fleet.replaceExited() { print("p2c demo: \(event)") }
                let signature = [
                    applied.crm, applied.erp, scenario.documentsStarted, scenario.invoicedOrders,
                    lag.reduce(0) { $0 + Int($1.current() ?? -1) },
                ]
                if progress.isStalled(signature, now: now) {
                    diagnose(scenario: scenario, lag: lag, fleet: fleet, quietFor: now - progress.changedAt)
                }
            }
            if scenario.isFinished {
                // Settled: everything invoiced, and nothing arriving on either side for 2 s.
                let quiet = now - max(crm.lastAppliedAt, erp.lastAppliedAt)
                if quiet >= 2_000 && lag.allSatisfy({ $0.current() == 0 }) {
                    settled = true
                    break
                }
            }
        }
        _ = crm.flush()
        _ = erp.flush()
        fleet.stopAll()

        let mapper = try Mapper(
            configuration: JSONDecoder().decode(
                MappingConfiguration.self, from: Data(Scenario.mappingConfiguration(generation).utf8)))
        let reconciliation = Reconciliation(crm: crm.records, erp: erp.records, mapper: mapper)
        let dlqTopics = catalog.topics.filter { $0.role == .dlq }.map(\.name)
        let letters = try DeadLetters(bootstrapServers: bootstrap, topics: dlqTopics).letters
        return report(
            scenario: scenario, crm: crm, erp: erp, reconciliation: reconciliation, letters: letters, settled: settled,
            fleet: fleet, started: started, logs: folder.path)
    }

    /// When nothing moved for a while: what each document waits for, where the workers' group
    /// is behind, and what each worker holds.
    private func diagnose(scenario: Scenario, lag: [GroupLag], fleet: Fleet, quietFor: Int64) {
        print("p2c demo: no progress for \(quietFor / 1000) s; \(scenario.inFlight) documents in flight")
        for line in scenario.inFlightDescription.prefix(10) { print("  \(line)") }
        for (flow, group) in zip(Flow.allCases, lag) {
            guard let partitions = group.byPartition() else {
                print("  \(flow.rawValue): the broker did not answer for the group's offsets")
                continue
            }
            for entry in partitions.filter({ $0.lag > 0 }).prefix(10) {
                print("  \(flow.rawValue): \(entry.partition) committed \(entry.committed), \(entry.lag) behind")
            }
        }
        for member in fleet.members {
            let assigned = fleet.assignedPartitions(member).map(String.init) ?? "no answer"
            print(
                "  \(member.role) \(member.process.processIdentifier): \(member.process.isRunning ? "running" : "ended"), partitions assigned \(assigned)"
            )
        }
    }

    private func report(
        scenario: Scenario, crm: Connector, erp: Connector, reconciliation: Reconciliation,
        letters: [DeadLetters.Letter], settled: Bool, fleet: Fleet, started: Int64, logs: String
    ) -> Int32 {
        print("\np2c demo: reconciliation after \(elapsed(since: started))")
        let streams = SyncStream.allCases.filter { !$0.isParty || generation == .party }
        let width = streams.map(\.rawValue.count).max()!
        print(
            "  stream" + String(repeating: " ", count: width - 6)
                + "  CRM records  ERP records  compared  held back  fields compared")
        for stream in streams {
            let c = reconciliation.counts[stream] ?? Reconciliation.Counts()
            print(
                "  \(stream.rawValue.padding(toLength: width, withPad: " ", startingAt: 0))"
                    + [c.crmRecords, c.erpRecords, c.compared, c.filtered, c.fields].enumerated().map { index, value in
                        String(value).leftPadded(to: [13, 13, 10, 11, 17][index])
                    }.joined())
        }
        print("  mismatches: \(reconciliation.mismatches.count)")
        for line in reconciliation.mismatches.prefix(20) { print("    \(line)") }

        var problems: [String] = []
        if !settled {
            problems.append(
                scenario.isFinished
                    ? "the workers' group did not commit every input offset" : "the scenario did not finish")
        }
        if !reconciliation.isClean { problems.append("\(reconciliation.mismatches.count) mismatches") }
        let expected = Dictionary(uniqueKeysWithValues: scenario.badEvents.map { ($0.id, $0) })
        var found = Set<String>()
        print("  dead letters: \(letters.count) (the scenario sent \(expected.count) bad events)")
        for letter in letters {
            let wanted = expected[letter.id]
            let verdict: String
            if let wanted, wanted.deadLetterTopic == letter.topic, wanted.code.rawValue == letter.code {
                if found.insert(letter.id).inserted {
                    verdict = "expected"
                } else {
                    verdict = "expected (written again by a redelivered batch)"
                }
            } else {
                verdict = "NOT EXPECTED"
                problems.append("unexpected dead letter \(letter.id) in \(letter.topic)")
            }
            print("    \(letter.topic)  \(letter.code)  \(letter.id): \(verdict)")
        }
        for bad in scenario.badEvents where !found.contains(bad.id) {
            problems.append("bad event \(bad.id) is not in \(bad.deadLetterTopic)")
        }
        for bad in scenario.badEvents {
            let target = bad.deadLetterTopic.hasPrefix("crm.") ? erp : crm
            if target.record(bad.targetRecord, bad.key) != nil {
                problems.append("bad event \(bad.id) reached the other side as \(bad.targetRecord) \(bad.key)")
            }
        }
        let latencies = (erp.latencies.values + crm.latencies.values).reduce(into: LatencySamples()) { $0.add($1) }
        print(
            "  orders: \(scenario.orderNumbers.count) (\(scenario.orderNumbers.filter { $0.hasPrefix("F") }.count) entered in the ERP, \(scenario.quotesWon) from won quotes), \(scenario.invoicedOrders) invoiced in the CRM; invoices posted \(scenario.erp.invoicesPosted) + \(scenario.erp.freeTextInvoices.count) free-text (not synced)"
        )
        func byStream(_ counts: [SyncStream: Int]) -> String {
            SyncStream.allCases.compactMap { stream in counts[stream].map { "\(stream.rawValue) \($0)" } }.joined(
                separator: ", ")
        }
        print("  changes published: CRM \(byStream(crm.published)); ERP \(byStream(erp.published))")
        print("  sync events applied: CRM \(byStream(crm.applied)); ERP \(byStream(erp.applied))")
        print(
            "  events applied: ERP \(erp.applied.values.reduce(0, +)), CRM \(crm.applied.values.reduce(0, +)); echoes the connectors published (dropped by the workers): \(crm.echoes + erp.echoes); redelivered duplicates dropped by the targets: \(crm.duplicates + erp.duplicates)"
        )
        print(
            "  end-to-end latency (source change → applied on the other side): p50 \(latencies.percentile(0.5).map { "\($0) ms" } ?? "-"), p99 \(latencies.percentile(0.99).map { "\($0) ms" } ?? "-") over \(latencies.count) events"
        )
        print("  worker logs: \(logs)")
        if fleet.failures.isEmpty == false { problems.append(contentsOf: fleet.failures) }
        if problems.isEmpty {
            print("result: the systems agree")
            return 0
        }
        print("result: FAILED: \(problems.joined(separator: "; "))")
        return 1
    }

    private func elapsed(since start: Int64) -> String {
        let tenths = (EventTime.nowMilliseconds() - start) / 100
        return "\(tenths / 10).\(tenths % 10) s"
    }

    private func millis(_ a: LatencySamples, _ b: LatencySamples, _ fraction: Double) -> String {
        let all = (a.values.suffix(2_000) + b.values.suffix(2_000)).reduce(into: LatencySamples()) { $0.add($1) }
        return all.percentile(fraction).map { "\($0) ms" } ?? "-"
    }
}

/// Whether a run still moves: a signature of its counters, and when it last changed.
private struct Progress {
    private var signature: [Int] = []
    private(set) var changedAt: Int64
    private var diagnosedAt: Int64 = 0
    /// Quiet this long counts as a stall; a stall is described again after as long again.
    static let stallAfter: Int64 = 15_000

    init(at now: Int64) { changedAt = now }

    /// Records `current`; true when the run has not moved for `stallAfter` and was not
    /// described during the last `stallAfter`.
    mutating func isStalled(_ current: [Int], now: Int64) -> Bool {
        if current != signature {
            signature = current
            changedAt = now
            return false
        }
        guard now - changedAt >= Self.stallAfter, now - diagnosedAt >= Self.stallAfter else { return false }
        diagnosedAt = now
        return true
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
