import Dispatch
import Foundation
import Synchronization

/// The process's one handler for SIGTERM and SIGINT.
public enum Signals {
    /// Suspends until SIGTERM or SIGINT arrives and returns its number. Call once, from `main`.
    public static func termination() async -> Int32 {
        let signals = [SIGTERM, SIGINT]
        let sources = signals.map { signal -> DispatchSourceSignal in
            // Ignore the default action so the dispatch source sees the signal instead of the process dying.
            Foundation.signal(signal, SIG_IGN)
            return DispatchSource.makeSignalSource(signal: signal, queue: .global())
        }
        let resumed = Mutex(false)
        let received: Int32 = await withCheckedContinuation { continuation in
            for (signal, source) in zip(signals, sources) {
                source.setEventHandler {
                    let first = resumed.withLock { done in
                        defer { done = true }
                        return !done
                    }
                    if first { continuation.resume(returning: signal) }
                }
                source.resume()
            }
        }
        sources.forEach { $0.cancel() }
        return received
    }
}

/// A fleet member's stop request: whether one came, and when (the shutdown deadline counts from
/// there). Set from the signal handler's task, read by the member's loop.
public final class StopRequest: Sendable {
    private let requested = Atomic<Bool>(false)
    private let at = Mutex<ContinuousClock.Instant?>(nil)

    public init() {}

    /// Records the first request.
    public func request() {
        at.withLock { $0 = $0 ?? .now }
        requested.store(true, ordering: .relaxed)
    }

    public var isRequested: Bool { requested.load(ordering: .relaxed) }

    /// When the stop was first requested, if it was.
    public var requestedAt: ContinuousClock.Instant? { at.withLock { $0 } }
}
