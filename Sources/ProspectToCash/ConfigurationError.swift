/// A mapping setting that cannot be used, found when the mapper is built and before any event is
/// read. Commands report it as a usage error (exit code 2): it is the deployment's to fix, and it
/// never reaches a dead-letter queue, whose codes (`MappingError`) describe events.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The setting as the configuration file spells it, e.g. `numberSequences.crm`.
    public var setting: String
    /// What is wrong with it.
    public var message: String

    public init(_ setting: String, _ message: String) {
        self.setting = setting
        self.message = message
    }

    public var description: String { "\(setting): \(message)" }
}
