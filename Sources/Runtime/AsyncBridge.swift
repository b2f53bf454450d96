import Dispatch
import Foundation
import Synchronization

/// Runs async work from a thread that must block for it: the loops of the fleet members and the
/// HTTP server's connection threads call the async HTTP clients through here.
public enum AsyncBridge {
    /// Runs `body` on Swift concurrency and waits for its result. When `cancelled` turns true
    /// (checked every 100 ms) the work is cancelled and `CancellationError` thrown after at most
    /// a second more.
    public static func wait<T: Sendable>(
        cancelled: () -> Bool = { false }, _ body: @escaping @Sendable () async throws -> T
    ) throws -> T {
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let task = Task {
            let outcome: Result<T, any Error>
            do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
            result.withLock { $0 = outcome }
            done.signal()
        }
        while done.wait(timeout: .now() + 0.1) == .timedOut {
            if cancelled() {
                task.cancel()
                _ = done.wait(timeout: .now() + 1)
                throw CancellationError()
            }
        }
        return try result.withLock { $0! }.get()
    }

    /// Runs blocking `body` on a thread of its own and resumes the caller with its result: off
    /// Swift's cooperative pool and off dispatch's worker threads alike, which a long blocking call
    /// would starve (on Linux neither grows when its threads block).
    public static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }
}
