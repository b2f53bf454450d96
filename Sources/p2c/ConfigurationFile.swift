import Apply
import Capture
import Foundation
import Kafka
import ProspectToCash
import Runtime
import Topology
import Worker

/// The JSON configuration file the commands share, with its `P2C_*` variables and flags
/// (`Setting.all`): one place that reads and checks them.
struct ConfigurationFile {
    var worker = WorkerConfiguration()
    /// Every setting of the command, from the file, the environment and the flags.
    var settings = SettingValues()
    /// The file as read, for its objects (`dataverse`, `fno`).
    var object: [String: Any] = [:]
    var mapping: MappingConfiguration {
        get { worker.mapping }
        set { worker.mapping = newValue }
    }

    init() {}

    /// Loads `path` (or the defaults when nil), then `command`'s variables, then its flags in
    /// `arguments`; a bad value fails with one line naming what the user wrote.
    static func load(
        _ path: String?, command: String, arguments: ParsedArguments? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> ConfigurationFile {
        var file = ConfigurationFile()
        let origin = path.map { "\($0): " } ?? ""
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw UsageError("--config: cannot read \(path)", command: command)
            }
            guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw UsageError("\(path): not a JSON object", command: command)
            }
            if let unknown = object.keys.sorted().first(where: { !Setting.fileKeys.contains($0) }) {
                throw UsageError("\(path): unknown key \"\(unknown)\"", command: command)
            }
            file.object = object
            if let mapping = object["mapping"] {
                if let unknown = MappingConfiguration.unknownKey(in: mapping) {
                    throw UsageError("\(path): unknown key \"mapping.\(unknown)\"", command: command)
                }
                do {
                    let json = try JSONSerialization.data(withJSONObject: mapping)
                    file.mapping = try JSONDecoder().decode(MappingConfiguration.self, from: json)
                } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
                    let DecodingError.dataCorrupted(context)
                {
                    throw UsageError(
                        "\(path): mapping.\(keyPath(context)): \(context.debugDescription)", command: command)
                } catch let DecodingError.keyNotFound(key, context) {
                    throw UsageError("\(path): mapping.\(keyPath(context, key)) is missing", command: command)
                } catch {
                    throw UsageError("\(path): mapping: \(error)", command: command)
                }
            }
            if let value = object["kafka"] {
                guard let properties = value as? [String: Any] else {
                    throw UsageError("\(path): kafka must be an object of librdkafka properties", command: command)
                }
                for (name, raw) in properties {
                    guard let text = (raw as? String) ?? (raw as? NSNumber).map({ "\($0)" }) else {
                        throw UsageError("\(path): kafka.\(name) must be a string or a number", command: command)
                    }
                    file.worker.kafka.properties[name] = text
                }
            }
        }
        do {
            // A file's bad value is named by the file; a variable's or a flag's by itself.
            _ = try SettingValues(command: command, file: file.object, environment: [:], arguments: nil)
        } catch {
            throw UsageError("\(origin)\(error.message)", command: command)
        }
        do {
            file.settings = try SettingValues(
                command: command, file: file.object, environment: environment, arguments: arguments)
        } catch {
            throw UsageError(error.message, command: command)
        }
        file.worker.kafka.properties.merge(Self.kafkaProperties(environment)) { $1 }
        file.applyWorkerSettings()
        return file
    }

    /// The system the command talks to (`side`), `fallback` when none is set.
    func side(or fallback: Side) -> Side { settings.string("side").flatMap(Side.init(rawValue:)) ?? fallback }

    /// The settings every fleet member shares, from the worker's: streams, cluster, group,
    /// session and shutdown timeouts.
    func applyMemberSettings<Configuration: MemberConfiguration>(to configuration: inout Configuration) {
        configuration.streams = worker.streams
        configuration.kafka = worker.kafka
        configuration.groupID = worker.groupID
        configuration.sessionTimeout = worker.sessionTimeout
        configuration.shutdownTimeout = worker.shutdownTimeout
    }

    /// The settings a `WorkerConfiguration` holds: the worker's, and those apply and capture share.
    private mutating func applyWorkerSettings() {
        if let flow = settings.string("flow").flatMap(Flow.init(rawValue:)) { worker.flow = flow }
        if let streams = settings.streams("streams") { worker.streams = streams }
        if let delivery = settings.string("delivery").flatMap(WorkerConfiguration.Delivery.init(rawValue:)) {
            worker.delivery = delivery
        }
        if let text = settings.string("bootstrapServers") { worker.kafka.bootstrapServers = text }
        if let text = settings.string("clientId") { worker.kafka.clientID = text }
        if let text = settings.string("groupId") { worker.groupID = text }
        if let text = settings.string("transactionalId") { worker.transactionalID = text }
        if let text = settings.string("groupInstanceId") { worker.groupInstanceID = text }
        if let text = settings.string("listenAddress") { worker.listenAddress = text }
        let durations: [(String, WritableKeyPath<WorkerConfiguration, Duration>)] = [
            ("commitIntervalMs", \.commitInterval), ("sessionTimeoutMs", \.sessionTimeout),
            ("shutdownTimeoutMs", \.shutdownTimeout), ("transactionTimeoutMs", \.transactionTimeout),
        ]
        for (name, path) in durations {
            if let duration = settings.milliseconds(name) { worker[keyPath: path] = duration }
        }
        if let number = settings.integer("commitMaxRecords") { worker.commitMaxRecords = number }
        if let number = settings.integer("metricsPort") { worker.metricsPort = number }
        if let seconds = settings.integer("watchdogSeconds") { worker.watchdog = .seconds(seconds) }
        if let flag = settings.bool("commitOffsetsOutsideTransaction") { worker.commitOffsetsOutsideTransaction = flag }
        if let flag = settings.bool("passThrough") { worker.passThrough = flag }
    }

    /// librdkafka properties from `P2C_KAFKA_<PROPERTY>` variables (`P2C_KAFKA_SASL_PASSWORD` is `sasl.password`).
    static func kafkaProperties(_ environment: [String: String]) -> [String: String] {
        var properties: [String: String] = [:]
        for (variable, value) in environment where variable.hasPrefix("P2C_KAFKA_") {
            properties[variable.dropFirst("P2C_KAFKA_".count).lowercased().replacingOccurrences(of: "_", with: ".")] =
                value
        }
        return properties
    }

    /// The cluster for the operator commands: `--bootstrap-servers`, else `P2C_BOOTSTRAP_SERVERS`, with
    /// `P2C_KAFKA_*` properties; nil when neither names a cluster.
    static func kafka(
        _ arguments: ParsedArguments, clientID: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> KafkaConfiguration? {
        guard let bootstrap = arguments.string("bootstrap-servers") ?? environment["P2C_BOOTSTRAP_SERVERS"] else {
            return nil
        }
        return KafkaConfiguration(
            bootstrapServers: bootstrap, clientID: clientID, properties: kafkaProperties(environment))
    }

    private static func keyPath(_ context: DecodingError.Context, _ extra: (any CodingKey)? = nil) -> String {
        let keys = context.codingPath + (extra.map { [$0] } ?? [])
        return keys.isEmpty ? "" : keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

/// What apply's and capture's configurations share with every fleet member's.
protocol MemberConfiguration {
    var streams: [SyncStream] { get set }
    var kafka: KafkaConfiguration { get set }
    var groupID: String? { get set }
    var sessionTimeout: Duration { get set }
    var shutdownTimeout: Duration { get set }
}

extension ApplyConfiguration: MemberConfiguration {}
extension CaptureConfiguration: MemberConfiguration {}
