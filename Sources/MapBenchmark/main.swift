import Foundation
import Kafka
import ProspectToCash
import Simulation
import Topology
import Worker

// The mapping micro-benchmark: CPU per event of what the worker does beyond a pass-through (decode,
// map and encode an order header or line, from the consumed record to the record it produces),
// beside a raw Kafka consume → produce of the same bytes against `p2c broker` in another process,
// in the same run. Usage: swift run -c release MapBenchmark [documents] [--map-only]

let documents = CommandLine.arguments.dropFirst().first.flatMap(Int.init) ?? 5_000
let linesPerOrder = 5
let events = (0..<documents).flatMap { SampleOrders.document(number: $0, lines: linesPerOrder) }
let bytes = events.reduce(0) {
    $0 + $1.value.count + $1.headers.reduce(0) { $0 + $1.name.count + ($1.value?.count ?? 0) }
}
print(
    "events: \(events.count) (\(documents) orders × \(linesPerOrder + 1)), \(bytes / events.count) bytes each on average"
)

// The demo's and `p2c bench`'s deployment: number sequences, an allowed company, line defaults.
let configuration = try JSONDecoder().decode(
    MappingConfiguration.self, from: Data(Scenario.mappingConfiguration(.classic).utf8))
let catalog = try TopicCatalog.load(directory: TopicCatalog.defaultDirectory())
let translator = RecordTranslator(
    mapper: try Mapper(configuration: configuration), flow: .crmToERP, catalog: catalog)
let input = "crm.orders.changes"
let consumed = events.enumerated().map { index, event in
    KafkaRecord(
        topic: input, partition: 0, offset: Int64(index),
        key: event.headers.first { $0.name == CloudEvent.Header.subject }?.value, value: event.value,
        headers: event.headers.map { KafkaHeader($0.name, $0.value) }, timestamp: 0)
}

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(
        usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

// 1. Mapping alone: consumed record → outcome → produced records, as the worker does per record.
/// Translates every record once; returns output bytes (kept so nothing is optimised away).
@inline(never)
func measureMapping(_ records: [KafkaRecord]) -> Int {
    var total = 0
    for record in records {
        guard case .mapped(let outputs) = translator.outcome(of: record, stream: .orders) else {
            fatalError("benchmark record \(record.offset) was not mapped")
        }
        for output in outputs {
            guard let produced = translator.record(for: output) else { fatalError("no output topic") }
            total &+= (produced.value?.count ?? 0) &+ produced.headers.count
        }
    }
    return total
}

/// CPU seconds of the calling thread: the mapping runs on it alone.
func threadCPUSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

let parts = 5
// Warm-up: what is built once per process (interned names, plans) is not part of the figure.
for record in consumed.prefix(60) { _ = translator.outcome(of: record, stream: .orders) }

/// One mapping round over every event: (this thread's CPU, the whole process's CPU) in seconds.
func mappingRound() -> (thread: Double, process: Double, produced: Int) {
    let start = (thread: threadCPUSeconds(), process: cpuSeconds())
    let produced = measureMapping(consumed)
    return (threadCPUSeconds() - start.thread, cpuSeconds() - start.process, produced)
}

/// Prints the mapping's CPU per event over `rounds` (each a round's CPU per event) and returns it.
func report(mapping rounds: [Double], produced: Int) -> Double {
    let cpu = rounds.reduce(0, +) / Double(rounds.count)
    print(
        String(
            format:
                "mapping:      %7.2f µs CPU per event (%d rounds, fastest %.2f), %8.0f events/s on one core (%d output bytes per event)",
            cpu * 1e6, rounds.count, rounds.min()! * 1e6, 1 / cpu, produced / events.count))
    return cpu
}

if CommandLine.arguments.contains("--map-only") {
    var mapping: [Double] = []
    var produced = 0
    for _ in 0..<parts {
        let round = mappingRound()
        mapping.append(round.thread / Double(events.count))
        produced = round.produced
    }
    _ = report(mapping: mapping, produced: produced)
    exit(0)
}

// 2. Raw pass-through of the same bytes: consume from one topic, produce to another, no mapping;
// in five parts, each followed by a mapping round, so that each pair is timed under the same
// conditions (these machines are shared, and their speed drifts). A mapping round's CPU is its
// thread's; what the process's other threads (librdkafka's) spend meanwhile is the pass-through's.
let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("p2c")
    .path
let broker = Process()
broker.executableURL = URL(fileURLWithPath: binary)
broker.arguments = ["broker"]
let pipe = Pipe()
broker.standardOutput = pipe
try broker.run()
defer { broker.terminate() }
var firstLine = Data()
while !firstLine.contains(0x0A) { firstLine.append(pipe.fileHandleForReading.availableData) }
let bootstrap = String(decoding: firstLine.prefix { $0 != 0x0A }, as: UTF8.self)
let kafka = KafkaConfiguration(bootstrapServers: bootstrap, clientID: "map-benchmark")

let source = try KafkaProducer(configuration: ProducerConfiguration(kafka: kafka))
for event in events {
    let key = event.headers.first { $0.name == CloudEvent.Header.subject }?.value
    try source.send(
        OutgoingRecord(
            topic: "crm.orders.changes", key: key, value: event.value,
            headers: event.headers.map { KafkaHeader($0.name, $0.value) }))
    _ = source.poll()
}
_ = try source.flush(timeout: .seconds(60))

var consumerConfiguration = ConsumerConfiguration(kafka: kafka, groupID: "map-benchmark-passthrough")
consumerConfiguration.readCommitted = false
let consumer = try KafkaConsumer(configuration: consumerConfiguration)
let sink = try KafkaProducer(configuration: ProducerConfiguration(kafka: kafka))
// The CPU clock starts before subscribing, so fetching counts; joining the group idles. The last
// part ends after the producer's flush.
let chunk = (events.count + parts - 1) / parts
// Background threads fetch ahead while a mapping round runs, so single parts move CPU between
// them: only the totals over the interleaved run are exact.
var passTotal = 0.0
var mapParts: [Double] = []
var produced = 0
var partStart = cpuSeconds()
try consumer.subscribe(["crm.orders.changes"])
var first: KafkaRecord?
while first == nil { if case .record(let record)? = try consumer.poll(timeout: .milliseconds(100)) { first = record } }
var moved = 0
var pending = [first!]
for part in 0..<parts {
    let end = min(events.count, (part + 1) * chunk)
    while moved < end {
        for record in pending {
            try sink.send(
                OutgoingRecord(
                    topic: "erp.orders.inbound", key: record.key, value: record.value, headers: record.headers))
            moved += 1
        }
        pending.removeAll(keepingCapacity: true)
        _ = sink.poll()
        if moved < end, case .record(let record)? = try consumer.poll(timeout: .milliseconds(100)) {
            pending.append(record)
        }
    }
    if part == parts - 1 { _ = try sink.flush(timeout: .seconds(60)) }
    let partCPU = cpuSeconds() - partStart
    let round = mappingRound()
    produced = round.produced
    mapParts.append(round.thread / Double(events.count))
    passTotal += partCPU + round.process - round.thread
    partStart = cpuSeconds()
}
let mapCPU = report(mapping: mapParts, produced: produced)
let passCPU = passTotal / Double(events.count)
print(
    String(
        format:
            "pass-through: %7.2f µs CPU per event (%d parts between the rounds), consume → produce, broker in another process",
        passCPU * 1e6, parts))
print(String(format: "ratio mapping / pass-through CPU per event: %.2f", mapCPU / passCPU))
try consumer.close()
