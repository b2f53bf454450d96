import Connectors
import Foundation
import Runtime
import Simulators

extension SimulatedClient {
    /// A client of this identity on the simulator at `url` (tenant `tenant`), whose token endpoint
    /// is the simulator's own: what the benches and the HTTP demo connect with.
    func client(
        of url: URL, tenant: UUID, api: ServiceClient.API, log: Log,
        http configuration: HTTPClient.Configuration = HTTPClient.Configuration()
    ) -> ServiceClient {
        var settings = ServiceClient.Settings(
            url: url, tenantID: tenant.uuidString.lowercased(), clientID: id.uuidString.lowercased(),
            clientSecret: secret)
        settings.authority = url
        return ServiceClient(settings: settings, http: HTTPClient(configuration: configuration, log: log), api: api)
    }
}
