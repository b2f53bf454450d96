import Capture
import Connectors
import Dataverse
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Simulators
import TestSupport
import Testing
import Topology

/// Its own broker, so that its topics hold only this story's events.
private let broker = captureBroker()

@Suite("p2c capture --mode webhook: a post's word is checked against Dataverse", .serialized)
struct WebhookTrustTests {
    let person = DataverseSimulator.Client(id: UUID(), secret: "person-secret")
    let capture = DataverseSimulator.Client(id: UUID(), secret: "capture-secret")

    private func receiver(
        _ simulator: DataverseSimulator, port: Int, http: HTTPClient = HTTPClient()
    ) throws -> WebhookReceiver {
        var configuration = CaptureConfiguration()
        configuration.kafka = KafkaConfiguration(bootstrapServers: broker.cluster.bootstrapServers, clientID: "trust")
        configuration.company = "USMF"
        return try WebhookReceiver(
            configuration: configuration, catalog: broker.catalog,
            reader: DataverseContextReader(client: client(simulator, capture, http: http), streams: []),
            applyUsers: [],
            key: "hook-key", port: port, deliveryTimeout: .seconds(2))
    }

    /// A `RemoteExecutionContext` of an account, as a webhook posts it, with `attributes` in the
    /// image the message carries; the answer's status and text.
    private func post(
        _ message: String, id: UUID, _ attributes: JSONObject, to port: Int, key: (header: String?, code: String?)
    ) async throws -> (status: Int, text: String) {
        let entity: JSONValue = .object([
            "Attributes": .array(attributes.fields.map { .object(["key": .string($0.key), "value": $0.value]) }),
            "LogicalName": "account", "Id": .string(id.uuidString.lowercased()),
        ])
        let image: JSONValue = .array([.object(["key": "image", "value": entity])])
        let context: JSONObject = [
            "MessageName": .string(message), "PrimaryEntityName": "account",
            "PrimaryEntityId": .string(id.uuidString.lowercased()), "UserId": .string(person.id.uuidString),
            "OperationId": .string(UUID().uuidString),
            message == "Delete" ? "PreEntityImages" : "PostEntityImages": image,
            "InputParameters": .array([.object(["key": "Target", "value": entity])]),
        ]
        var headers = HTTPHeaders([("Content-Type", "application/json")])
        if let header = key.header { headers.add("x-p2c-webhook-key", header) }
        let query = key.code.map { "?code=\($0)" } ?? ""
        let answer = try await HTTPClient().send(
            HTTPClientRequest(
                method: "POST", url: URL(string: "http://127.0.0.1:\(port)/dataverse\(query)")!, headers: headers,
                body: Array(JSONValue.object(context).jsonText.utf8)))
        return (answer.status, String(decoding: answer.body, as: UTF8.self))
    }

    private func accountEvents() throws -> [KafkaRecord] {
        try read("crm.customers.changes", from: broker)
    }

    @Test(
        "Posts holding the key but not the truth publish what Dataverse holds: an update of an account it does not have publishes nothing, a delete of an account it still has publishes the account, a delete whose key another row still has nothing; a real change posted with the key in a header is published as Dataverse has it; a wrong key is refused"
    )
    func forgedPosts() async throws {
        let simulator = try DataverseSimulator(clients: [person, capture])
        defer { simulator.stop() }
        let port = LocalHTTP.freePort()
        let receiver = try self.receiver(simulator, port: port)
        defer { receiver.stop() }
        let seller = client(simulator, person)
        let created = try await seller.send(
            "PATCH", "accounts(accountnumber='TR-1')", body: ["name": "Real Ltd", "customertypecode": .number("3")])
        #expect(created.status == 204)
        let row = try await seller.get("accounts(accountnumber='TR-1')?$select=accountid")
        let id = try #require(row["accountid"]?.stringValue.flatMap(UUID.init(uuidString:)))
        let code = (header: String?.none, code: String?("hook-key"))

        // A wrong key, as a header or a code: refused, nothing read.
        #expect(try await post("Update", id: id, ["name": "X"], to: port, key: ("wrong", nil)).status == 401)
        #expect(try await post("Update", id: id, ["name": "X"], to: port, key: (nil, "wrong")).status == 401)
        #expect(receiver.metrics.refusedPosts.value == 2)

        // An account Dataverse does not have, "updated" to the attacker's name.
        let forged = try await post(
            "Update", id: UUID(), ["accountnumber": "TR-9", "name": "Attacker Ltd", "customertypecode": .number("3")],
            to: port, key: code)
        #expect(forged.status == 200 && forged.text == "nothing to publish\n")
        // A delete of an account that exists: the account as it is, not a delete.
        let notDeleted = try await post("Delete", id: id, ["accountnumber": "TR-1"], to: port, key: code)
        #expect(notDeleted.status == 200 && notDeleted.text == "published\n")
        // A delete of a row that is gone, claiming the key of one that exists: nothing.
        let stolenKey = try await post("Delete", id: UUID(), ["accountnumber": "TR-1"], to: port, key: code)
        #expect(stolenKey.status == 200 && stolenKey.text == "nothing to publish\n")
        // A real change, the key in a header: what Dataverse holds, not what the post says.
        #expect(
            try await seller.send("PATCH", "accounts(accountnumber='TR-1')", body: ["name": "Real Two"]).status == 204)
        let real = try await post(
            "Update", id: id, ["accountnumber": "TR-1", "name": "Posted Name"], to: port, key: ("hook-key", nil))
        #expect(real.status == 200 && real.text == "published\n")

        let events = try await AsyncBridge.onThread { try accountEvents() }
        #expect(events.map(\.type) == ["account.upserted", "account.upserted"])
        #expect(events.map { $0.data["name"] } == [.string("Real Ltd"), .string("Real Two")])
        #expect(events.allSatisfy { $0.data["accountnumber"] == "TR-1" })
        #expect(receiver.metrics.superseded.value == 2)
    }

    @Test("A post whose row cannot be read back (Dataverse answers 503) is answered 503, so that Dataverse retries it")
    func readBackFails() async throws {
        var faults = DataverseSimulator.Faults()
        faults.unavailable = 1
        let simulator = try DataverseSimulator(clients: [person, capture], faults: faults)
        defer { simulator.stop() }
        let port = LocalHTTP.freePort()
        // Two quick attempts, so that the 503 reaches the sender well within its own timeout.
        var quick = HTTPClient.Configuration()
        quick.maxAttempts = 2
        quick.initialBackoff = .milliseconds(20)
        let receiver = try self.receiver(simulator, port: port, http: HTTPClient(configuration: quick))
        defer { receiver.stop() }
        let answer = try await post(
            "Update", id: UUID(), ["accountnumber": "TR-5", "name": "Any"], to: port, key: (nil, "hook-key"))
        #expect(answer.status == 503)
        #expect(receiver.metrics.published.value == 0)
    }
}
