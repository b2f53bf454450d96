import Dispatch

/// Runs blocking librdkafka calls off Swift's cooperative thread pool.
public enum Blocking {
    private static let queue = DispatchQueue(label: "p2c.kafka.blocking", attributes: .concurrent)

    /// Runs `body` on a dispatch thread and resumes the caller with its result. Dispatch's pool
    /// does not grow on Linux when its threads block: long bodies wait for each other (use
    /// `Thread` for a body that must start at once).
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }
}
