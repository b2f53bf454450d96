import Foundation
import TestSupport
import Testing

@Suite("p2c settings: one table of every setting, and every source of a value checked alike")
struct SettingsCommandTests {
    private func run(
        _ arguments: [String], environment: [String: String] = [:]
    ) throws -> (
        status: Int32, stdout: String, stderr: String
    ) {
        var clean = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("P2C_") }
        clean["P2C_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
        return try Spawned(p2cBinary, arguments, environment: clean.merging(environment) { $1 }).finish()
    }

    @Test(
        "The table names every setting of every command with its file key, variable, flag and default; the p2c article shows the same table; one command's settings on request"
    )
    func table() throws {
        let all = try run(["settings"])
        #expect(all.status == 0, "\(all.stdout)")
        let lines = all.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "| file key | variable | flag | commands | default | meaning |")
        for expected in [
            "| `maxConcurrency` | `P2C_APPLY_MAX_CONCURRENCY` | `--max-concurrency` | apply | 8 |",
            "| `pollIntervalMs` | `P2C_CAPTURE_POLL_INTERVAL_MS` | `--poll-interval-ms` | capture | 5000 |",
            "| `commitIntervalMs` | `P2C_COMMIT_INTERVAL_MS` |  | worker | 100 |",
            "| | | `--page-size <n>` | reconcile | 1000 |",
        ] {
            #expect(lines.contains { $0.hasPrefix(expected) }, "\(expected)")
        }
        let article = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/p2c/p2c.docc/p2c.md")
        let text = try String(contentsOf: article, encoding: .utf8)
        #expect(text.contains(all.stdout.trimmingCharacters(in: .newlines)), "run p2c settings into the article")

        let apply = try run(["settings", "--command", "apply"])
        #expect(apply.status == 0)
        #expect(apply.stdout.contains("P2C_APPLY_BATCH_DOCUMENTS") && !apply.stdout.contains("P2C_CAPTURE_MODE"))
        let bad = try run(["settings", "--command", "nothing"])
        #expect(bad.status == 2 && bad.stderr.contains("--command: no command 'nothing'"))
    }

    @Test(
        "A bad value is named as the user wrote it: the flag, the variable or the file's key, with the values it takes",
        arguments: [
            (
                ["capture", "--company", "USMF", "--poll-interval-ms", "5"], [String: String](), nil as String?,
                "--poll-interval-ms must be an integer from 100 to 3600000, got '5'"
            ),
            (
                ["apply", "--side", "sap"], [:], nil, "--side must be one of crm, erp, got 'sap'"
            ),
            (
                ["apply"], ["P2C_APPLY_BATCH_DOCUMENTS": "0"], nil,
                "P2C_APPLY_BATCH_DOCUMENTS must be an integer from 1 to 1000, got '0'"
            ),
            (
                ["capture"], [:], #"{"side": "erp", "webhookMaxRequests": 0}"#,
                "webhookMaxRequests must be an integer from 1 to 256, got 0"
            ),
            (["worker"], [:], #"{"streams": "orders"}"#, "streams must be stream names from customers"),
            (["apply"], [:], #"{"passThrough": 1}"#, "passThrough must be true or false, got 1"),
            // A file may hold other commands' keys; their values are checked all the same.
            (["worker"], [:], #"{"mode": "push"}"#, "mode must be one of poll, webhook, got 'push'"),
        ] as [([String], [String: String], String?, String)])
    func named(arguments: [String], environment: [String: String], file: String?, message: String) throws {
        var arguments = arguments + ["--topics", topicsDirectory]
        if let file {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("settings-\(UUID()).json")
            try Data(file.utf8).write(to: path)
            arguments += ["--config", path.path]
        }
        let result = try run(arguments, environment: environment)
        #expect(result.status == 2)
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test("A variable of another command is not this command's to check: a worker starts beside P2C_CAPTURE_MODE=x")
    func otherCommandsVariables() throws {
        let result = try run(["worker", "--flow", "sideways"], environment: ["P2C_CAPTURE_MODE": "x"])
        // The worker's own bad flag is what fails, not capture's variable.
        #expect(result.status == 2 && result.stderr.contains("--flow must be one of"), "\(result.stderr)")
    }
}
