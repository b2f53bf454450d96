import Foundation
import Kafka
import ProspectToCash
import Runtime
import Topology
import Worker

/// The JSON configuration file the commands share, with `P2C_*` environment overrides.
struct ConfigurationFile {
    /// The top-level keys a file may have; anything else is a typo and fails.
    static let keys: Set<String> = [
        "flow", "streams", "delivery", "bootstrapServers", "clientId", "groupId", "groupInstanceId", "transactionalId",
        "commitIntervalMs", "commitMaxRecords", "commitOffsetsOutsideTransaction", "sessionTimeoutMs",
        "shutdownTimeoutMs", "transactionTimeoutMs", "kafka",
        "passThrough",
        "mapping", "metricsPort", "watchdogSeconds", "listenAddress",
        // p2c apply and p2c capture
        "side", "dataverse", "fno", "maxConcurrency", "batchDocuments", "referenceWaitMs", "unavailableWaitMs",
        "company", "mode",
        "pollIntervalMs", "recheckMs",
        "pageSize", "webhookMaxBodyBytes", "webhookMaxRequests",
    ]

    var worker = WorkerConfiguration()
    /// The file as read, for the keys of other commands (`side`, `dataverse`...).
    var object: [String: Any] = [:]
    var mapping: MappingConfiguration {
        get { worker.mapping }
        set { worker.mapping = newValue }
    }

    init() {}

