import Foundation
import Testing

@Suite("p2c simulate dataverse, as an operator or a test starts it")
struct SimulateCommandTests {
    @Test(
        "It prints its base URL first, the tenant and each application user, answers over HTTP and exits 0 on SIGTERM")
    func startAndStop() async throws {
        let client = "0b6f3a0e-2a7c-4f55-9d51-0c8b0a2c3d41"
        let simulator = try Spawned(
            p2cBinary,
            [
                "simulate", "dataverse", "--client", "\(client):s3cret", "--client",
                "1c2d3e4f-0000-4000-8000-000000000001:other",
            ])
        let url = simulator.readLine() ?? ""
        let tenant = simulator.readLine() ?? ""
        let first = simulator.readLine() ?? ""
        let second = simulator.readLine() ?? ""
        #expect(url.hasPrefix("http://127.0.0.1:"))
        #expect(tenant.hasPrefix("tenant "))
        #expect(first.hasPrefix("application user \(client) "))
        #expect(second.hasPrefix("application user 1c2d3e4f-0000-4000-8000-000000000001 "))
        let port = Int(url.split(separator: ":").last ?? "") ?? 0
        let answer = await get(port, "/api/data/v9.2/WhoAmI")
        #expect(answer?.status == 401)
        #expect(simulator.stop(SIGTERM) == 0)
    }

    @Test(
        "A bad flag fails with one line naming it and exit code 2",
        arguments: [
            (["simulate", "dataverse"], "give at least one --client"),
            (["simulate", "dataverse", "--client", "not-a-guid:secret"], "--client expects <client id GUID>:<secret>"),
            (
                [
                    "simulate", "dataverse", "--client", "0b6f3a0e-2a7c-4f55-9d51-0c8b0a2c3d41:s", "--limits",
                    "requests=0",
                ], "--limits"
            ),
            (
                ["simulate", "dataverse", "--client", "0b6f3a0e-2a7c-4f55-9d51-0c8b0a2c3d41:s", "--faults", "503=2"],
                "--faults"
            ),
            (
                ["simulate", "dataverse", "--client", "0b6f3a0e-2a7c-4f55-9d51-0c8b0a2c3d41:s", "--company", "USMF"],
                "--company is finance-operations'; dataverse takes --webhook"
            ),
            (["simulate", "sap"], "unknown subcommand 'sap'"),
            (["simulate", "finance-operations"], "give at least one --client"),
            (
                [
                    "simulate", "finance-operations", "--client", "0b6f3a0e-2a7c-4f55-9d51-0c8b0a2c3d41:s",
                    "--readings", "patch-missing=maybe",
                ],
                "--readings"
            ),
            (
                [
                    "simulate", "finance-operations", "--client", "0b6f3a0e-2a7c-4f55-9d51-0c8b0a2c3d41:s",
                    "--data-events", "Vendors:http://127.0.0.1:1/x",
                ],
                "not a P2C entity"
            ),
        ])
    func badFlags(arguments: [String], message: String) throws {
        let result = try run(p2cBinary, arguments)
        #expect(result.status == 2)
        #expect(result.stderr.contains(message))
        #expect(result.stderr.split(separator: "\n").count == 1)
    }
}
