import Foundation
import Kafka
import Runtime

// librdkafka's own log lines become JSON lines like ours (syslog levels: 3 error, 4 warning).
let kafkaLog = Log([("component", "librdkafka")])
KafkaLog.setHandler { entry in
    let fields: [(String, LogValue)] = [("client", .string(entry.client)), ("facility", .string(entry.facility))]
    switch entry.level {
    case ...3: kafkaLog.error(entry.message, fields)
    case 4: kafkaLog.warning(entry.message, fields)
    case 5...6: kafkaLog.info(entry.message, fields)
    default: kafkaLog.debug(entry.message, fields)
    }
}

HTTPServer.raiseDescriptorLimit()

/// Every command: its options and what runs it.
let commands: [(spec: CommandSpec, run: @Sendable (ParsedArguments) async throws -> Int32)] = [
    (DemoCommand.spec, DemoCommand.run),
    (BrokerCommand.spec, BrokerCommand.run),
    (BenchCommand.spec, BenchCommand.run),
    (MapCommand.spec, MapCommand.run),
    (WorkerCommand.spec, WorkerCommand.run),
    (TopicsCommand.spec, TopicsCommand.run),
    (DLQCommand.spec, DLQCommand.run),
    (ReplayCommand.spec, ReplayCommand.run),
    (SimulateCommand.spec, SimulateCommand.run),
    (ReconcileCommand.spec, ReconcileCommand.run),
    (CaptureCommand.spec, CaptureCommand.run),
    (ApplyCommand.spec, ApplyCommand.run),
    (BootstrapCommand.spec, BootstrapCommand.run),
    (SettingsCommand.spec, SettingsCommand.run),
]

let topLevelHelp = """
    p2c: prospect-to-cash sync between a CRM and an ERP over Kafka

    usage: p2c <command> [options]

    commands:
    \(commands.map { "  \($0.spec.name.padding(toLength: 10, withPad: " ", startingAt: 0))\($0.spec.summary)" }.joined(separator: "\n"))

    Run 'p2c <command> --help' for a command's options.
    """

let arguments = Array(CommandLine.arguments.dropFirst())
guard Log.configuredLevel != nil else {
    let value = ProcessInfo.processInfo.environment["P2C_LOG_LEVEL"] ?? ""
    FileHandle.standardError.write(
        Data("p2c: P2C_LOG_LEVEL: expected debug, info, warning or error, got '\(value)'\n".utf8))
    exit(2)
}
guard let name = arguments.first, name != "--help", name != "-h", name != "help" else {
    print(topLevelHelp)
    exit(arguments.isEmpty ? 2 : 0)
}
guard let command = commands.first(where: { $0.spec.name == name }) else {
    FileHandle.standardError.write(Data("p2c: unknown command '\(name)' (see 'p2c --help')\n".utf8))
    exit(2)
}

do {
    let parsed = try command.spec.parse(Array(arguments.dropFirst()))
    if parsed.wantsHelp {
        print(command.spec.help)
        exit(0)
    }
    exit(try await command.run(parsed))
} catch let error as UsageError {
    FileHandle.standardError.write(Data("\(error)\n".utf8))
    exit(2)
} catch {
    FileHandle.standardError.write(Data("p2c \(name): \(error)\n".utf8))
    exit(1)
}
