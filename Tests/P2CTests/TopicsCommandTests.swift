import Foundation
import Kafka
import TestSupport
import Testing

@Suite("p2c topics, against the embedded broker", .serialized, .timeLimit(.minutes(2)))
struct TopicsCommandTests {
    @Test("list prints every declaration without a cluster")
    func listWithoutCluster() throws {
        let result = try run(p2cBinary, ["topics", "list", "--topics", topicsDirectory])
        #expect(result.status == 0)
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 69)
        #expect(lines.contains { $0.hasPrefix("crm.orders.changes  orders crm changes  partitions=24 replicas=3") })
    }

    @Test("On an empty cluster, plan lists all 69 to create; apply on the embedded broker says it cannot, exit 1")
    func emptyCluster() throws {
        let cluster = try EmbeddedCluster(brokers: 1)
        let plan = try run(
            p2cBinary, ["topics", "plan", "--bootstrap-servers", cluster.bootstrapServers, "--topics", topicsDirectory])
        #expect(plan.status == 0)
        #expect(
            plan.stdout.contains(
                "create   crm.orders.changes  partitions=24 replicas=3 cleanup.policy=delete retention.ms=604800000"))
        #expect(plan.stdout.contains("69 to create, 0 in place"))
        let apply = try run(
            p2cBinary,
            ["topics", "apply", "--bootstrap-servers", cluster.bootstrapServers, "--topics", topicsDirectory])
        #expect(apply.status == 1)
        #expect(apply.stderr.contains("embedded broker (librdkafka's mock), which cannot create topics"))
    }

    @Test("Against p2c broker everything is in place; a changed partition count is reported, not applied")
    func brokerInPlace() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("topics-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for file in try FileManager.default.contentsOfDirectory(atPath: topicsDirectory) {
            var text = try String(contentsOfFile: topicsDirectory + "/" + file, encoding: .utf8)
            if file == "orders.json" {
                text = text.replacingOccurrences(of: "\"partitions\": 24", with: "\"partitions\": 30")
            }
            try text.write(to: directory.appendingPathComponent(file), atomically: true, encoding: .utf8)
        }
        let (plan, changed, apply) = try await Blocking.run {
            let broker = try Spawned(p2cBinary, ["broker", "--topics", topicsDirectory])
            let bootstrap = broker.readLine() ?? ""
            defer { _ = broker.stop() }
            return (
                try run(p2cBinary, ["topics", "plan", "--bootstrap-servers", bootstrap, "--topics", topicsDirectory]),
                try run(p2cBinary, ["topics", "plan", "--bootstrap-servers", bootstrap, "--topics", directory.path]),
                try run(p2cBinary, ["topics", "apply", "--bootstrap-servers", bootstrap, "--topics", topicsDirectory])
            )
        }
        #expect(plan.stdout.contains("0 to create, 69 in place"))
        #expect(changed.stdout.contains("differs  crm.orders.changes  declared partitions=30, cluster has 24"))
        #expect(apply.status == 0)
        #expect(apply.stdout.contains("nothing to create"))
    }

    @Test(
        "A missing or unknown subcommand, or plan without a cluster, fails with one line and exit 2",
        arguments: [
            (["topics"], "expected one of list, plan, apply"),
            (["topics", "frob"], "unknown subcommand 'frob'"),
            (["topics", "plan"], "plan needs --bootstrap-servers"),
        ] as [([String], String)])
    func usage(arguments: [String], message: String) throws {
        let result = try run(p2cBinary, arguments + ["--topics", topicsDirectory])
        #expect(result.status == 2)
        #expect(result.stderr.contains(message))
        #expect(result.stderr.split(separator: "\n").count == 1)
    }
}
