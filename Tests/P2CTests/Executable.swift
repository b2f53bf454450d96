import Connectors
import Foundation
import Kafka
import Runtime
import Synchronization
import TestSupport

/// The built `p2c` binary, beside the test bundle (or `$P2C_BINARY`).
let p2cBinary: String = {
    if let configured = ProcessInfo.processInfo.environment["P2C_BINARY"] { return configured }
    return URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("p2c").path
}()

/// A process started by a test, with its output captured.
final class Spawned: @unchecked Sendable {
    // @unchecked: Process and FileHandle are used from one test at a time.
    let process = Process()
    private let stdout = Pipe()
    private let stderr = Pipe()
    private var pending = Data()
    /// Standard error, read from the start: a child blocked on a full pipe would never end.
    private var errors: Drained!

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        errors = Drained(stderr.fileHandleForReading)
    }

    /// Blocks until a whole line is on standard output; nil at end of output.
    func readLine() -> String? {
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            let chunk = stdout.fileHandleForReading.availableData
            if chunk.isEmpty { return nil }
            pending.append(chunk)
        }
    }

    /// Sends `signal` and waits for the exit status.
    func stop(_ signal: Int32 = SIGTERM) -> Int32 {
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Sends `signal` and waits up to `limit` for the exit: its status and how long it took, or nil
    /// when it was still running (it is then killed with SIGKILL).
    func stop(_ signal: Int32, within limit: Duration) -> (status: Int32, took: Duration)? {
        let started = ContinuousClock.now
        kill(process.processIdentifier, signal)
        return waitForExit(since: started, within: limit)
    }

    /// Waits up to `limit` (counted from `since`) for the process to end: its status and the time
    /// from `since`, or nil when it was still running (it is then killed with SIGKILL).
    func waitForExit(since started: ContinuousClock.Instant, within limit: Duration) -> (status: Int32, took: Duration)?
    {
        while process.isRunning && ContinuousClock.now - started < limit { Thread.sleep(forTimeInterval: 0.02) }
        guard !process.isRunning else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        process.waitUntilExit()
        return (process.terminationStatus, ContinuousClock.now - started)
    }

    /// Waits for the process to end and returns its status, standard output and standard error.
    func finish() -> (status: Int32, stdout: String, stderr: String) {
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = errors.value
        process.waitUntilExit()
        return (
            process.terminationStatus, String(decoding: pending + out, as: UTF8.self),
            String(decoding: err, as: UTF8.self)
        )
    }

    /// Everything the process wrote to standard error; waits for it to close the stream.
    var standardError: String { String(decoding: errors.value, as: UTF8.self) }
}

/// A pipe read to its end on a thread of its own.
private final class Drained: Sendable {
    private let data = Mutex(Data())
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread { [self] in
            let all = handle.readDataToEndOfFile()
            data.withLock { $0 = all }
            done.signal()
        }.start()
    }

    /// Waits for the end of the stream.
    var value: Data {
        done.wait()
        done.signal()
        return data.withLock { $0 }
    }
}

/// `p2c broker` in a process of its own for one test: its address, the environment a worker or an
/// operator command needs to reach it, and a producer writing to it. Call `stop()` when done.
final class TestBroker: @unchecked Sendable {
    // @unchecked: used from one test at a time.
    let bootstrap: String
    let environment: [String: String]
    let producer: KafkaProducer
    private let process: Spawned

    init() throws {
        process = try Spawned(p2cBinary, ["broker", "--topics", topicsDirectory])
        bootstrap = process.readLine() ?? ""
        environment = ["P2C_BOOTSTRAP_SERVERS": bootstrap, "P2C_SESSION_TIMEOUT_MS": "6000", "P2C_METRICS_PORT": "0"]
        producer = try KafkaProducer(
            configuration: ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: bootstrap)))
    }

    func stop() { _ = process.stop() }

    /// Every committed record of `topic` (of `partitions` partitions) so far, joining no group.
    func read(_ topic: String, partitions: Int) throws -> [KafkaRecord] {
        var configuration = ConsumerConfiguration(
            kafka: KafkaConfiguration(bootstrapServers: bootstrap), groupID: "reader-\(UUID())")
        configuration.reportPartitionEnd = true
        let reader = try KafkaConsumer(configuration: configuration)
        var records: [KafkaRecord] = []
        try reader.readToEnd(
            (0..<partitions).map { TopicPartitionOffset(topic, Int32($0), offset: KafkaOffset.beginning) }
        ) { records.append($0) }
        return records
    }
}

/// Runs a command to completion.
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    try Spawned(executable, arguments).finish()
}

/// Finds a program on PATH.
func which(_ program: String) -> String? {
    let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
    return paths.map { "\($0)/\(program)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// A `p2c simulate <system>` process, and what it printed first: its URL and tenant.
final class SimulatorProcess: @unchecked Sendable {
    // @unchecked: used from one test at a time.
    let url: String
    let tenant: String
    private let process: Spawned

    init(_ arguments: [String]) throws {
        process = try Spawned(p2cBinary, ["simulate"] + arguments)
        url = process.readLine() ?? ""
        tenant = String((process.readLine() ?? "").dropFirst("tenant ".count))
    }

    /// A client of the simulator for `clientID` (its token endpoint is the simulator's own).
    func client(_ clientID: String, _ secret: String, api: ServiceClient.API) -> ServiceClient {
        var settings = ServiceClient.Settings(
            url: URL(string: url)!, tenantID: tenant, clientID: clientID, clientSecret: secret)
        settings.authority = URL(string: url)!
        return ServiceClient(settings: settings, http: HTTPClient(), api: api)
    }

    func stop() { _ = process.stop() }
}
