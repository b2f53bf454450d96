import Foundation
import Runtime
import Simulators

/// `p2c simulate dataverse`: a simulated system over HTTP, for the demo, the tests and trying p2c out.
enum SimulateCommand {
    static let spec = CommandSpec(
        name: "simulate",
        summary: "Run a simulated Dataverse environment over HTTP (documented behaviour only).",
        options: [
            OptionSpec(
                "client", value: "id:secret",
                help:
                    "An Entra application (GUID client id) and its secret, registered as an application user; repeat for several."
            ),
            OptionSpec("tenant", value: "guid", help: "The tenant id of the token endpoint. Default: a new GUID."),
            OptionSpec(
                "limits", value: "list",
                help:
                    "Limits per user: requests=6000,window=300,concurrent=52,exec=1200 (the documented defaults), and the execution-time model write=<n>ms,read=<n>ms (default 0: free)."
            ),
            OptionSpec(
                "faults", value: "list", help: "Injected faults: 503=<share 0..1>,latency=<n>ms. Default: none."),
            OptionSpec(
                "webhook", value: "table:url[:key]",
                help:
                    "Post each Create, Update and Delete of a P2C table to url as a RemoteExecutionContext (?code=key); repeat for several."
            ),
            OptionSpec("port", value: "port", help: "Port on 127.0.0.1; 0 picks one.", default: "0"),
        ],
        discussion: """
            Prints the base URL as the first line of standard output: the environment URL (its Web API at
            <url>/api/data/v9.2/) and the authority of its token endpoint (<url>/<tenant>/oauth2/v2.0/token)
            in one. Then the tenant id and, per --client, "application user <client id> <systemuserid>".
            Simulated so far: the client-credentials token endpoint, bearer authentication, WhoAmI,
            systemusers?$filter=applicationid eq <id>, the service protection limits (429 with Retry-After:
            requests, execution time, concurrency), the prospect-to-cash tables and every table their
            lookups reference, with alternate keys and table definitions (EntityDefinitions(LogicalName=...)
            with Keys and ManyToOneRelationships): GET by key or by simple $filter with odata.maxpagesize
            paging, PATCH upserts with If-Match / If-None-Match, POST, DELETE and @odata.bind, $batch with
            atomic change sets and odata.continue-on-error, and change tracking (odata.track-changes
            snapshots, paged delta links, $deletedEntity), webhooks (--webhook). Not yet: $metadata. Runs
            until SIGINT or SIGTERM.
            """,
        subcommands: ["dataverse"]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        func usage(_ message: String) -> UsageError { UsageError(message, command: spec.name) }
        let clients: [DataverseSimulator.Client]
        let limits: DataverseSimulator.Limits
        let faults: DataverseSimulator.Faults
        let webhooks: [DataverseSimulator.Webhook]
        do {
            webhooks = try arguments.strings("webhook").map { text throws(UsageError) in try .init(parsing: text) }
            clients = try arguments.strings("client").map { text throws(UsageError) in try .init(parsing: text) }
            limits =
                try arguments.string("limits").map { text throws(UsageError) in try .init(parsing: text) } ?? .init()
            faults =
                try arguments.string("faults").map { text throws(UsageError) in try .init(parsing: text) } ?? .init()
        } catch {
            throw usage(error.message)
        }
        guard !clients.isEmpty else { throw usage("give at least one --client <client id GUID>:<secret>") }
        let tenant: UUID
        if let text = arguments.string("tenant") {
            guard let id = UUID(uuidString: text) else { throw usage("--tenant expects a GUID, got '\(text)'") }
            tenant = id
        } else {
            tenant = UUID()
        }
        let port = try arguments.integer("port", in: 0...65_535)!
        let log = Log([("component", "simulate-dataverse")])
        let simulator: DataverseSimulator
        do {
            simulator = try DataverseSimulator(
                clients: clients, limits: limits, faults: faults, tenantID: tenant, port: port, webhooks: webhooks)
        } catch {
            throw usage("port \(port): \(error)")
        }
        var lines = [simulator.baseURL.absoluteString, "tenant \(tenant.uuidString.lowercased())"]
        for client in clients {
            lines.append(
                "application user \(client.id.uuidString.lowercased()) \(client.systemUserID.uuidString.lowercased())")
        }
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        log.info("simulated Dataverse ready", [("url", .string(simulator.baseURL.absoluteString))])
        let signal = await Signals.termination()
        log.info("stopping", [("signal", .int(Int64(signal)))])
        simulator.stop()
        return 0
    }
}
