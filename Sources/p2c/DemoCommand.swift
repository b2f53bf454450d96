import Demos
import Foundation
import Kafka
import Operations
import ProspectToCash
import Runtime
import Simulation
import Synchronization
import Topology

/// `p2c demo`: the whole product on one machine: the embedded broker, the simulated Sales and F&O,
/// capture, apply and the mapping workers as processes, people working in both systems through
/// their APIs, and `p2c reconcile`'s comparison at the end. `--kafka`: the Kafka-only story (a
/// simulated CRM and ERP publishing and applying in-process, the workers as processes).
enum DemoCommand {
    static let spec = CommandSpec(
        name: "demo",
        summary: "Run a live prospect-to-cash story on one machine and reconcile both systems.",
        options: [
            OptionSpec(
                "orders", value: "n", help: "Sales orders in the story (quotes and invoices follow from them).",
                default: "200"),
            OptionSpec("workers", value: "n", help: "Worker processes per flow, 1 to 8.", default: "2"),
            OptionSpec(
                "chaos",
                help:
                    "Kill members with SIGKILL halfway and start new ones: a capture and an apply member (--kafka: a worker of each flow)."
            ),
            OptionSpec(
                "kafka",
                help:
                    "The Kafka-only story: a simulated CRM and ERP publish and apply in-process (prospects, won quotes, discounts, four planted bad events, end-to-end latency)."
            ),
            OptionSpec(
                "seed", value: "n", help: "--kafka: seed of the story; the same seed tells the same story.",
                default: "1"),
            OptionSpec(
                "generation", value: "classic|party",
                help:
                    "--kafka: the generation of the maps: party also syncs parties, postal and electronic addresses.",
                default: "classic"),
            OptionSpec("timeout", value: "seconds", help: "Give up (exit 1) after this long.", default: "900"),
            OptionSpec("topics", value: "dir", help: "Folder of topic declarations. Default: $P2C_TOPICS or ./Topics."),
        ],
        discussion: """
            Prints progress every second (records in both systems, writes applied per side, HTTP
            requests, 429s and retries; --kafka: documents, events applied per flow, worker lag,
            end-to-end latency), then the reconciliation: records per stream on both sides compared
            through the maps, missing and different ones field by field, and the dead letters (the
            story plants some on purpose: they must be in the DLQ and nowhere else). Exit 0 only when
            the systems agree, every dead letter is a planted one and no member failed. Logs go to a
            temporary folder named at the end.
            """
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let orders = try arguments.integer("orders", in: 10...10_000_000)!
        let workers = try arguments.integer("workers", in: 1...8)!
        guard let seed = UInt64(arguments.string("seed") ?? "1") else {
            throw UsageError("--seed must be a whole number ≥ 0", command: spec.name)
        }
        let timeout = try arguments.integer("timeout", in: 10...86_400)!
        let directory = arguments.string("topics") ?? TopicCatalog.defaultDirectory()
        let catalog = try TopicCatalog.load(arguments, command: spec.name)
        let chaos = arguments.flag("chaos")
        let generationText = arguments.string("generation") ?? "classic"
        guard let generation = MapGeneration(rawValue: generationText) else {
            throw UsageError("--generation must be classic or party, got '\(generationText)'", command: spec.name)
        }
        let stop = Atomic<Bool>(false)
        // SIGINT or SIGTERM ends the run early; the report still comes, and says so.
        Task {
            _ = await Signals.termination()
            stop.store(true, ordering: .relaxed)
        }
        if !arguments.flag("kafka") {
            guard generation == .classic else {
                throw UsageError(
                    "--generation party runs with --kafka (the story over HTTP syncs the classic maps)",
                    command: spec.name)
            }
            return try await Blocking.run {
                try HTTPDemo(
                    orders: orders, workers: workers, chaos: chaos, generation: generation, timeout: timeout,
                    catalog: catalog,
                    topicsDirectory: URL(fileURLWithPath: directory).standardizedFileURL.path
                ).execute { stop.load(ordering: .relaxed) }
            }
        }
        return try await Blocking.run {
            try KafkaDemo(
                orders: orders, workers: workers, seed: seed, chaos: chaos, generation: generation, timeout: timeout,
                catalog: catalog,
                topicsDirectory: URL(fileURLWithPath: directory).standardizedFileURL.path
            ).execute { stop.load(ordering: .relaxed) }
        }
    }
}
