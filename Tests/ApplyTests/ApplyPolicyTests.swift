import Kafka
import Testing

@testable import Apply

@Suite("Apply's policies, without a broker: the AIMD window, a document's backoff, the committable offset")
struct ApplyPolicyTests {
    @Test(
        "A 429 takes a quarter off one identity's window (half when identities share the load), once per pushback; as many clean rounds as the window adds one back, up to the maximum"
    )
    func window() {
        let start = ContinuousClock.now
        var window = ConcurrencyWindow(maximum: 8, now: start)
        #expect(window.limit == 8)
        window.throttled(startedAt: start, shared: false, now: start + .seconds(1))
        #expect(window.limit == 6)
        // A round started before that decrease saw the old window: no second cut for the same pushback.
        window.throttled(startedAt: start, shared: false, now: start + .seconds(2))
        #expect(window.limit == 6)
        window.throttled(startedAt: start + .seconds(3), shared: false, now: start + .seconds(3))
        #expect(window.limit == 5)
        for _ in 0..<4 { window.succeeded() }
        #expect(window.limit == 5)
        window.succeeded()
        #expect(window.limit == 6)
        for _ in 0..<100 { window.succeeded() }
        #expect(window.limit == 8, "never beyond the maximum")

        var shared = ConcurrencyWindow(maximum: 8, now: start)
        shared.throttled(startedAt: start, shared: true, now: start + .seconds(1))
        #expect(shared.limit == 4)
        var one = ConcurrencyWindow(maximum: 1, now: start)
        one.throttled(startedAt: start, shared: false, now: start + .seconds(1))
        #expect(one.limit == 1, "never below one")
    }

    @Test("A document's rounds back off 250 ms doubling to 30 s; a Retry-After is taken as given")
    func documentBackoff() {
        var queue = DocumentQueue(partition: TopicPartition("crm.orders.inbound", 0))
        let pauses = (1...10).map { DocumentQueue.backoff.pause(after: $0) }
        #expect(pauses.prefix(3) == [.milliseconds(250), .milliseconds(500), .seconds(1)])
        #expect(pauses.last == .seconds(30))
        let before = ContinuousClock.now
        queue.delay(by: .seconds(7))
        #expect(queue.failures == 0 && queue.notBefore >= before + .seconds(7))
        queue.delay()
        queue.delay()
        #expect(queue.failures == 2 && queue.notBefore < before + .seconds(7))
    }

    @Test("Offsets commit only up to the longest prefix of records done, whatever order they finish in")
    func ledger() {
        var ledger = PartitionLedger()
        for offset in [10, 11, 12, 14] as [Int64] { ledger.read(offset) }
        #expect(ledger.committable == nil)
        ledger.finish(12)
        ledger.finish(14)
        #expect(ledger.committable == nil, "10 is not written yet")
        ledger.finish(10)
        #expect(ledger.committable == 11)
        ledger.finish(11)
        #expect(ledger.committable == 15)
    }
}
