import Foundation

/// A command's options, for parsing and for its `--help` text.
public struct CommandSpec: Sendable {
    /// The words after `p2c`, e.g. `broker`.
    public var name: String
    /// One line saying what the command does.
    public var summary: String
    public var options: [OptionSpec]
    /// Extra help text printed after the options.
    public var discussion: String
    /// Words one of which must come first (`p2c topics plan`); empty for none.
    public var subcommands: [String]

    public init(
        name: String, summary: String, options: [OptionSpec], discussion: String = "", subcommands: [String] = []
    ) {
        self.name = name
        self.summary = summary
        self.options = options
        self.discussion = discussion
        self.subcommands = subcommands
    }

    /// The `--help` text.
    public var help: String {
        let usage =
            subcommands.isEmpty
            ? "p2c \(name) [options]" : "p2c \(name) \(subcommands.joined(separator: "|")) [options]"
        var lines = ["p2c \(name): \(summary)", "", "usage: \(usage)", "", "options:"]
        let all = options + [OptionSpec("help", help: "Show this help and exit.")]
        let labels = all.map { option in "--\(option.name)" + (option.valueName.map { " <\($0)>" } ?? "") }
        let width = (labels.map(\.count).max() ?? 0) + 2
        for (option, label) in zip(all, labels) {
            let padded = label + String(repeating: " ", count: width - label.count)
            let fallback = option.defaultValue.map { " Default: \($0)." } ?? ""
            lines.append("  \(padded)\(option.help)\(fallback)")
        }
        if !discussion.isEmpty { lines += ["", discussion] }
        return lines.joined(separator: "\n")
    }

    /// Parses `arguments` (what follows the command name).
    public func parse(_ arguments: [String]) throws(UsageError) -> ParsedArguments {
        var values: [String: String] = [:]
        var repeated: [String: [String]] = [:]
        var flags: Set<String> = []
        var index = arguments.startIndex
        var subcommand: String?
        if !subcommands.isEmpty {
            guard let first = arguments.first, !first.hasPrefix("--") else {
                if arguments.first == "--help" { return ParsedArguments(wantsHelp: true) }
                throw UsageError("expected one of \(subcommands.joined(separator: ", "))", command: name)
            }
            guard subcommands.contains(first) else {
                throw UsageError(
                    "unknown subcommand '\(first)' (expected \(subcommands.joined(separator: ", ")))", command: name)
            }
            subcommand = first
            index += 1
        }
        while index < arguments.endIndex {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--"), argument.count > 2 else {
                throw UsageError("unexpected argument '\(argument)'", command: name)
            }
            var body = argument.dropFirst(2)
            var inlineValue: String?
            if let equals = body.firstIndex(of: "=") {
                inlineValue = String(body[body.index(after: equals)...])
                body = body[..<equals]
            }
            let optionName = String(body)
            if optionName == "help" { return ParsedArguments(wantsHelp: true) }
            guard let option = options.first(where: { $0.name == optionName }) else {
                throw UsageError("unknown option '--\(optionName)'", command: name)
            }
            guard option.valueName != nil else {
                if inlineValue != nil { throw UsageError("option '--\(optionName)' takes no value", command: name) }
                flags.insert(optionName)
                continue
            }
            if let inlineValue {
                values[optionName] = inlineValue
                repeated[optionName, default: []].append(inlineValue)
            } else if index < arguments.endIndex, !arguments[index].hasPrefix("--") {
                values[optionName] = arguments[index]
                repeated[optionName, default: []].append(arguments[index])
                index += 1
            } else {
                throw UsageError("option '--\(optionName)' needs a value <\(option.valueName!)>", command: name)
            }
        }
        for option in options where values[option.name] == nil {
            if let fallback = option.defaultValue { values[option.name] = fallback }
        }
        return ParsedArguments(
            command: name, subcommand: subcommand, values: values, repeated: repeated, flags: flags)
    }
}

/// One `--name [value]` option.
public struct OptionSpec: Sendable {
    public var name: String
    /// The value's placeholder in help, or nil for a flag.
    public var valueName: String?
    public var help: String
    /// The value used when the option is absent, shown in help.
    public var defaultValue: String?

    public init(_ name: String, value valueName: String? = nil, help: String, default defaultValue: String? = nil) {
        self.name = name
        self.valueName = valueName
        self.help = help
        self.defaultValue = defaultValue
    }
}

/// Parsed options, with typed access that fails naming the option.
public struct ParsedArguments: Sendable {
    public var command = ""
    /// The subcommand given first, for commands that have them.
    public var subcommand: String?
    public var values: [String: String] = [:]
    /// Every value of each option, in order, for options that may be given more than once.
    public var repeated: [String: [String]] = [:]
    public var flags: Set<String> = []
    /// `--help` was given: print the help and exit 0.
    public var wantsHelp = false

    /// The value of `--name` (the last one when given more than once).
    public func string(_ name: String) -> String? { values[name] }
    /// Every value of `--name`, in order.
    public func strings(_ name: String) -> [String] { repeated[name] ?? [] }
    public func flag(_ name: String) -> Bool { flags.contains(name) }

    /// The integer value of `--name`, checked against `range`.
    public func integer(_ name: String, in range: ClosedRange<Int>) throws(UsageError) -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw UsageError(
                "option '--\(name)' expects an integer from \(range.lowerBound) to \(range.upperBound), got '\(text)'",
                command: command)
        }
        return value
    }

    /// The ISO 8601 time of `--name` (e.g. 2026-11-22T10:00:00Z), in milliseconds since the epoch.
    public func time(_ name: String) throws(UsageError) -> Int64? {
        guard let text = values[name] else { return nil }
        let plain = ISO8601DateFormatter()
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let date = plain.date(from: text) ?? fractional.date(from: text) else {
            throw UsageError(
                "option '--\(name)' expects an ISO 8601 time such as 2026-11-22T10:00:00Z, got '\(text)'",
                command: command)
        }
        return Int64((date.timeIntervalSince1970 * 1000).rounded())
    }

    /// The value of `--name`, which must be one of `T`'s raw values.
    public func choice<T: RawRepresentable & CaseIterable>(_ name: String, as type: T.Type) throws(UsageError) -> T?
    where T.RawValue == String {
        guard let text = values[name] else { return nil }
        guard let value = T(rawValue: text) else {
            let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw UsageError("option '--\(name)' expects one of \(allowed), got '\(text)'", command: command)
        }
        return value
    }
}

/// A bad command line or configuration: printed as one line, exit code 2.
public struct UsageError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var command: String

    public init(_ message: String, command: String = "") {
        self.message = message
        self.command = command
    }

    public var description: String {
        command.isEmpty ? "p2c: \(message)" : "p2c \(command): \(message) (see 'p2c \(command) --help')"
    }
}
