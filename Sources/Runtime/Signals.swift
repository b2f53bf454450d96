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
