import Kafka
import Runtime

/// What a fleet member (a mapping worker, an apply or a capture member) does with its consumer
/// group. The loop that drives it, `ConsumeLoop`, is the same for all of them: polling, the probes,
/// rebalance events, the stop and its deadline, leaving the group.
///
/// Every method runs on the loop's thread; `rebalanced` runs inside `poll`.
package protocol ConsumeLoopMember: AnyObject, Sendable {
    /// Work due before the next poll, and how long that poll may wait: nil skips the poll this
    /// turn (backpressure: the member catches up before it reads more).
    func beforePoll() throws -> Duration?
    /// One record read.
    func take(_ record: KafkaRecord) throws
    /// Work due after each poll (`idle`: the poll returned nothing): sending, settling, committing.
    func afterPoll(idle: Bool) throws
    /// Partitions assigned, revoked or lost. A throw ends the loop at its next turn.
    func rebalanced(_ event: RebalanceEvent) throws
    /// After a stop, before the group is left: the last commit, bounded by `ConsumeLoop.timeout`.
    func finish()
    /// After a failure, before the group is left: gives up what is open (the partitions' next
    /// owner redoes it).
    func abandon()
    /// Once the group is left: the last flush, bounded by `ConsumeLoop.timeout`.
    func closed()
}

extension ConsumeLoopMember {
    package func abandon() {}
    package func closed() {}
}

/// The one consume loop of every fleet member: poll, hand each record and rebalance event to the
/// member, keep the probes current, and on a stop finish within the shutdown budget, counted from
/// the stop request, whatever Kafka or the member's peer is doing.
///
/// `run(_:)` blocks its thread until `stop()` or a failure.
public final class ConsumeLoop: @unchecked Sendable {
    // @unchecked: `shutdownDeadline`, `rebalanceFailure` and `assigned` are touched only by the
    // thread in `run` (the rebalance handler runs inside `consumer.poll` on it); `stopRequest` is
    // synchronized.
    public let consumer: KafkaConsumer
    public let stopRequest = StopRequest()
    let liveness: Liveness
    let rebalances: Counter
    let shutdownBudget: Duration
    let sessionTimeout: Duration
    let log: Log
    /// Set once the member is on its way out (a stop, or a failure): every wait ends by then.
    public private(set) var shutdownDeadline: ContinuousClock.Instant?
    var rebalanceFailure: (any Error)?
    /// Whether the group has given this member its first assignment (partitions or none) yet.
    var assigned = false

    public init(
        consumer: KafkaConsumer, liveness: Liveness, rebalances: Counter, shutdownTimeout: Duration,
        sessionTimeout: Duration, log: Log
    ) {
        self.consumer = consumer
        self.liveness = liveness
        self.rebalances = rebalances
        shutdownBudget = shutdownTimeout
        self.sessionTimeout = sessionTimeout
        self.log = log
    }

    /// Asks `run` to finish, leave the group and return within the shutdown budget of this call.
    public func stop() {
        stopRequest.request()
    }

    public var isStopping: Bool { stopRequest.isRequested }

    /// `normal`, or what is left until the shutdown deadline once on the way out.
    public func timeout(_ normal: Duration) -> Duration {
        guard let deadline = shutdownDeadline else { return normal }
        return max(.zero, min(normal, deadline - .now))
    }

    /// Starts the shutdown clock (from the stop request when there was one).
    public func beginShutdown() {
        guard shutdownDeadline == nil else { return }
        shutdownDeadline = (stopRequest.requestedAt ?? .now) + shutdownBudget
    }

    /// Runs `member` until a stop (then it finishes, the group is left and `run` returns) or a
    /// failure (then it abandons its work, the group is left and the failure is thrown). The
    /// member has subscribed already.
    package func run(_ member: some ConsumeLoopMember) throws {
        // Weak: a consumer closed by its deinit after the member is gone must not call back into it.
        consumer.onRebalance { [weak self, weak member] event in
            guard let self, let member else { return }
            rebalances.add()
            liveness.ready()
            if case .assigned = event { assigned = true }
            do {
                try member.rebalanced(event)
            } catch {
                if rebalanceFailure == nil { rebalanceFailure = error }
            }
        }
        let started = ContinuousClock.now
        var told = started
        do {
            while !stopRequest.isRequested {
                liveness.tick()
                if !assigned && ContinuousClock.now - told >= .seconds(5) {
                    told = .now
                    tellWaiting(since: started)
                }
                if !liveness.isReady && !consumer.memberID.isEmpty { liveness.ready() }
                if let failure = rebalanceFailure { throw failure }
                guard let wait = try member.beforePoll() else { continue }
                let event = try consumer.poll(timeout: wait)
                switch event {
                case .record(let record)?:
                    try member.take(record)
                case .error(let error)?:
                    log.warning("consumer error", [("error", .string(error.description))])
                case .partitionEnd?, nil:
                    break
                }
                try member.afterPoll(idle: event == nil)
            }
        } catch {
            log.error("failing", [("error", .string("\(error)"))])
            // Leave the group at once so that the partitions move to the rest of the fleet.
            beginShutdown()
            member.abandon()
            leaveGroup()
            throw error
        }
        beginShutdown()
        member.finish()
        leaveGroup()
        member.closed()
    }

    /// Says what a member waiting for its first assignment waits for, so that a wait is never silent.
    func tellWaiting(since started: ContinuousClock.Instant) {
        log.info(
            "waiting for the group to take this member in: the coordinator answers once every member it knows has rejoined, or left, or (stopped without leaving) outlived its session timeout",
            [
                ("waited_s", .int(Int64((ContinuousClock.now - started) / .seconds(1)))),
                ("joined", .bool(!consumer.memberID.isEmpty)),
            ])
    }

    /// Leaves the group by the shutdown deadline, or logs that it gave up: the group then moves
    /// this member's partitions only once its session times out.
    func leaveGroup() {
        do {
            if try !consumer.close(timeout: timeout(.seconds(30))) {
                log.warning(
                    "gave up leaving the group at the shutdown deadline; its partitions move when the session times out",
                    [("session_timeout_ms", .int(Int64(sessionTimeout.inMilliseconds)))])
            }
        } catch {
            log.warning("leaving the group failed", [("error", .string(error.description))])
        }
        if let failure = rebalanceFailure {
            log.warning("work on revoked partitions given up", [("error", .string("\(failure)"))])
        }
    }
}
