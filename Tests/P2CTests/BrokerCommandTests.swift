import Foundation
import Kafka
import TestSupport
import Testing
import Topology

@Suite("p2c broker, as another process sees it", .serialized, .timeLimit(.minutes(2)))
struct BrokerCommandTests {
    @Test(
        "It prints bootstrap.servers first, serves every Topics/ topic with its partitions to our client and to kcat, and exits 0 on SIGTERM"
    )
    func brokerServesOtherProcesses() async throws {
        let catalog = try TopicCatalog.load(directory: topicsDirectory)
        let kcat = try #require(which("kcat"), "kcat is needed (.ci/setup installs it)")
        let outcome = try await Blocking.run {
            let broker = try Spawned(p2cBinary, ["broker", "--brokers", "3", "--topics", topicsDirectory])
            let bootstrap = broker.readLine() ?? ""
            let producer = try KafkaProducer(
                configuration: ProducerConfiguration(kafka: KafkaConfiguration(bootstrapServers: bootstrap)))
            var partitions: [String: Int] = [:]
            for topic in catalog.topics { partitions[topic.name] = try producer.partitionCount(of: topic.name) }
            try producer.send(
                OutgoingRecord(
                    topic: "crm.orders.changes", key: Array("USMF/C000123".utf8),
                    value: Array(#"{"salesordernumber":"C000123"}"#.utf8),
                    headers: [KafkaHeader("ce_type", "salesorder.upserted")]))
            let report = try producer.flush(timeout: .seconds(10)).first
            let read = try run(
                kcat,
                [
                    "-b", bootstrap, "-C", "-t", "crm.orders.changes", "-p", String(report?.partition ?? 0), "-o",
                    "beginning", "-e", "-q",
                    "-f", "%k|%s|%h\n",
                ])
            let status = broker.stop(SIGTERM)
            return (bootstrap, partitions, report, read.stdout, status, broker.standardError)
        }
        let (bootstrap, partitions, report, kcatOutput, status, log) = outcome
        #expect(bootstrap.hasPrefix("127.0.0.1:"))
        #expect(partitions == Dictionary(uniqueKeysWithValues: catalog.topics.map { ($0.name, $0.partitions) }))
        #expect(report?.error == nil)
        #expect(kcatOutput == #"USMF/C000123|{"salesordernumber":"C000123"}|ce_type=salesorder.upserted"# + "\n")
        #expect(status == 0)
        #expect(log.contains(#""msg":"embedded broker ready""#))
        #expect(log.contains(#""msg":"stopping""#))
    }

    @Test(
        "A bad flag or Topics/ folder fails with one line naming it and exit code 2",
        arguments: [
            (["broker", "--brokers", "9"], "option '--brokers' expects an integer from 1 to 3, got '9'"),
            (["broker", "--brokers"], "option '--brokers' needs a value"),
            (["broker", "--port", "9092"], "unknown option '--port'"),
            (["broker", "--topics", "/nonexistent/topics"], "/nonexistent/topics: cannot list topic declarations"),
            (["frobnicate"], "unknown command 'frobnicate'"),
            ([], "usage: p2c <command>"),
        ] as [([String], String)]
    )
    func badInvocation(arguments: [String], message: String) throws {
        let result = try run(p2cBinary, arguments)
        #expect(result.status == 2)
        let output = arguments.isEmpty ? result.stdout : result.stderr
        #expect(output.contains(message))
        if !arguments.isEmpty {
            #expect(result.stderr.split(separator: "\n").count == 1)
        }
    }

    @Test("--help explains the command and exits 0")
    func help() throws {
        let result = try run(p2cBinary, ["broker", "--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("usage: p2c broker [options]"))
        #expect(result.stdout.contains("--brokers <n>"))
        #expect(result.stdout.contains("bootstrap.servers"))
    }
}
