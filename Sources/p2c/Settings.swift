import Foundation
import Runtime
import Topology

/// One setting of p2c's commands, as a user writes it: a key of the configuration file, an
/// environment variable, a flag (any of them may be absent). The file's value is overridden by the
/// variable, which is overridden by the flag, and all three are checked by `value` the same way; an
/// error names what the user wrote (the key, the variable or the flag).
struct Setting: Sendable {
    /// What a setting takes.
    enum Value: Sendable {
        case integer(ClosedRange<Int>)
        /// A non-empty string.
        case text
        case choice([String])
        /// Stream names: an array in the file, a comma list elsewhere.
        case streams
        /// An IPv4 address.
        case address
        /// `true` or `false`.
        case bool

        var expected: String {
            switch self {
            case .integer(let range): "an integer from \(range.lowerBound) to \(range.upperBound)"
            case .text: "a non-empty string"
            case .choice(let choices): "one of \(choices.joined(separator: ", "))"
            case .streams: "stream names from \(SyncStream.allCases.map(\.rawValue).joined(separator: ", "))"
            case .address: "an IPv4 address (0.0.0.0: every interface)"
            case .bool: "true or false"
            }
        }
    }

    let key: String?
    let variable: String?
    let flag: String?
    let value: Value
    /// As documented (a setting whose default depends on the command says so).
    let defaultValue: String
    let commands: [String]
    let meaning: String

    /// How code names it: its file key, else its variable.
    var name: String { key ?? variable ?? flag ?? "" }

    init(
        _ key: String?, _ variable: String?, _ flag: String?, _ value: Value, default defaultValue: String,
        _ commands: [String], _ meaning: String
    ) {
        self.key = key
        self.variable = variable
        self.flag = flag
        self.value = value
        self.defaultValue = defaultValue
        self.commands = commands
        self.meaning = meaning
    }