    /// Loads `path` (or the defaults when nil), then the environment overrides; a bad value fails
    /// with one line naming its key.
    static func load(
        _ path: String?, command: String, environment: [String: String] = ProcessInfo.processInfo.environment
    )
        throws -> ConfigurationFile
    {
        var file = ConfigurationFile()
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw UsageError("--config: cannot read \(path)", command: command)
            }
            guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw UsageError("\(path): not a JSON object", command: command)
            }
            if let unknown = object.keys.sorted().first(where: { !keys.contains($0) }) {
                throw UsageError("\(path): unknown key \"\(unknown)\"", command: command)
            }
            file.object = object
            do {
                try file.apply(object)
            } catch let error as UsageError {
                throw UsageError("\(path): \(error.message)", command: command)
            }
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
        }
        do {
            try file.applyEnvironment(environment)
        } catch let error as UsageError {
            throw UsageError(error.message, command: command)
        }
        return file
    }

    /// A JSON number without a fraction as an integer; nil for anything else, `true` and `false`
    /// included (Foundation bridges 0 and 1 to `Bool` too, so `is Bool` cannot tell them apart).
    static func integer(_ value: Any) -> Int? {
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c" else { return nil }
        return value as? Int
    }

    /// The integer settings of a command (file key, environment variable, flag, range) that are
    /// set, by key: the file's value, overridden by the variable, overridden by the flag, each
    /// checked the same way; an error names where the bad value came from.
    func integers(
        _ settings: [(key: String, variable: String, flag: String?, range: ClosedRange<Int>)],
        arguments: ParsedArguments, environment: [String: String]
    ) throws -> [String: Int] {
        var values: [String: Int] = [:]
        for setting in settings {
            let expected = "an integer from \(setting.range.lowerBound) to \(setting.range.upperBound)"
            var text: String?
            var name = setting.key
            if let value = object[setting.key] {
                guard let number = Self.integer(value) else {
                    throw UsageError("\(setting.key) must be \(expected), got \(value)")
                }
                text = String(number)
            }
            if let value = environment[setting.variable] { (text, name) = (value, setting.variable) }
            if let flag = setting.flag, let value = arguments.string(flag) { (text, name) = (value, "--\(flag)") }
            guard let text else { continue }
            guard let number = Int(text), setting.range.contains(number) else {
                throw UsageError("\(name) must be \(expected), got '\(text)'")
            }
            values[setting.key] = number
        }
        return values
    }

    /// The file's worker keys.
    private mutating func apply(_ object: [String: Any]) throws {
        func string(_ key: String) throws -> String? {
            guard let value = object[key] else { return nil }
            guard let text = value as? String, !text.isEmpty else {
                throw UsageError("\(key) must be a non-empty string")
            }
            return text
        }
        if let text = try string("flow") { try set("flow", text) }
        if let value = object["streams"] {
            guard let list = value as? [String] else { throw UsageError("streams must be an array of stream names") }
            try set("streams", list.joined(separator: ","))
        }
        if let text = try string("delivery") { try set("delivery", text) }
        if let text = try string("bootstrapServers") { worker.kafka.bootstrapServers = text }
        if let text = try string("clientId") { worker.kafka.clientID = text }
        if let text = try string("groupId") { worker.groupID = text }
        if let text = try string("transactionalId") { worker.transactionalID = text }
        if let text = try string("groupInstanceId") { worker.groupInstanceID = text }
        if let text = try string("listenAddress") { try set("listen-address", text) }
        for setting in Self.integers {
            guard let value = object[setting.key] else { continue }
            guard let number = Self.integer(value) else {
                throw UsageError("\(setting.key) must be \(setting.expected), got \(value)")
            }
            try set(setting, number)
        }
        for (key, path) in [
            ("commitOffsetsOutsideTransaction", \WorkerConfiguration.commitOffsetsOutsideTransaction),
            ("passThrough", \WorkerConfiguration.passThrough),
        ] {
            guard let value = object[key] else { continue }
            guard let flag = value as? Bool else { throw UsageError("\(key) must be true or false") }
            worker[keyPath: path] = flag
        }
        if let value = object["kafka"] {
            guard let properties = value as? [String: Any] else {
                throw UsageError("kafka must be an object of librdkafka properties")
            }
            for (name, raw) in properties {
                guard let text = (raw as? String) ?? (raw as? NSNumber).map({ "\($0)" }) else {
                    throw UsageError("kafka.\(name) must be a string or a number")
                }
                worker.kafka.properties[name] = text
            }
        }
    }

    /// `P2C_FLOW`, `P2C_STREAMS`, `P2C_DELIVERY`, `P2C_BOOTSTRAP_SERVERS`, `P2C_GROUP_ID`,
    /// `P2C_TRANSACTIONAL_ID`, `P2C_COMMIT_INTERVAL_MS`, `P2C_COMMIT_MAX_RECORDS`, `P2C_SESSION_TIMEOUT_MS`,
    /// and `P2C_KAFKA_<PROPERTY>` (`P2C_KAFKA_SASL_PASSWORD` is `kafka.sasl.password`).
    private mutating func applyEnvironment(_ environment: [String: String]) throws {
        let names: [String: String] = [
            "P2C_FLOW": "flow", "P2C_STREAMS": "streams", "P2C_DELIVERY": "delivery",
            "P2C_BOOTSTRAP_SERVERS": "bootstrap-servers", "P2C_GROUP_ID": "group",
            "P2C_TRANSACTIONAL_ID": "transactional-id", "P2C_GROUP_INSTANCE_ID": "group-instance-id",
            "P2C_COMMIT_INTERVAL_MS": "commitIntervalMs", "P2C_COMMIT_MAX_RECORDS": "commitMaxRecords",
            "P2C_SESSION_TIMEOUT_MS": "sessionTimeoutMs", "P2C_SHUTDOWN_TIMEOUT_MS": "shutdownTimeoutMs",
            "P2C_TRANSACTION_TIMEOUT_MS": "transactionTimeoutMs",
            "P2C_METRICS_PORT": "metrics-port", "P2C_WATCHDOG_SECONDS": "watchdogSeconds",
            "P2C_LISTEN_ADDRESS": "listen-address",
        ]
        for (variable, key) in names.sorted(by: { $0.key < $1.key }) {
            guard let value = environment[variable], !value.isEmpty else { continue }
            do {
                try set(key, value)
            } catch let error as UsageError {
                throw UsageError("\(variable): \(error.message)")
            }
        }
        worker.kafka.properties.merge(Self.kafkaProperties(environment)) { $1 }
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

    /// Sets one setting from text, as a flag or environment variable gives it.
    mutating func set(_ key: String, _ value: String) throws {
        switch key {
        case "flow":
            guard let flow = Flow(rawValue: value) else {
                throw UsageError("flow must be crm-to-erp or erp-to-crm, got '\(value)'")
            }
            worker.flow = flow
        case "streams":
            worker.streams = try value.split(separator: ",").map { name in
                guard let stream = SyncStream(rawValue: String(name)) else {
                    throw UsageError(
                        "streams: '\(name)' is not one of \(SyncStream.allCases.map(\.rawValue).joined(separator: ", "))"
                    )
                }
                return stream
            }
        case "delivery":
            guard let delivery = WorkerConfiguration.Delivery(rawValue: value) else {
                throw UsageError("delivery must be exactly-once or at-least-once, got '\(value)'")
            }
            worker.delivery = delivery
        case "bootstrap-servers": worker.kafka.bootstrapServers = value
        case "group": worker.groupID = value
        case "transactional-id": worker.transactionalID = value
        case "group-instance-id": worker.groupInstanceID = value
        case "listen-address":
            var address = in_addr()
            guard inet_pton(AF_INET, value, &address) == 1 else {
                throw UsageError("listenAddress must be an IPv4 address (0.0.0.0: every interface), got '\(value)'")
            }
            worker.listenAddress = value
        default:
            guard let setting = Self.integers.first(where: { $0.key == key || $0.flag == key }) else {
                throw UsageError("unknown setting \(key)")
            }
            guard let number = Int(value) else {
                throw UsageError("\(setting.key) must be \(setting.expected), got '\(value)'")
            }
            try set(setting, number)
        }
    }

    /// An integer setting: its file key, its flag (if any), the values it takes and where it goes.
    /// The file, the environment and the flags all check it here, so they accept the same values.
    struct IntegerSetting: Sendable {
        let key: String
        var flag: String? = nil
        let range: ClosedRange<Int>
        let path: WritableKeyPath<WorkerConfiguration, Int> & Sendable

        var expected: String { "an integer from \(range.lowerBound) to \(range.upperBound)" }
    }

    static let integers: [IntegerSetting] = [
        IntegerSetting(key: "commitIntervalMs", range: 1...60_000, path: \.commitIntervalMilliseconds),
        IntegerSetting(key: "commitMaxRecords", range: 1...1_000_000, path: \.commitMaxRecords),
        IntegerSetting(key: "sessionTimeoutMs", range: 1_000...3_600_000, path: \.sessionTimeoutMilliseconds),
        IntegerSetting(key: "shutdownTimeoutMs", range: 1_000...600_000, path: \.shutdownTimeoutMilliseconds),
        IntegerSetting(
            key: "transactionTimeoutMs", range: 1_000...900_000, path: \.transactionTimeoutMilliseconds),
        IntegerSetting(key: "metricsPort", flag: "metrics-port", range: 0...65_535, path: \.metricsPort),
        IntegerSetting(key: "watchdogSeconds", range: 1...86_400, path: \.watchdogSeconds),
    ]

    private mutating func set(_ setting: IntegerSetting, _ number: Int) throws {
        guard setting.range.contains(number) else {
            throw UsageError("\(setting.key) must be \(setting.expected), got \(number)")
        }
        worker[keyPath: setting.path] = number
    }

    private static func keyPath(_ context: DecodingError.Context, _ extra: (any CodingKey)? = nil) -> String {
        let keys = context.codingPath + (extra.map { [$0] } ?? [])
        return keys.isEmpty ? "" : keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}
