import Connectors
import Dataverse
import FinanceOperations
import Foundation
import ProspectToCash
import Runtime
import Topology

/// A system's connection for apply and capture: `P2C_DATAVERSE_*` variables over the file's
/// `dataverse` object, or `P2C_FNO_*` over `fno`. The client secret comes from the environment or
/// a file, never from the configuration file itself or a flag.
struct ConnectionSettings {
    /// Which system.
    var system: any SystemAdapter
    /// The first identity's: capture's, and apply's when it has one.
    var settings: ServiceClient.Settings
    /// Every identity: apply spreads its writes over them (the limits are per user).
    var identities: [ServiceClient.Settings]
    /// Client ids of the apply identities, whose writes capture marks `ce_origin: p2c`.
    var applyClientIDs: [UUID]

    static let keys: Set<String> = [
        "url", "tenantId", "clientId", "clientSecretFile", "authority", "applyClientIds",
    ]

    /// Reads the settings; a missing or bad one fails with one line naming it.
    static func load(
        _ system: any SystemAdapter, file: [String: Any],
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> ConnectionSettings {
        let name = system.settingsKey
        let prefix = system.variablePrefix
        let object: [String: Any]
        switch file[name] {
        case nil: object = [:]
        case let given as [String: Any]: object = given
        default: throw UsageError("\(name) must be an object")
        }
        if let unknown = object.keys.sorted().first(where: { !keys.contains($0) }) {
            throw UsageError(
                unknown == "clientSecret"
                    ? "\(name).clientSecret: secrets are not read from the file; set \(prefix)_CLIENT_SECRET or \(name).clientSecretFile"
                    : "\(name): unknown key \"\(unknown)\"")
        }
        func value(_ variable: String, _ key: String) throws -> String? {
            if let text = environment[variable], !text.isEmpty { return text }
            guard let raw = object[key] else { return nil }
            guard let text = raw as? String, !text.isEmpty else {
                throw UsageError("\(name).\(key) must be a non-empty string")
            }
            return text
        }
        func required(_ variable: String, _ key: String) throws -> String {
            guard let text = try value(variable, key) else {
                throw UsageError("\(variable) (or \(name).\(key) in the file) is required")
            }
            return text
        }
        let urlText = try required("\(prefix)_URL", "url")
        guard let url = URL(string: urlText), url.scheme == "https" || url.scheme == "http", url.host != nil else {
            throw UsageError("\(prefix)_URL: not an http(s) URL: \(urlText)")
        }
        let tenant = try required("\(prefix)_TENANT_ID", "tenantId")
        let clients = try required("\(prefix)_CLIENT_ID", "clientId").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        var secret = environment["\(prefix)_CLIENT_SECRET"] ?? ""
        if secret.isEmpty, let paths = try value("\(prefix)_CLIENT_SECRET_FILE", "clientSecretFile") {
            secret = try paths.split(separator: ",").map { path in
                guard let data = FileManager.default.contents(atPath: String(path)) else {
                    throw UsageError("\(name).clientSecretFile: cannot read \(path)")
                }
                return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }.joined(separator: ",")
        }
        guard !secret.isEmpty else {
            throw UsageError("\(prefix)_CLIENT_SECRET (or \(prefix)_CLIENT_SECRET_FILE) is required")
        }
        // Several identities: client ids and secrets as comma lists, in the same order.
        let secrets = secret.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard secrets.count == clients.count else {
            throw UsageError(
                "\(prefix)_CLIENT_ID names \(clients.count) identities but the secrets are \(secrets.count)")
        }
        var authority: URL?
        if let text = try value("\(prefix)_AUTHORITY", "authority") {
            guard let url = URL(string: text), url.host != nil else {
                throw UsageError("\(prefix)_AUTHORITY: not a URL: \(text)")
            }
            authority = url
        }
        let identities = zip(clients, secrets).map { client, secret in
            var settings = ServiceClient.Settings(url: url, tenantID: tenant, clientID: client, clientSecret: secret)
            if let authority { settings.authority = authority }
            return settings
        }
        var ids: [String] = []
        if let list = environment["\(prefix)_APPLY_CLIENT_IDS"], !list.isEmpty {
            ids = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        } else if let raw = object["applyClientIds"] {
            guard let list = raw as? [String] else { throw UsageError("\(name).applyClientIds must be an array") }
            ids = list
        }
        let applyClientIDs = try ids.map { text in
            guard let id = UUID(uuidString: text) else {
                throw UsageError("\(prefix)_APPLY_CLIENT_IDS: \(text) is not a client id (a GUID)")
            }
            return id
        }
        return ConnectionSettings(
            system: system, settings: identities[0], identities: identities, applyClientIDs: applyClientIDs)
    }

    /// Asks the environment who the client is (`SystemAdapter.identify`): a refused secret or
    /// tenant is a configuration error (exit 2); an environment not reachable yet is only logged.
    static func check(_ client: ServiceClient, settings: ConnectionSettings, log: Log, command: String) async throws {
        let name = settings.system.settingsKey
        do {
            var fields: [(String, LogValue)] = [
                ("url", .string(settings.settings.url.absoluteString)),
                ("client_id", .string(client.settings.clientID)),
            ]
            for (key, value) in try await settings.system.identify(client) { fields.append((key, .string(value))) }
            log.info("\(name) connected", fields)
        } catch let refused as ClientCredentials.Refused {
            throw UsageError("\(name): \(refused)", command: command)
        } catch let error as ServiceError where error.status == 401 || error.status == 403 {
            throw UsageError("\(name): \(error)", command: command)
        } catch {
            log.warning("\(name) not reachable yet", [("error", .string("\(error)"))])
        }
    }
}
