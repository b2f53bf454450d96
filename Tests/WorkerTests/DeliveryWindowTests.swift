import Testing

@testable import Worker

@Suite("Which sent records are delivered")
struct DeliveryWindowTests {
    @Test("Reports in any order: a batch counts as delivered only once it and every earlier send are")
    func outOfOrder() {
        var window = DeliveryWindow()
        for id in UInt64(100)...109 { window.sent(id) }
        #expect(!window.isDelivered(through: 100))
        window.delivered(101)
        window.delivered(104)
        #expect(!window.isDelivered(through: 101))
        window.delivered(100)
        #expect(window.isDelivered(through: 101))
        #expect(!window.isDelivered(through: 102))
        for id in UInt64(102)...103 { window.delivered(id) }
        #expect(window.isDelivered(through: 104))
        #expect(!window.isDelivered(through: 105))
        #expect(window.outstanding == 5)
        for id in UInt64(105)...109 { window.delivered(id) }
        #expect(window.isDelivered(through: 109))
        #expect(window.outstanding == 0)
    }

    @Test("Ids skipped by a send that failed at once count as delivered; unknown and repeated reports change nothing")
    func gapsAndStrays() {
        var window = DeliveryWindow()
        window.sent(1)
        window.sent(4)  // 2 and 3 were taken by sends that threw
        window.delivered(1)
        #expect(window.isDelivered(through: 3))
        #expect(!window.isDelivered(through: 4))
        window.delivered(99)
        window.delivered(0)
        window.delivered(1)
        #expect(!window.isDelivered(through: 4))
        window.delivered(4)
        #expect(window.isDelivered(through: 4))
        // Empty again: the next send starts a new window wherever its id is.
        window.sent(10)
        #expect(!window.isDelivered(through: 10))
        #expect(window.isDelivered(through: 9))
    }

    @Test("After a rewind gives up what was in flight, its late reports do not count and new sends start afresh")
    func abandon() {
        var window = DeliveryWindow()
        for id in UInt64(1)...5 { window.sent(id) }
        window.delivered(1)
        window.abandon()
        #expect(!window.counts(2))
        #expect(!window.counts(5))
        window.delivered(3)  // a late report of a given-up send
        window.sent(6)
        window.sent(7)
        #expect(window.counts(6))
        #expect(!window.isDelivered(through: 6))
        window.delivered(6)
        #expect(window.isDelivered(through: 6))
        #expect(!window.isDelivered(through: 7))
        #expect(window.outstanding == 1)
    }

    @Test("A long run with one straggler: everything after it waits, and the window stays correct as it compacts")
    func straggler() {
        var window = DeliveryWindow()
        for id in UInt64(0)..<20_000 { window.sent(id) }
        for id in UInt64(0)..<20_000 where id != 7 { window.delivered(id) }
        #expect(window.isDelivered(through: 6))
        #expect(!window.isDelivered(through: 7))
        #expect(!window.isDelivered(through: 19_999))
        window.delivered(7)
        #expect(window.isDelivered(through: 19_999))
        // Deliveries keeping pace with sends over many compactions.
        for id in UInt64(20_000)..<60_000 {
            window.sent(id)
            if id >= 20_002 { window.delivered(id - 2) }
        }
        #expect(window.isDelivered(through: 59_997))
        #expect(!window.isDelivered(through: 59_998))
        #expect(window.outstanding == 2)
    }
}
