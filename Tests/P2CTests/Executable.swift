import Foundation
import Kafka

/// The built `p2c` binary, beside the test bundle (or `$P2C_BINARY`).
let p2cBinary: String = {
    if let configured = ProcessInfo.processInfo.environment["P2C_BINARY"] { return configured }
    return URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("p2c").path
}()

/// The repository's `Topics/` folder.
let topicsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Topics").path

/// A process started by a test, with its output captured.
final class Spawned: @unchecked Sendable {
    // @unchecked: Process and FileHandle are used from one test at a time.
    let process = Process()
    private let stdout = Pipe()
    private let stderr = Pipe()
    private var pending = Data()

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
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

    /// Waits for the process to end and returns its status, standard output and standard error.
    func finish() -> (status: Int32, stdout: String, stderr: String) {
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (
            process.terminationStatus, String(decoding: pending + out, as: UTF8.self),
            String(decoding: err, as: UTF8.self)
        )
    }

    var standardError: String { String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
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
