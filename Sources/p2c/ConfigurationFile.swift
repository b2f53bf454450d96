import Foundation
import ProspectToCash
import Runtime

/// The JSON configuration file shared by the commands.
struct ConfigurationFile: Decodable {
    /// Mapping rules and overrides. Default: `MappingConfiguration()`.
    var mapping = MappingConfiguration()

    init() {}

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        mapping = try container.decodeIfPresent(MappingConfiguration.self, forKey: .mapping) ?? MappingConfiguration()
    }

    private enum CodingKeys: String, CodingKey { case mapping }

    /// Loads `path`, or the defaults when nil; a bad file fails with one line naming the key.
    static func load(_ path: String?, command: String) throws -> ConfigurationFile {
        guard let path else { return ConfigurationFile() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw UsageError("--config: cannot read \(path)", command: command)
        }
        do {
            return try JSONDecoder().decode(ConfigurationFile.self, from: data)
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw UsageError("\(path): \(keyPath(context)): \(context.debugDescription)", command: command)
        } catch let DecodingError.keyNotFound(key, context) {
            throw UsageError("\(path): \(keyPath(context, key)) is missing", command: command)
        } catch let DecodingError.dataCorrupted(context) {
            throw UsageError("\(path): \(keyPath(context)): \(context.debugDescription)", command: command)
        } catch {
            throw UsageError("\(path): \(error)", command: command)
        }
    }

    private static func keyPath(_ context: DecodingError.Context, _ extra: (any CodingKey)? = nil) -> String {
        let keys = context.codingPath + (extra.map { [$0] } ?? [])
        return keys.isEmpty
            ? "the file" : keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}
