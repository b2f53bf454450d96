import Foundation

/// Runs blocking librdkafka calls off Swift's cooperative thread pool.
public enum Blocking {
    /// Runs `body` on a thread of its own and resumes the caller with its result. Not on
    /// dispatch's pool: on Linux it does not grow when its threads block, and URLSession's work
    /// runs there too, so two long bodies (a command's whole run, a test's story) would stall
    /// every HTTP request of the process.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.name = "p2c-blocking"
            thread.start()
        }
    }
}
