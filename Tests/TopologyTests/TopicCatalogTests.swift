import Foundation
import TestSupport
import Testing
import Topology

@Suite("Topics/ declarations")
struct TopicCatalogTests {
    @Test("The repository's Topics/ loads: every stream flows the way its sides say")
    func repositoryTopics() throws {
        let catalog = try TopicCatalog.load(directory: topicsDirectory)
        // 10 streams of 8 topics each (the two sides' changes, inbound and their dead letters) less
        // the one-way streams' 4 each, and the capture state.
        #expect(catalog.topics.count == 10 * 8 - 3 * 4 + 1)
        #expect(
            catalog.routes(for: .crmToERP).map(\.stream) == [
                .customers, .contacts, .quotes, .orders, .parties, .postaladdresses, .electronicaddresses,
            ])
        #expect(catalog.routes(for: .erpToCRM).map(\.stream) == SyncStream.allCases)
        for flow in Flow.allCases {
            for route in catalog.routes(for: flow) {
                #expect(route.input.name == "\(flow.source.rawValue).\(route.stream.rawValue).changes")
                #expect(route.output.name == "\(flow.target.rawValue).\(route.stream.rawValue).inbound")
                #expect(route.deadLetters.name == route.input.name + ".dlq")
                // Keys keep their partition order only if the target topic is as wide as the source.
                #expect(route.output.partitions == route.input.partitions)
                #expect(route.input.keyScheme.hasPrefix("<company>/"))
            }
        }
        #expect(catalog["crm.orders.changes"]!.partitions >= 12)
        #expect(catalog["erp.orders.changes"]!.partitions >= 12)
        #expect(catalog["crm.products.changes"] == nil)
        #expect(catalog.topics.allSatisfy { $0.replicationFactor == 3 })
    }

    @Test(
        "A bad declaration is refused with the file, topic and reason",
        arguments: [
            (
                #""partitions": 24"#, #""partitions": 0"#,
                #"orders.json: topic "crm.orders.changes": "partitions" must be an integer from 1 to 10000, got 0"#
            ),
            (
                #""role": "changes""#, #""role": "source""#,
                #""role" must be one of changes, inbound, dlq, inbound-dlq, state, got "source""#
            ),
            (
                #""cleanupPolicy": "delete""#, #""cleanupPolicy": "compact""#,
                "cleanupPolicy must be delete: header and lines share a key"
            ),
            (
                #""name": "crm.orders.changes","#, #""name": "crm.order.changes","#,
                #"topic "crm.order.changes": name must be "crm.orders.changes""#
            ),
            (#""replicationFactor": 3,"#, #""replicationFactor": 3, "replicas": 3,"#, #"unknown key "replicas""#),
            (#""replicationFactor": 3,"#, "", #"missing key "replicationFactor""#),
            (#""retentionMs": 604800000,"#, #""retentionMs": true,"#, #""retentionMs" must be an integer"#),
            (
                #""keyScheme": "<company>/<sales order number>""#, #""keyScheme": "<sales order number>""#,
                "keyScheme must be"
            ),
            (#""stream": "orders""#, #""stream": "leads""#, #""stream" must be one of customers"#),
            (#""stream": "orders","#, #""stream": "orders""#, "orders.json: not valid JSON"),
        ] as [(String, String, String)]
    )
    func badDeclaration(original: String, replacement: String, message: String) throws {
        let directory = try copyOfTopics { file, text in
            file == "orders.json"
                ? text.replacingOccurrences(
                    of: original, with: replacement, options: [], range: text.range(of: original)) : text
        }
        #expect {
            _ = try TopicCatalog.load(directory: directory)
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    @Test("A stream missing a topic, or flowing a way it must not, is refused")
    func inconsistentFlows() throws {
        let withoutDLQ = try copyOfTopics { file, text in
            guard file == "quotes.json" else { return text }
            return text.replacingOccurrences(of: "erp.quotes.changes.dlq", with: "erp.quotes.changes.dlx")
        }
        #expect {
            _ = try TopicCatalog.load(directory: withoutDLQ)
        } throws: { error in
            "\(error)".contains(#"name must be "erp.quotes.changes.dlq""#)
        }

        var orders = try TopicCatalog.load(directory: topicsDirectory).topics.filter { $0.stream != .orders }
        #expect(
            throws: TopicCatalogError("stream orders flows crm → erp but topic \"crm.orders.changes\" is not declared")
        ) {
            _ = try TopicCatalog(orders)
        }
        orders = try TopicCatalog.load(directory: topicsDirectory).topics
        orders.append(
            TopicDeclaration(
                name: "crm.invoices.changes", side: .crm, stream: .invoices, role: .changes, partitions: 12,
                replicationFactor: 3, retentionMs: 1, cleanupPolicy: "delete", keyScheme: "<company>/<invoice number>"))
        #expect(throws: TopicCatalogError("topic \"crm.invoices.changes\": stream invoices does not flow crm → erp")) {
            _ = try TopicCatalog(orders)
        }
        #expect(throws: TopicCatalogError.self) {
            _ = try TopicCatalog(orders.dropLast() + [orders[0]])
        }
    }

    @Test("Topics/ is found from $P2C_TOPICS first")
    func defaultDirectory() {
        #expect(TopicCatalog.defaultDirectory(environment: ["P2C_TOPICS": "/srv/topics"]) == "/srv/topics")
    }

    /// A temporary copy of `Topics/` with each file's text passed through `edit`.
    private func copyOfTopics(_ edit: (String, String) -> String) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("topics-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for file in try FileManager.default.contentsOfDirectory(atPath: topicsDirectory) {
            let text = try String(contentsOfFile: topicsDirectory + "/" + file, encoding: .utf8)
            try edit(file, text).write(to: directory.appendingPathComponent(file), atomically: true, encoding: .utf8)
        }
        return directory.path
    }
}
