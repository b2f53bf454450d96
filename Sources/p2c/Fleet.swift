import Foundation
import Runtime
import Simulation
import Topology

/// Worker processes started by `p2c demo` and `p2c bench`: real `p2c worker`s, each with its own
/// metrics port, log file and transactional id. Driven from one thread.
final class Fleet {
    struct Member {
        var flow: Flow
        var process: Process
        var port: Int
    }

    let bootstrap: String
    let configuration: String
    let topics: String
    let logs: URL
    /// Prefix of the transactional ids: `p2c-<name>-<flow>-<n>`.
    let name: String
    private(set) var members: [Member] = []
    private(set) var failures: [String] = []
    private var started = 0

    init(bootstrap: String, configuration: String, topics: String, logs: URL, name: String) {
        self.name = name
        self.bootstrap = bootstrap
        self.configuration = configuration
        self.topics = topics
        self.logs = logs
    }

    static let executable: String = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path

    func start(_ flow: Flow) throws {
        started += 1
        let port = LocalHTTP.freePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = [
            "worker", "--flow", flow.rawValue, "--bootstrap-servers", bootstrap, "--config", configuration,
            "--topics", topics, "--transactional-id", "p2c-\(name)-\(flow.rawValue)-\(started)",
            "--metrics-port", String(port),
        ]
        let log = logs.appendingPathComponent("worker-\(started)-\(flow.rawValue).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        members.append(Member(flow: flow, process: process, port: port))
    }

    /// Waits until every worker answers 200 on /readyz.
    func waitUntilReady(seconds: Int, stopped: () -> Bool) -> Bool {
        let deadline = EventTime.nowMilliseconds() + Int64(seconds) * 1000
        var pending = members.map(\.port)
        while !pending.isEmpty && EventTime.nowMilliseconds() < deadline && !stopped() {
            pending.removeAll { LocalHTTP.get(port: $0, path: "/readyz", timeoutSeconds: 1)?.status == 200 }
            if !pending.isEmpty { usleep(200_000) }
        }
        return pending.isEmpty
    }

    /// SIGKILLs the first live worker of `flow`; returns its process id.
    func kill(_ flow: Flow) throws -> Int32 {
        guard let index = members.firstIndex(where: { $0.flow == flow && $0.process.isRunning }) else { return 0 }
        let process = members.remove(at: index).process
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return process.processIdentifier
    }

    /// Starts a new worker in place of every one that ended on its own, as a Deployment would.
    /// Each is a failure of the run; returns what happened, one line each.
    func replaceExited() throws -> [String] {
        let ended = members.filter { !$0.process.isRunning }
        members.removeAll { member in ended.contains { $0.process === member.process } }
        return try ended.map { member in
            let line =
                "worker \(member.process.processIdentifier) (\(member.flow.rawValue)) exited with \(member.process.terminationStatus)"
            failures.append(line)
            try start(member.flow)
            return line + "; starting a new one"
        }
    }

    /// `p2c_assigned_partitions` from a worker's /metrics; nil when it does not answer.
    func assignedPartitions(_ member: Member) -> Int? {
        guard let body = LocalHTTP.get(port: member.port, path: "/metrics", timeoutSeconds: 1)?.body,
            let line = body.split(separator: "\n").first(where: { $0.hasPrefix("p2c_assigned_partitions") }),
            let value = line.split(separator: " ").last.flatMap({ Double($0) })
        else { return nil }
        return Int(value)
    }

    /// SIGTERMs every worker and waits; a worker that exits other than 0 is a failure.
    func stopAll() {
        for member in members where member.process.isRunning { member.process.terminate() }
        for member in members {
            member.process.waitUntilExit()
            if member.process.terminationStatus != 0 {
                failures.append(
                    "worker \(member.process.processIdentifier) (\(member.flow.rawValue)) exited with \(member.process.terminationStatus)"
                )
            }
        }
        members = []
    }
}
