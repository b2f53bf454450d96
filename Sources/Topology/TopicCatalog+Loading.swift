import Foundation

// MARK: - Loading Topics/*.json

extension TopicCatalog {
    /// Loads every `*.json` file of `directory`, one stream per file, and checks the whole set.
    public static func load(directory: String) throws(TopicCatalogError) -> TopicCatalog {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: directory)
                .filter { $0.hasSuffix(".json") }.sorted()
        } catch {
            throw TopicCatalogError("\(directory): cannot list topic declarations (\(error.localizedDescription))")
        }
        guard !files.isEmpty else { throw TopicCatalogError("\(directory): no *.json topic declarations") }
        var topics: [TopicDeclaration] = []
        for file in files {
            let path = (directory as NSString).appendingPathComponent(file)
            guard let data = FileManager.default.contents(atPath: path) else {
                throw TopicCatalogError("\(path): cannot be read")
            }
            topics += try parse(data, file: file)
        }
        do {
            return try TopicCatalog(topics)
        } catch {
            throw TopicCatalogError("\(directory): \(error.message)")
        }
    }

    /// Finds `Topics/`: `$P2C_TOPICS`, then `./Topics`, then a `Topics` folder above the executable
    /// (a build tree inside a checkout), then `/etc/p2c/topics` (the container image).
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let configured = environment["P2C_TOPICS"], !configured.isEmpty { return configured }
        var candidates = [FileManager.default.currentDirectoryPath + "/Topics"]
        var folder = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
            .deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(folder.appendingPathComponent("Topics").path)
            folder.deleteLastPathComponent()
        }
        candidates.append("/etc/p2c/topics")
        var isDirectory: ObjCBool = false
        return candidates.first {
            FileManager.default.fileExists(atPath: $0, isDirectory: &isDirectory) && isDirectory.boolValue
        } ?? "Topics"
    }

    /// Parses one stream file: `{"stream", "keyScheme", "topics": [...]}`, strictly.
    static func parse(_ data: Data, file: String) throws(TopicCatalogError) -> [TopicDeclaration] {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw TopicCatalogError("\(file): not valid JSON")
        }
        let reader = try Reader(object, at: file)
        if reader.object["stream"] == nil { return try parseState(reader, file: file) }
        try reader.onlyKeys(["stream", "keyScheme", "topics"])
        let stream: SyncStream = try reader.enumeration("stream")
        let keyScheme = try reader.string("keyScheme")
        guard keyScheme.hasPrefix("<company>/"), keyScheme.count > "<company>/".count else {
            throw TopicCatalogError("\(file): keyScheme must be \"<company>/<record number>\", got \"\(keyScheme)\"")
        }
        guard let entries = reader.object["topics"] as? [Any], !entries.isEmpty else {
            throw TopicCatalogError("\(file): \"topics\" must be a non-empty array")
        }
        var result: [TopicDeclaration] = []
        for (index, entry) in entries.enumerated() {
            var topic = try Reader(entry, at: "\(file): topics[\(index)]")
            try topic.onlyKeys([
                "name", "side", "role", "partitions", "replicationFactor", "retentionMs", "cleanupPolicy",
            ])
            let name = try topic.string("name")
            topic.context = "\(file): topic \"\(name)\""
            let declaration = TopicDeclaration(
                name: name,
                side: try topic.enumeration("side"),
                stream: stream,
                role: try topic.enumeration("role"),
                partitions: try topic.integer("partitions", in: 1...10_000),
                replicationFactor: try topic.integer("replicationFactor", in: 1...32),
                retentionMs: Int64(try topic.integer("retentionMs", in: -1...Int(Int64.max))),
                cleanupPolicy: try topic.string("cleanupPolicy"),
                keyScheme: keyScheme
            )
            try check(declaration, context: topic.context)
            result.append(declaration)
        }
        return result
    }

    /// Parses the file of p2c's own state topics: `{"keyScheme", "topics": [...]}` without a
    /// stream, each topic `p2c.<purpose>` of role `state`, compacted.
    private static func parseState(_ reader: Reader, file: String) throws(TopicCatalogError) -> [TopicDeclaration] {
        try reader.onlyKeys(["keyScheme", "topics"])
        let keyScheme = try reader.string("keyScheme")
        guard let entries = reader.object["topics"] as? [Any], !entries.isEmpty else {
            throw TopicCatalogError("\(file): \"topics\" must be a non-empty array")
        }
        var result: [TopicDeclaration] = []
        for (index, entry) in entries.enumerated() {
            var topic = try Reader(entry, at: "\(file): topics[\(index)]")
            try topic.onlyKeys(["name", "role", "partitions", "replicationFactor", "retentionMs", "cleanupPolicy"])
            let name = try topic.string("name")
            topic.context = "\(file): topic \"\(name)\""
            let role: Role = try topic.enumeration("role")
            guard role == .state, name.hasPrefix("p2c.") else {
                throw TopicCatalogError(
                    "\(topic.context): a file without a stream declares p2c's own state: role state, name p2c.<purpose>"
                )
            }
            let declaration = TopicDeclaration(
                name: name, side: nil, stream: nil, role: role,
                partitions: try topic.integer("partitions", in: 1...10_000),
                replicationFactor: try topic.integer("replicationFactor", in: 1...32),
                retentionMs: Int64(try topic.integer("retentionMs", in: -1...Int(Int64.max))),
                cleanupPolicy: try topic.string("cleanupPolicy"), keyScheme: keyScheme)
            guard declaration.cleanupPolicy.hasPrefix("compact") else {
                throw TopicCatalogError(
                    "\(topic.context): cleanupPolicy must be compact: only the last state of a key counts")
            }
            result.append(declaration)
        }
        return result
    }

    private static func check(_ topic: TopicDeclaration, context: String) throws(TopicCatalogError) {
        guard let side = topic.side, let stream = topic.stream else { return }
        let expected = topic.role.topicName(side: side, stream: stream)
        guard topic.name == expected else {
            throw TopicCatalogError("\(context): name must be \"\(expected)\" for its side, stream and role")
        }
        guard topic.retentionMs != 0 else {
            throw TopicCatalogError("\(context): retentionMs must be positive or -1 (forever), got 0")
        }
        guard ["delete", "compact", "compact,delete"].contains(topic.cleanupPolicy) else {
            throw TopicCatalogError(
                "\(context): cleanupPolicy must be delete, compact or compact,delete, got \"\(topic.cleanupPolicy)\"")
        }
        // A document's header and lines share one key: compaction would keep only the last of them.
        if topic.role != .dlq && topic.role != .inboundDLQ && topic.cleanupPolicy != "delete" {
            throw TopicCatalogError(
                "\(context): cleanupPolicy must be delete: header and lines share a key, compaction would drop them")
        }
    }
}

