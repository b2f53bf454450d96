import Connectors
import Kafka
import Runtime

/// One record read and not yet written (or dead-lettered), with what was read from it.
struct PendingRecord {
    var record: KafkaRecord
    var item: ApplyItem
    /// When its reference was first found missing.
    var waitingSince: ContinuousClock.Instant?
    /// When its write first failed for want of the service (a 5xx, no answer).
    var failingSince: ContinuousClock.Instant?
}

/// The records of one document (one key of one topic), in order: at most one round of them in
/// flight, the next round not before `notBefore`.
struct DocumentQueue {
    var partition: TopicPartition
    var records: [PendingRecord] = []
    /// Records of the round in flight (the first ones), and the round's token.
    var inFlight = 0
    var round: UInt64 = 0
    var notBefore = ContinuousClock.now
    /// Rounds in a row that failed or waited for a reference: the next one waits longer.
    var failures = 0

    /// A document's pause after a failed round: 250 ms, doubling up to 30 s. No jitter: each
    /// document's rounds are its own, and a `Retry-After` pause is taken as the service gives it.
    static let backoff = Backoff(initial: .milliseconds(250), maximum: .seconds(30), jitter: false)

    /// Waits `pause` (a `Retry-After`), or longer than the last time, before the next round.
    mutating func delay(by pause: Duration? = nil) {
        if let pause {
            notBefore = .now + pause
        } else {
            failures += 1
            notBefore = .now + Self.backoff.pause(after: failures)
        }
    }
}

/// The offsets read from one partition and which of them are done: what can be committed is the
/// offset after the longest done prefix.
struct PartitionLedger {
    private var offsets: [Int64] = []
    private var done: [Bool] = []
    private var head = 0
    /// The next offset to commit, once known.
    private(set) var committable: Int64?

    mutating func read(_ offset: Int64) {
        offsets.append(offset)
        done.append(false)
    }

    mutating func finish(_ offset: Int64) {
        // Offsets are read in order: a binary search finds the record.
        var low = head
        var high = offsets.count - 1
        while low <= high {
            let middle = (low + high) / 2
            if offsets[middle] == offset {
                done[middle] = true
                break
            }
            if offsets[middle] < offset { low = middle + 1 } else { high = middle - 1 }
        }
        while head < offsets.count && done[head] {
            committable = offsets[head] + 1
            head += 1
        }
        if head > 1_024 && head * 2 > offsets.count {
            offsets.removeFirst(head)
            done.removeFirst(head)
            head = 0
        }
    }
}
