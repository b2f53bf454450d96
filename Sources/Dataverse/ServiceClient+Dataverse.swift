import Connectors
import Foundation
import ProspectToCash

/// Who is who in Dataverse ("Use OAuth authentication with Dataverse"): the caller, and the application user of an
/// Entra application.
extension ServiceClient {
    /// The calling application user's `systemuserid` (`WhoAmI`, "Use OAuth authentication with Dataverse").
    public func whoAmI() async throws -> UUID {
        let answer = try await get("WhoAmI")
        guard let id = answer["UserId"]?.stringValue.flatMap(UUID.init(uuidString:)) else {
            throw ServiceError(status: 200, code: "unexpected_answer", message: "WhoAmI without a UserId")
        }
        return id
    }

    /// The `systemuserid` of the application user of Entra application `clientID`, nil when the
    /// environment has none: how capture learns which writes were p2c's own.
    public func applicationUser(clientID: UUID) async throws -> UUID? {
        let answer = try await get(
            "systemusers?$filter=applicationid%20eq%20\(clientID.uuidString.lowercased())&$select=systemuserid")
        guard case .array(let users)? = answer["value"] else { return nil }
        return users.first?.objectValue?["systemuserid"]?.stringValue.flatMap(UUID.init(uuidString:))
    }
}
