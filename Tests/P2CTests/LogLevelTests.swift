import Foundation
import TestSupport
import Testing

/// `P2C_LOG_LEVEL` is how an operator sees what a process does below `info`, librdkafka's own debug
/// lines (`P2C_KAFKA_DEBUG`) among them.
@Suite("Log level")
struct LogLevelTests {
    @Test(
        "P2C_LOG_LEVEL=debug shows librdkafka's debug lines, the default hides them, and a bad level fails with one line and exit 2"
    )
    func debugLines() throws {
        // A client that cannot connect logs its start-up at debug level, then fails (10 s).
        let arguments = ["topics", "plan", "--bootstrap-servers", "127.0.0.1:1", "--topics", topicsDirectory]
        let debug = try Spawned(
            p2cBinary, arguments, environment: ["P2C_LOG_LEVEL": "debug", "P2C_KAFKA_DEBUG": "generic"])
        let quiet = try Spawned(p2cBinary, arguments, environment: ["P2C_KAFKA_DEBUG": "generic"])
        let (debugStatus, _, debugErrors) = debug.finish()
        let (quietStatus, _, quietErrors) = quiet.finish()
        #expect(debugStatus == 1 && quietStatus == 1)
        #expect(debugErrors.contains(#""level":"debug""#) && debugErrors.contains(#""component":"librdkafka""#))
        #expect(!quietErrors.contains(#""level":"debug""#))
        #expect(quietErrors.contains("cannot reach the cluster"))

        let (status, _, errors) = try Spawned(
            p2cBinary, ["topics", "list", "--topics", topicsDirectory], environment: ["P2C_LOG_LEVEL": "loud"]
        ).finish()
        #expect(status == 2)
        #expect(errors == "p2c: P2C_LOG_LEVEL: expected debug, info, warning or error, got 'loud'\n")
    }
}
