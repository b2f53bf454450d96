import Connectors
import Dispatch
import Runtime
import Synchronization

/// Reads the records of posts taken at the same time together: the first post to arrive while no
/// read is running reads every post waiting then in one call (`ContextReader.records(of:)`, one
/// `$batch`), and hands the next batch to the first post that waited for it.
final class ReadBatcher: Sendable {
    private let reader: any ContextReader
    private let maxBatch: Int
    private let state = Mutex<State>(State())

    private struct State {
        var waiting: [Waiter] = []
        var running = false
    }

    /// One post's read, and what it came to.
    private final class Waiter: Sendable {
        let read: ContextRead
        let outcome = Mutex<Outcome?>(nil)
        let signal = DispatchSemaphore(value: 0)

        init(read: ContextRead) { self.read = read }
    }

    private enum Outcome {
        case read(Result<ContextChange?, any Error>)
        /// Read the next batch, then wait for this one's own outcome.
        case lead
    }

    /// The reader answered for fewer records than it was asked.
    struct Unanswered: Error, CustomStringConvertible {
        var description: String { "the read of several posts' records came back short" }
    }

    init(reader: any ContextReader, maxBatch: Int = 100) {
        self.reader = reader
        self.maxBatch = maxBatch
    }

    /// The change `read` comes to, read with those of the posts waiting beside it.
    func change(of read: ContextRead) throws -> ContextChange? {
        let waiter = Waiter(read: read)
        let lead = state.withLock { state in
            state.waiting.append(waiter)
            defer { state.running = true }
            return !state.running
        }
        if lead { runBatch() }
        while true {
            waiter.signal.wait()
            switch waiter.outcome.withLock({ $0.take() }) {
            case .read(let result)?: return try result.get()
            case .lead?: runBatch()
            case nil: continue
            }
        }
    }

    /// Reads the posts waiting now, then hands the lead to the first one waiting after them.
    private func runBatch() {
        let batch = state.withLock { state in
            let batch = Array(state.waiting.prefix(maxBatch))
            state.waiting.removeFirst(batch.count)
            return batch
        }
        let result = Result {
            let changes = try AsyncBridge.wait { [reader] in try await reader.records(of: batch.map(\.read)) }
            guard changes.count == batch.count else { throw Unanswered() }
            return changes
        }
        for (index, waiter) in batch.enumerated() {
            waiter.outcome.withLock { $0 = .read(result.map { $0[index] }) }
            waiter.signal.signal()
        }
        let next = state.withLock { state in
            guard let next = state.waiting.first else {
                state.running = false
                return nil as Waiter?
            }
            return next
        }
        if let next {
            next.outcome.withLock { $0 = .lead }
            next.signal.signal()
        }
    }
}
