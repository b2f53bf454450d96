import Operations
import Testing

@Suite("Where a replay by time starts in a partition that cannot be looked up by time")
struct OffsetReplayTests {
    /// Timestamps of offsets 100..<110: 1 000, 1 010, … (one record every 10 ms), two records sharing
    /// 1 050.
    private let stamps: [Int64: Int64] = Dictionary(
        uniqueKeysWithValues: (100..<110).map { ($0, $0 == 106 ? 1_050 : 1_000 + ($0 - 100) * 10) })

    @Test(
        "The first record at or after the time: exactly on a record, between two, before all, after all, on a time two records share, in an empty partition; each timestamp read at most a logarithm of times"
    )
    func firstOffset() throws {
        var reads = 0
        func at(_ time: Int64) -> Int64 {
            OffsetReplay.firstOffset(atOrAfter: time, low: 100, high: 110) { offset in
                reads += 1
                return stamps[offset]!
            }
        }
        #expect(at(1_030) == 103)
        #expect(at(1_031) == 104)
        #expect(at(0) == 100)
        #expect(at(5_000) == 110, "none at or after: the end")
        #expect(at(1_050) == 105, "the first of two records stamped alike")
        #expect(reads <= 5 * 5)
        #expect(
            OffsetReplay.firstOffset(atOrAfter: 1_000, low: 7, high: 7) { _ in
                Issue.record("read"); return 0
            } == 7)
    }
}
