import Dispatch
import Kafka
import Synchronization

/// An exactly-once commit running off the worker's loop: the batch's offsets and source
/// timestamps, and the outcome once `finish` has been called.
final class CommitInFlight: Sendable {
    let offsets: [TopicPartitionOffset]
    let timestamps: [Int64]
    private let outcome = Mutex<Result<Void, KafkaError>?>(nil)
    private let done = DispatchSemaphore(value: 0)

    init(offsets: [TopicPartitionOffset], timestamps: [Int64]) {
        self.offsets = offsets
        self.timestamps = timestamps
    }

    var isDone: Bool { outcome.withLock { $0 != nil } }

    func finish(_ result: Result<Void, KafkaError>) {
        outcome.withLock { $0 = result }
        done.signal()
    }

    /// Blocks until the commit has ended, or until `deadline` when there is one: its outcome,
    /// nil when it was still running at the deadline.
    func wait(until deadline: ContinuousClock.Instant?) -> Result<Void, KafkaError>? {
        if let result = outcome.withLock({ $0 }) { return result }
        if let deadline {
            let left = max(.zero, deadline - .now)
            let nanoseconds = left.components.seconds * 1_000_000_000 + left.components.attoseconds / 1_000_000_000
            guard done.wait(timeout: .now() + .nanoseconds(Int(nanoseconds))) == .success else { return nil }
        } else {
            done.wait()
        }
        return outcome.withLock { $0! }
    }
}