    /// The settings that a file, the environment or a flag set for the long-running commands and
    /// the operator commands that share their file.
    static let all: [Setting] = {
        let fleet = ["worker", "apply", "capture"]
        let readers = ["worker", "apply", "capture", "bootstrap", "reconcile"]
        return [
            Setting(
                "flow", "P2C_FLOW", "flow", .choice(["crm-to-erp", "erp-to-crm"]), default: "crm-to-erp", ["worker"],
                "the flow a worker maps"),
            Setting(
                "side", "P2C_SIDE", "side", .choice(["crm", "erp"]), default: "crm (bootstrap: erp)",
                ["apply", "capture", "bootstrap"], "the system: crm (Dataverse) or erp (Finance and Operations)"),
            Setting(
                "streams", "P2C_STREAMS", "streams", .streams, default: "every stream of the flow or side", readers,
                "streams taken (array in the file, comma list elsewhere)"),
            Setting(
                "delivery", "P2C_DELIVERY", "delivery", .choice(["exactly-once", "at-least-once"]),
                default: "exactly-once", ["worker"], "delivery mode (the `Worker` article)"),
            Setting(
                "bootstrapServers", "P2C_BOOTSTRAP_SERVERS", "bootstrap-servers", .text, default: "localhost:9092",
                readers, "Kafka brokers"),
            Setting("clientId", nil, nil, .text, default: "p2c", fleet, "Kafka `client.id`"),
            Setting(
                "groupId", "P2C_GROUP_ID", "group", .text, default: "p2c-<flow>, p2c-apply-<side>, p2c-capture-<side>",
                fleet, "consumer group"),
            Setting(
                "transactionalId", "P2C_TRANSACTIONAL_ID", "transactional-id", .text,
                default: "p2c-<flow>-<host>-<random>; p2c-bootstrap-<side>", ["worker", "bootstrap"],
                "unique per live member (the `Worker` article)"),
            Setting(
                "groupInstanceId", "P2C_GROUP_INSTANCE_ID", "group-instance-id", .text, default: "none", ["worker"],
                "static group membership (e.g. the pod name)"),
            Setting(
                "commitIntervalMs", "P2C_COMMIT_INTERVAL_MS", nil, .integer(1...60_000), default: "100", ["worker"],
                "a batch commits after this long"),
            Setting(
                "commitMaxRecords", "P2C_COMMIT_MAX_RECORDS", nil, .integer(1...1_000_000), default: "1000",
                ["worker"], "… or after this many input records"),
            Setting(
                "sessionTimeoutMs", "P2C_SESSION_TIMEOUT_MS", nil, .integer(1_000...3_600_000), default: "45000",
                fleet, "group session timeout"),
            Setting(
                "shutdownTimeoutMs", "P2C_SHUTDOWN_TIMEOUT_MS", nil, .integer(1_000...600_000), default: "8000",
                fleet, "SIGTERM to exit, at most"),
            Setting(
                "transactionTimeoutMs", "P2C_TRANSACTION_TIMEOUT_MS", nil, .integer(1_000...900_000),
                default: "10000", ["worker"], "the broker aborts a transaction open this long"),
            Setting(
                "commitOffsetsOutsideTransaction", nil, nil, .bool,
                default: "false (on by itself on the embedded broker)",
                ["worker"], "also commit offsets outside the transaction"),
            Setting("passThrough", nil, nil, .bool, default: "false", ["worker"], "copy events unmapped (benchmarks)"),
            Setting(
                "metricsPort", "P2C_METRICS_PORT", "metrics-port", .integer(0...65_535), default: "9464", fleet,
                "`/metrics`, `/healthz`, `/readyz`; 0 picks one"),
            Setting(
                "watchdogSeconds", "P2C_WATCHDOG_SECONDS", nil, .integer(1...86_400), default: "120", fleet,
                "`/healthz` fails after the loop stalls this long"),
            Setting(
                "listenAddress", "P2C_LISTEN_ADDRESS", "listen-address", .address, default: "0.0.0.0", fleet,
                "the address the metrics and receiver ports listen on"),
            Setting(
                "maxConcurrency", "P2C_APPLY_MAX_CONCURRENCY", "max-concurrency", .integer(1...1_000), default: "8",
                ["apply"], "`$batch` requests in flight at most (AIMD below it)"),
            Setting(
                "batchDocuments", "P2C_APPLY_BATCH_DOCUMENTS", nil, .integer(1...1_000),
                default: "20 (Dataverse), 10 (F&O)", ["apply"], "documents per `$batch`"),
            Setting(
                "referenceWaitMs", "P2C_APPLY_REFERENCE_WAIT_MS", "reference-wait-ms", .integer(0...86_400_000),
                default: "600000", ["apply"], "a write waits this long for a row it refers to, then the DLQ"),
            Setting(
                "unavailableWaitMs", "P2C_APPLY_UNAVAILABLE_WAIT_MS", nil, .integer(0...86_400_000),
                default: "600000", ["apply"], "one document the service keeps failing while others are written"),
            Setting(
                "company", "P2C_CAPTURE_COMPANY", "company", .text, default: "required on crm",
                ["capture", "reconcile"], "the legal entity of the Dataverse rows (`ce_company`)"),
            Setting(
                "mode", "P2C_CAPTURE_MODE", "mode", .choice(["poll", "webhook"]),
                default: "poll on crm, webhook on erp",
                ["capture"], "change tracking polled, or posts received (webhooks, data events)"),
            Setting(
                "pollIntervalMs", "P2C_CAPTURE_POLL_INTERVAL_MS", "poll-interval-ms", .integer(100...3_600_000),
                default: "5000", ["capture"], "how often an idle table's delta link is read"),
            Setting(
                "pageSize", "P2C_CAPTURE_PAGE_SIZE", nil, .integer(1...5_000), default: "500", ["capture"],
                "rows per change-tracking page"),
            Setting(
                "recheckMs", "P2C_CAPTURE_RECHECK_MS", "recheck-ms", .integer(0...600_000), default: "0 (off)",
                ["capture"], "erp: read each record published again this long after"),
            Setting(
                "webhookPort", "P2C_CAPTURE_WEBHOOK_PORT", "webhook-port", .integer(0...65_535), default: "8080",
                ["capture"], "the port receiving posts"),
            Setting(
                "webhookMaxBodyBytes", "P2C_CAPTURE_WEBHOOK_MAX_BODY_BYTES", nil, .integer(1_024...16_777_216),
                default: "524288", ["capture"], "the largest post read"),
            Setting(
                "webhookMaxRequests", "P2C_CAPTURE_WEBHOOK_MAX_REQUESTS", nil, .integer(1...256), default: "16",
                ["capture"], "posts read at once"),
            Setting(
                nil, "P2C_CAPTURE_WEBHOOK_KEY", nil, .text, default: "required in webhook mode", ["capture"],
                "the registration's key (or `P2C_CAPTURE_WEBHOOK_KEY_FILE`, a file holding it)"),
        ]
    }()

    /// The file's keys that are objects, read by their own code: librdkafka properties (also
    /// `P2C_KAFKA_<PROPERTY>`), the mapping configuration, the systems' connections.
    static let objectKeys: Set<String> = ["kafka", "mapping", "dataverse", "fno"]

    /// Every key a configuration file may have.
    static let fileKeys: Set<String> = Set(all.compactMap(\.key)).union(objectKeys)
}

