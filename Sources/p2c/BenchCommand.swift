import Demos
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Simulation
import Topology

/// `p2c bench`: the mapping worker against a raw pass-through of the same events, on the embedded
/// broker, judged by process CPU per event (the embedded broker caps wall-clock rates).
enum BenchCommand {
    static let spec = CommandSpec(
        name: "bench",
        summary: "Benchmark the worker against a raw pass-through of the same events on the embedded broker.",
        options: [
            OptionSpec(
                "events", value: "n", help: "Order events per run (a header and its lines per document).",
                default: "20000"),
            OptionSpec("lines", value: "n", help: "Lines per order document.", default: "5"),
            OptionSpec("workers", value: "n,n", help: "Worker counts to run.", default: "1,2"),
            OptionSpec(
                "repeat", value: "n", help: "Runs of each side per configuration, alternating; medians are reported.",
                default: "5"),
            OptionSpec(
                "delivery", value: "modes", help: "Delivery modes to run.", default: "exactly-once,at-least-once"),
            OptionSpec("rate", value: "events/s", help: "Fixed rate of the latency runs.", default: "1000"),
            OptionSpec("latency-seconds", value: "s", help: "Length of each latency run.", default: "10"),
            OptionSpec("topics", value: "dir", help: "Folder of topic declarations. Default: $P2C_TOPICS or ./Topics."),
            OptionSpec(
                "apply", help: "Benchmark p2c apply against the Dataverse simulator's limits instead (below)."),
            OptionSpec(
                "apply-seconds", value: "s",
                help: "--apply, --bootstrap: measured span after the first window. Default: 60 (--apply), 40."),
            OptionSpec(
                "window", value: "s",
                help: "--apply, --bootstrap: the limits' window, scaled from 300 s. Default: 30 (--apply), 10."),
            OptionSpec("identities", value: "n", help: "--apply: application users writing in parallel.", default: "1"),
            OptionSpec("side", value: "side", help: "--apply: crm (Dataverse) or erp (F&O).", default: "crm"),
            OptionSpec(
                "bootstrap",
                help: "Benchmark p2c bootstrap --side erp instead: records/s out of the simulated F&O into Kafka."),
            OptionSpec("documents", value: "n", help: "--bootstrap: orders (of 4 lines) to load.", default: "4000"),
            OptionSpec(
                "customers", value: "n", help: "--bootstrap: customers loaded through the whole chain into Dataverse.",
                default: "3000"),
            OptionSpec(
                "e2e",
                help:
                    "Benchmark the whole chain instead: a new account in the simulated Sales → its customer in the simulated F&O (capture, worker, apply)."
            ),
            OptionSpec("page-size", value: "n", help: "--bootstrap: records per page.", default: "1000"),
            OptionSpec(
                "capture",
                help: "Benchmark p2c capture instead: change in the simulated Dataverse → event, polled and by webhook."
            ),
            OptionSpec("changes", value: "n", help: "--capture, --e2e: changes to make.", default: "200"),
            OptionSpec(
                "poll-interval-ms", value: "ms", help: "--capture, --e2e: change tracking's poll interval.",
                default: "1000"),
        ],
        discussion: """
            With --apply: order documents on crm.orders.inbound are written by p2c apply into the
            simulated Dataverse, whose per-user limits (6,000 requests and 1,200 s of execution in 300 s)
            are scaled to --window with the same rates, each write running 10 ms and each read 2 ms;
            the write rate after the first window is reported as a ratio of the most the limits allow.
            Each pause costs about a second the window does not scale (Retry-After is whole seconds,
            a `$batch` counts when it ends), a tenth of a 10 s window, under 1 % of the real 300 s.
            --side erp does the same into the simulated F&O (orders on erp.orders.inbound).

            With --bootstrap: --documents orders loaded out of the simulated F&O into Kafka; then
            --customers customers through the chain (bootstrap, an erp-to-crm worker, apply) into the
            simulated Dataverse with one identity and with two; then the same chain with the limits
            scaled to --window, records/s over --apply-seconds after the first window, where the
            execution budget holds the load.

            Each run gets a fresh embedded broker holding the same order events on crm.orders.changes,
            then starts real `p2c worker` processes (flow crm-to-erp, stream orders) from a fresh group:
            first in pass-through mode (records copied as they are: the baseline), then mapping,
            alternating --repeat times. It reports the medians of events/s (steady rate, from the
            outputs' own timestamps: from a tenth of them out to nine tenths) and
            of the workers' process CPU per event (from /proc, between joining the group and the last
            output), and the ratios mapping/pass-through of those medians (shared machines are noisy:
            with five runs a side, two slowed runs move no median).
            The latency runs feed one mapping worker at a fixed rate and read its output
            read_committed: end-to-end p50/p99 (source event time to read). Resident memory is the
            workers' largest VmRSS after a run.
            """
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        if arguments.flag("capture") {
            let bench = CaptureBench(
                changes: try arguments.integer("changes", in: 10...100_000)!, rate: 20,
                pollInterval: try arguments.integer("poll-interval-ms", in: 100...60_000)!,
                catalog: try TopicCatalog.load(arguments, command: spec.name))
            return try await Blocking.run { try bench.execute() }
        }
        if arguments.flag("e2e") {
            let bench = EndToEndBench(
                changes: try arguments.integer("changes", in: 10...100_000)!, rate: 10,
                pollInterval: try arguments.integer("poll-interval-ms", in: 100...60_000)!,
                catalog: try TopicCatalog.load(arguments, command: spec.name))
            return try await Blocking.run { try bench.execute() }
        }
        if arguments.flag("bootstrap") {
            let bench = BootstrapBench(
                documents: try arguments.integer("documents", in: 10...200_000)!,
                customers: try arguments.integer("customers", in: 10...200_000)!,
                pageSize: try arguments.integer("page-size", in: 1...10_000)!,
                window: try arguments.integer("window", in: 1...300) ?? 10,
                seconds: try arguments.integer("apply-seconds", in: 5...3_600) ?? 40,
                catalog: try TopicCatalog.load(arguments, command: spec.name))
            return try await Blocking.run { try bench.execute() }
        }
        if arguments.flag("apply") {
            guard let side = Side(rawValue: arguments.string("side") ?? "crm") else {
                throw UsageError("--side must be crm or erp", command: spec.name)
            }
            let bench = ApplyBench(
                side: side, seconds: try arguments.integer("apply-seconds", in: 5...3_600) ?? 60,
                window: try arguments.integer("window", in: 1...300) ?? 30,
                identities: try arguments.integer("identities", in: 1...8)!,
                catalog: try TopicCatalog.load(arguments, command: spec.name))
            return try await Blocking.run { try bench.execute() }
        }
        let events = try arguments.integer("events", in: 60...1_000_000)!
        let lines = try arguments.integer("lines", in: 1...50)!
        let repeats = try arguments.integer("repeat", in: 1...15)!
        let rate = try arguments.integer("rate", in: 1...100_000)!
        let seconds = try arguments.integer("latency-seconds", in: 1...600)!
        let workerCounts = try (arguments.string("workers") ?? "1,2").split(separator: ",").map { text in
            guard let count = Int(text), (1...8).contains(count) else {
                throw UsageError("--workers takes counts from 1 to 8, e.g. 1,2; got \(text)", command: spec.name)
            }
            return count
        }
        let deliveries = try (arguments.string("delivery") ?? "").split(separator: ",").map { text in
            guard let mode = MappingBench.Delivery(rawValue: String(text)) else {
                throw UsageError(
                    "--delivery takes exactly-once and/or at-least-once; got \(text)", command: spec.name)
            }
            return mode
        }
        let directory = arguments.string("topics") ?? TopicCatalog.defaultDirectory()
        let catalog = try TopicCatalog.load(arguments, command: spec.name)
        let topics = URL(fileURLWithPath: directory).standardizedFileURL.path
        return try await Blocking.run {
            try MappingBench(
                events: events, lines: lines, repeats: repeats, rate: rate, seconds: seconds,
                workerCounts: workerCounts,
                deliveries: deliveries, catalog: catalog, topics: topics
            ).execute()
        }
    }
}
