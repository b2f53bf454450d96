import Foundation
import Runtime
import Simulators

/// `p2c simulate dataverse|finance-operations`: a simulated system over HTTP, for the demo, the
/// tests and trying p2c out.
enum SimulateCommand {
    static let spec = CommandSpec(
        name: "simulate",
        summary:
            "Run a simulated Dataverse or Finance and Operations environment over HTTP (documented behaviour only).",
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
            OptionSpec(
                "data-events", value: "entity:url[:key]",
                help:
                    "finance-operations: post each create, update and delete of a P2C entity to url as a RemoteExecutionContext (?code=key); repeat for several."
            ),
            OptionSpec(
                "readings", value: "list",
                help:
                    "finance-operations, what its docs leave open: patch-missing=404|create (default 404), batch-on-error=stop|continue (default stop)."
            ),
            OptionSpec(
                "company", value: "id",
                help: "finance-operations: the users' default company, all a request sees without cross-company=true.",
                default: "DAT"),
            OptionSpec(
                "page-size", value: "n", help: "finance-operations: records per page of a collection read.",
                default: "10000"),
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
            snapshots, paged delta links, $deletedEntity), webhooks (--webhook). Not yet: $metadata.

            finance-operations: the same token endpoint and limits; at <url>/data/ the P2C entity sets with
            their composite keys (dataAreaId first), $metadata, GET by key and by collection ($select,
            $filter of eq conditions, $orderby, $top, $skip, pages of --page-size with @odata.nextLink),
            POST, PATCH, DELETE, $batch with atomic change sets, the default company unless
            cross-company=true, and data events (--data-events). Runs until SIGINT or SIGTERM.
            """,
        subcommands: ["dataverse", "finance-operations"]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        if arguments.subcommand == "finance-operations" { return try await runFinanceOperations(arguments) }
        func usage(_ message: String) -> UsageError { UsageError(message, command: spec.name) }
        if let option = ["data-events", "readings", "company", "page-size"].first(where: {
            !arguments.strings($0).isEmpty
        }) {
            throw usage("--\(option) is finance-operations'; dataverse takes --webhook")
        }
        let common = try Common(arguments)
        let webhooks: [DataverseSimulator.Webhook]
        do {
            webhooks = try arguments.strings("webhook").map { text throws(UsageError) in try .init(parsing: text) }
        } catch {
            throw usage(error.message)
        }
        let (clients, limits, faults, tenant, port) = (
            common.clients, common.limits, common.faults, common.tenant, common.port
        )
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

    static func runFinanceOperations(_ arguments: ParsedArguments) async throws -> Int32 {
        func usage(_ message: String) -> UsageError { UsageError(message, command: spec.name) }
        let common = try Common(arguments)
        let readings: FinanceOperationsSimulator.Readings
        let dataEvents: [FinanceOperationsSimulator.DataEvents]
        do throws(UsageError) {
            guard arguments.strings("webhook").isEmpty else {
                throw UsageError("--webhook is Dataverse's; finance-operations takes --data-events")
            }
            guard common.faults.deltaExpiry == nil else { throw UsageError("--faults delta-expiry is Dataverse's") }
            dataEvents = try arguments.strings("data-events").map { text throws(UsageError) in
                try .init(parsing: text)
            }
            readings =
                try arguments.string("readings").map { text throws(UsageError) in try .init(parsing: text) } ?? .init()
        } catch {
            throw usage(error.message)
        }
        let (clients, limits, faults, tenant) = (common.clients, common.limits, common.faults, common.tenant)
        let company = arguments.string("company") ?? "DAT"
        guard !company.isEmpty, company.count <= 4 else {
            throw usage("--company expects a legal entity id of 1 to 4 characters, got '\(company)'")
        }
        let pageSize = try arguments.integer("page-size", in: 1...10_000)!
        let port = common.port
        let log = Log([("component", "simulate-finance-operations")])
        let simulator: FinanceOperationsSimulator
        do {
            simulator = try FinanceOperationsSimulator(
                clients: clients, limits: limits, faults: faults, readings: readings, tenantID: tenant, port: port,
                dataEvents: dataEvents, defaultCompany: company, pageSize: pageSize)
        } catch {
            throw usage("port \(port): \(error)")
        }
        let lines = [simulator.baseURL.absoluteString, "tenant \(tenant.uuidString.lowercased())"]
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        log.info("simulated Finance and Operations ready", [("url", .string(simulator.baseURL.absoluteString))])
        let signal = await Signals.termination()
        log.info("stopping", [("signal", .int(Int64(signal)))])
        simulator.stop()
        return 0
    }

    /// What both simulators take: their clients, limits, faults, tenant and port.
    struct Common {
        var clients: [SimulatedClient]
        var limits: ServiceLimits
        var faults: DataverseSimulator.Faults
        var tenant: UUID
        var port: Int

        init(_ arguments: ParsedArguments) throws {
            func usage(_ message: String) -> UsageError { UsageError(message, command: spec.name) }
            do throws(UsageError) {
                clients = try arguments.strings("client").map { text throws(UsageError) in try .init(parsing: text) }
                limits =
                    try arguments.string("limits").map { text throws(UsageError) in try .init(parsing: text) }
                    ?? .init()
                faults =
                    try arguments.string("faults").map { text throws(UsageError) in try .init(parsing: text) }
                    ?? .init()
            } catch {
                throw usage(error.message)
            }
            guard !clients.isEmpty else { throw usage("give at least one --client <client id GUID>:<secret>") }
            if let text = arguments.string("tenant") {
                guard let id = UUID(uuidString: text) else { throw usage("--tenant expects a GUID, got '\(text)'") }
                tenant = id
            } else {
                tenant = UUID()
            }
            port = try arguments.integer("port", in: 0...65_535)!
        }
    }
}
