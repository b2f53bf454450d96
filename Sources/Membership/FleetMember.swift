import Foundation
import Runtime
import Synchronization

/// Runs a fleet member's blocking loop on a thread of its own until it ends or a signal stops it.
public enum FleetMember {
    /// Where a member answers `/metrics`, `/healthz` and `/readyz`.
    public struct Probes: Sendable {
        public var port: Int
        public var host: String
        public var liveness: Liveness
        /// `/healthz` fails once the loop has not turned for this long.
        public var watchdog: Duration
        public var metrics: @Sendable () -> String

        public init(
            port: Int, host: String, liveness: Liveness, watchdog: Duration, metrics: @escaping @Sendable () -> String
        ) {
            self.port = port
            self.host = host
            self.liveness = liveness
            self.watchdog = watchdog
            self.metrics = metrics
        }
    }

    /// A member's process: serves its probes, runs `body` until it returns or SIGTERM or SIGINT
    /// calls `stop` (bounded by `budget`), and gives the exit status: 0 after a clean end, 1 after
    /// `body` failed (logged). A probes port that cannot be opened is a usage error of `command`.
    public static func serve(
        _ probes: Probes, command: String, name: String, log: Log, budget: Duration,
        body: @escaping @Sendable () throws -> Void, stop: @escaping @Sendable () -> Void
    ) async throws -> Int32 {
        let responder: HTTPResponder
        do {
            responder = try HTTPResponder.probes(
                port: probes.port, host: probes.host, liveness: probes.liveness, watchdog: probes.watchdog,
                metrics: probes.metrics)
        } catch {
            throw UsageError("metrics port \(probes.port): \(error)", command: command)
        }
        defer { responder.stop() }
        log.info("http listening", [("port", .int(Int64(responder.port)))])
        if let failure = await run(log: log, budget: budget, name: name, body: body, stop: stop) {
            log.error("\(name) failed", [("error", .string(failure))])
            return 1
        }
        return 0
    }

    /// Runs `body` until it returns; SIGTERM or SIGINT calls `stop`. The member bounds each of its
    /// own waits to `budget`; this is the backstop for a call that ignores its timeout: it returns
    /// 1 s after the budget whatever the thread does. The error `body` threw, if any.
    public static func run(
        log: Log, budget: Duration, name: String, body: @escaping @Sendable () throws -> Void,
        stop: @escaping @Sendable () -> Void
    ) async -> String? {
        let result = MemberResult()
        let thread = Thread {
            do { try body() } catch { result.fail(error) }
            result.finish()
        }
        thread.start()
        let signalTask = Task {
            let signal = await Signals.termination()
            log.info(
                "stopping", [("signal", .int(Int64(signal))), ("timeout_ms", .int(Int64(budget / .milliseconds(1))))])
            stop()
            try? await Task.sleep(for: budget + .seconds(1))
            guard !Task.isCancelled else { return }
            log.warning("the \(name) did not stop within its shutdown timeout; exiting without it")
            result.finish()
        }
        await result.waitUntilFinished()
        signalTask.cancel()
        return result.error
    }
}

/// How the member's thread ended.
final class MemberResult: Sendable {
    private let state = Mutex<(finished: Bool, error: String?, waiter: CheckedContinuation<Void, Never>?)>(
        (false, nil, nil))

    var error: String? { state.withLock { $0.error } }

    func fail(_ error: any Error) { state.withLock { $0.error = "\(error)" } }

    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func waitUntilFinished() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.finished { return true }
                state.waiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
    }
}
