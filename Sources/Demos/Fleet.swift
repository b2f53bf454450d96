import Foundation
import Runtime
import Simulation
import Topology

/// Fleet members started by `p2c demo` and `p2c bench`: real `p2c worker`s (and, over HTTP,
/// `p2c capture` and `p2c apply`), each with its own metrics port and log file; workers with their
/// own transactional id. Driven from one thread.
final class Fleet {
    /// What a member is: a mapping worker of a flow, or a side's capture or apply.
    enum Role: Hashable, CustomStringConvertible {
        case worker(Flow)
        case capture(Side)
        case apply(Side)

        var description: String {
            switch self {
            case .worker(let flow): "worker \(flow.rawValue)"
            case .capture(let side): "capture \(side.rawValue)"
            case .apply(let side): "apply \(side.rawValue)"
            }
        }
    }

    struct Member {
        var role: Role
        var process: Process
        var port: Int
    }

    let bootstrap: String
    let configuration: String
    let topics: String
    let logs: URL
    /// Prefix of the transactional ids: `p2c-<name>-<flow>-<n>`.
    let name: String
    /// Per role, the arguments and environment a capture or apply member gets besides the common
    /// ones (its system's connection, its port).
    var settings: [Role: (arguments: [String], environment: [String: String])] = [:]
    private(set) var members: [Member] = []
    /// Every member started, killed and ended ones too.
    private(set) var all: [Member] = []
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

    func start(_ flow: Flow) throws { try start(.worker(flow)) }

    func start(_ role: Role) throws {
        started += 1
        let port = LocalHTTP.freePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        var arguments: [String]
        switch role {
        case .worker(let flow):
            arguments = [
                "worker", "--flow", flow.rawValue, "--transactional-id", "p2c-\(name)-\(flow.rawValue)-\(started)",
            ]
        case .capture(let side): arguments = ["capture", "--side", side.rawValue]
        case .apply(let side): arguments = ["apply", "--side", side.rawValue]
        }
        let extra = settings[role]
        arguments += [
            "--bootstrap-servers", bootstrap, "--config", configuration, "--topics", topics, "--metrics-port",
            String(port),
        ]
        process.arguments = arguments + (extra?.arguments ?? [])
        if let environment = extra?.environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let log = logs.appendingPathComponent(
            "\(started)-\(role.description.replacingOccurrences(of: " ", with: "-")).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        members.append(Member(role: role, process: process, port: port))
        all.append(members[members.count - 1])
    }

    /// Waits until every member answers 200 on /readyz.
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
    func kill(_ flow: Flow) throws -> Int32 { try kill(.worker(flow)) }

    /// SIGKILLs the first live member of `role`; returns its process id.
    func kill(_ role: Role) throws -> Int32 {
        guard let index = members.firstIndex(where: { $0.role == role && $0.process.isRunning }) else { return 0 }
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
                "\(member.role) \(member.process.processIdentifier) exited with \(member.process.terminationStatus)"
            failures.append(line)
            try start(member.role)
            return line + "; starting a new one"
        }
    }

    /// `p2c_assigned_partitions` from a worker's /metrics; nil when it does not answer.
    func assignedPartitions(_ member: Member) -> Int? {
        metric("p2c_assigned_partitions", of: member).map { Int($0) }
    }

    /// The sum of a metric's samples from a member's /metrics (a family's lines, any labels); nil
    /// when it does not answer or has none.
    func metric(_ name: String, of member: Member) -> Double? {
        guard let body = LocalHTTP.get(port: member.port, path: "/metrics", timeoutSeconds: 1)?.body else {
            return nil
        }
        let values = body.split(separator: "\n").filter {
            $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{")
        }.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        return values.isEmpty ? nil : values.reduce(0, +)
    }

    /// SIGTERMs every worker and waits; a worker that exits other than 0 is a failure.
    func stopAll() {
        for member in members where member.process.isRunning { member.process.terminate() }
        for member in members {
            member.process.waitUntilExit()
            if member.process.terminationStatus != 0 {
                failures.append(
                    "\(member.role) \(member.process.processIdentifier) exited with \(member.process.terminationStatus)"
                )
            }
        }
        members = []
    }
}
