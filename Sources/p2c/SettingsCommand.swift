import Runtime

/// `p2c settings`: every setting of every command, as one Markdown table.
enum SettingsCommand {
    static let spec = CommandSpec(
        name: "settings",
        summary: "Print every setting of every command: its file key, variable, flag, commands and default.",
        options: [
            OptionSpec("command", value: "name", help: "Only the settings this command reads.")
        ],
        discussion: """
            A command reads its --config file, then P2C_* variables, then its flags; an unknown key or a
            bad value fails at start with one line naming it and exit code 2. The table is the `p2c`
            article's Settings section.
            """
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let only = arguments.string("command")
        if let only, !commands.contains(where: { $0.spec.name == only }) {
            throw UsageError("--command: no command '\(only)'", command: spec.name)
        }
        let specs = commands.map(\.spec)
        // A flag a setting names is one every command it lists takes: else the table would lie.
        let missing = Setting.all.flatMap { setting in
            setting.flag.map { flag in
                setting.commands.filter { name in
                    specs.first { $0.name == name }.map { !$0.options.contains { $0.name == flag } } ?? true
                }.map { "p2c \($0) has no --\(flag)" }
            } ?? []
        }
        guard missing.isEmpty else {
            print("the settings table disagrees with the commands: \(missing.joined(separator: "; "))")
            return 1
        }
        print(table(specs, only: only))
        return 0
    }

    /// One row per setting; flags that set no file key or variable last, per command.
    static func table(_ specs: [CommandSpec], only: String? = nil) -> String {
        func code(_ text: String?) -> String { text.map { $0.isEmpty ? "" : "`\($0)`" } ?? "" }
        func shown(_ commands: [String]) -> Bool { only.map(commands.contains) ?? true }
        var rows = [
            "| file key | variable | flag | commands | default | meaning |", "|---|---|---|---|---|---|",
        ]
        var flags = Set<String>()
        for setting in Setting.all + connections + others(specs) where shown(setting.commands) {
            if let flag = setting.flag { flags.insert(flag) }
            rows.append(
                "| \(code(setting.key)) | \(code(setting.variable)) | \(code(setting.flag.map { "--\($0)" })) | \(setting.commands.joined(separator: ", ")) | \(setting.defaultValue) | \(setting.meaning) |"
            )
        }
        // Options that only the command line sets, each once with every command that takes it.
        var options: [(name: String, commands: [String], option: OptionSpec)] = []
        for spec in specs {
            for option in spec.options where !flags.contains(option.name) {
                if let index = options.firstIndex(where: { $0.name == option.name && $0.option.help == option.help }) {
                    options[index].commands.append(spec.name)
                } else {
                    options.append((option.name, [spec.name], option))
                }
            }
        }
        for (name, commands, option) in options where shown(commands) {
            let label = ("--\(name)" + (option.valueName.map { " <\($0)>" } ?? "")).replacingOccurrences(
                of: "|", with: "\\|")
            rows.append(
                "| | | `\(label)` | \(commands.joined(separator: ", ")) | \(option.defaultValue ?? "") | \(option.help.replacingOccurrences(of: "|", with: "\\|")) |"
            )
        }
        return rows.joined(separator: "\n")
    }

    /// The systems' connections, read by `ConnectionSettings` from the file's `dataverse` or `fno`
    /// object and the `P2C_DATAVERSE_*` or `P2C_FNO_*` variables.
    static let connections: [Setting] = {
        let users = ["apply", "capture", "bootstrap", "reconcile"]
        return [
            Setting(
                "dataverse.url, fno.url", "P2C_DATAVERSE_URL, P2C_FNO_URL", nil, .text, default: "required", users,
                "the environment's URL"),
            Setting(
                "dataverse.tenantId, fno.tenantId", "P2C_DATAVERSE_TENANT_ID, P2C_FNO_TENANT_ID", nil, .text,
                default: "required", users, "the Entra tenant"),
            Setting(
                "dataverse.clientId, fno.clientId", "P2C_DATAVERSE_CLIENT_ID, P2C_FNO_CLIENT_ID", nil, .text,
                default: "required", users, "the Entra app; apply: a comma list spreads its writes over several"),
            Setting(
                "dataverse.clientSecretFile, fno.clientSecretFile",
                "P2C_DATAVERSE_CLIENT_SECRET(_FILE), P2C_FNO_CLIENT_SECRET(_FILE)", nil, .text, default: "required",
                users, "the secret, never from the file itself; comma lists in the ids' order"),
            Setting(
                "dataverse.authority, fno.authority", "P2C_DATAVERSE_AUTHORITY, P2C_FNO_AUTHORITY", nil, .text,
                default: "https://login.microsoftonline.com", users,
                "token endpoint `<authority>/<tenant>/oauth2/v2.0/token`"),
            Setting(
                "dataverse.applyClientIds, fno.applyClientIds",
                "P2C_DATAVERSE_APPLY_CLIENT_IDS, P2C_FNO_APPLY_CLIENT_IDS", nil, .text, default: "none", ["capture"],
                "the apply apps, whose changes are echoes"),
        ]
    }()

    /// The file's objects and the variables every command reads.
    static func others(_ specs: [CommandSpec]) -> [Setting] {
        [
            Setting(
                "kafka", "P2C_KAFKA_<PROPERTY>", nil, .text, default: "none",
                ["worker", "apply", "capture", "bootstrap", "reconcile", "replay", "dlq"],
                "any librdkafka property (`P2C_KAFKA_SASL_PASSWORD` is `sasl.password`)"),
            Setting(
                "mapping", nil, nil, .text, default: "none", ["worker", "map", "reconcile", "replay"],
                "the mapping configuration (README, *Maps*)"),
            Setting(
                nil, "P2C_TOPICS", "topics", .text, default: "./Topics",
                specs.filter { $0.options.contains { $0.name == "topics" } }.map(\.name), "folder of topic declarations"
            ),
            Setting(
                nil, "P2C_LOG_LEVEL", nil, .text, default: "info", ["every command"],
                "`debug`, `info`, `warning` or `error`"),
        ]
    }
}