/// The settings of one command, resolved from its file, its environment and its flags.
struct SettingValues: Sendable {
    enum Resolved: Sendable {
        case integer(Int)
        case text(String)
        case bool(Bool)
        case streams([SyncStream])
    }

    private(set) var values: [String: Resolved] = [:]

    init() {}

    /// Checks every value `file` gives (a file may hold other commands' settings too), then the
    /// variables and flags of `command`'s settings. An error names the key, the variable or the flag.
    init(
        command: String, file: [String: Any], environment: [String: String], arguments: ParsedArguments?
    ) throws(UsageError) {
        for setting in Setting.all {
            if let key = setting.key, let raw = file[key] {
                guard let value = Self.fileValue(raw, setting.value) else {
                    throw UsageError("\(key) must be \(setting.value.expected), got \(Self.shown(raw))")
                }
                if setting.commands.contains(command) { values[setting.name] = value }
            }
            guard setting.commands.contains(command) else { continue }
            if let variable = setting.variable, let text = environment[variable], !text.isEmpty {
                guard let value = Self.textValue(text, setting.value) else {
                    throw UsageError("\(variable) must be \(setting.value.expected), got '\(text)'")
                }
                values[setting.name] = value
            }
            if let flag = setting.flag, let text = arguments?.string(flag) {
                guard let value = Self.textValue(text, setting.value) else {
                    throw UsageError("--\(flag) must be \(setting.value.expected), got '\(text)'")
                }
                values[setting.name] = value
            }
        }
    }

    func integer(_ name: String) -> Int? {
        if case .integer(let value)? = values[name] { return value }
        return nil
    }

    /// An integer setting counted in milliseconds (its key ends in `Ms`), as a duration.
    func milliseconds(_ name: String) -> Duration? { integer(name).map { .milliseconds($0) } }

    func string(_ name: String) -> String? {
        if case .text(let value)? = values[name] { return value }
        return nil
    }

    func bool(_ name: String) -> Bool? {
        if case .bool(let value)? = values[name] { return value }
        return nil
    }

    func streams(_ name: String) -> [SyncStream]? {
        if case .streams(let value)? = values[name] { return value }
        return nil
    }

    /// A value as the file holds it: JSON numbers for integers, arrays for streams.
    static func fileValue(_ raw: Any, _ kind: Setting.Value) -> Resolved? {
        switch kind {
        case .integer(let range):
            guard let number = integer(raw), range.contains(number) else { return nil }
            return .integer(number)
        case .bool:
            guard let number = raw as? NSNumber, String(cString: number.objCType) == "c" else { return nil }
            return .bool(number.boolValue)
        case .streams:
            guard let names = raw as? [String] else { return nil }
            return textValue(names.joined(separator: ","), kind)
        case .text, .choice, .address:
            guard let text = raw as? String else { return nil }
            return textValue(text, kind)
        }
    }

    /// A value as a variable or a flag gives it.
    static func textValue(_ text: String, _ kind: Setting.Value) -> Resolved? {
        switch kind {
        case .integer(let range):
            guard let number = Int(text), range.contains(number) else { return nil }
            return .integer(number)
        case .text:
            return text.isEmpty ? nil : .text(text)
        case .choice(let choices):
            return choices.contains(text) ? .text(text) : nil
        case .streams:
            var streams: [SyncStream] = []
            for name in text.split(separator: ",") {
                guard let stream = SyncStream(rawValue: name.trimmingCharacters(in: .whitespaces)) else { return nil }
                streams.append(stream)
            }
            return .streams(streams)
        case .address:
            var address = in_addr()
            return inet_pton(AF_INET, text, &address) == 1 ? .text(text) : nil
        case .bool:
            return text == "true" ? .bool(true) : text == "false" ? .bool(false) : nil
        }
    }

    /// A JSON number without a fraction as an integer; nil for anything else, `true` and `false`
    /// included (Foundation bridges 0 and 1 to `Bool` too, so `is Bool` cannot tell them apart).
    static func integer(_ value: Any) -> Int? {
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c" else { return nil }
        return value as? Int
    }

    /// A file's value as an error shows it.
    private static func shown(_ raw: Any) -> String {
        if let text = raw as? String { return "'\(text)'" }
        if let number = raw as? NSNumber, String(cString: number.objCType) == "c" {
            return number.boolValue ? "true" : "false"
        }
        if let data = try? JSONSerialization.data(withJSONObject: raw, options: [.fragmentsAllowed]) {
            return String(decoding: data, as: UTF8.self)
        }
        return "\(raw)"
    }
}