/// Strict reading of one JSON object: unknown keys and wrong types are errors naming the key.
private struct Reader {
    let object: [String: Any]
    var context: String

    init(_ value: Any, at context: String) throws(TopicCatalogError) {
        guard let object = value as? [String: Any] else { throw TopicCatalogError("\(context): must be a JSON object") }
        self.object = object
        self.context = context
    }

    func onlyKeys(_ allowed: Set<String>) throws(TopicCatalogError) {
        if let unknown = object.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw TopicCatalogError(
                "\(context): unknown key \"\(unknown)\" (expected \(allowed.sorted().joined(separator: ", ")))")
        }
        if let missing = allowed.sorted().first(where: { object[$0] == nil }) {
            throw TopicCatalogError("\(context): missing key \"\(missing)\"")
        }
    }

    func string(_ key: String) throws(TopicCatalogError) -> String {
        guard let value = object[key] as? String, !value.isEmpty else {
            throw TopicCatalogError("\(context): \"\(key)\" must be a non-empty string")
        }
        return value
    }

    func integer(_ key: String, in range: ClosedRange<Int>) throws(TopicCatalogError) -> Int {
        guard !(object[key] is Bool), let value = object[key] as? Int, range.contains(value) else {
            throw TopicCatalogError(
                "\(context): \"\(key)\" must be an integer from \(range.lowerBound) to \(range.upperBound), got \(object[key].map { "\($0)" } ?? "nothing")"
            )
        }
        return value
    }

    func enumeration<T: RawRepresentable & CaseIterable>(_ key: String) throws(TopicCatalogError) -> T
    where T.RawValue == String {
        let raw = try string(key)
        guard let value = T(rawValue: raw) else {
            let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw TopicCatalogError("\(context): \"\(key)\" must be one of \(allowed), got \"\(raw)\"")
        }
        return value
    }
}
