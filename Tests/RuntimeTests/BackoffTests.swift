import Runtime
import Testing

@Suite("Backoff: doubling pauses with a ceiling, with or without jitter")
struct BackoffTests {
    @Test("Without jitter the pause doubles from the first failure and stops at the maximum")
    func doubling() {
        let backoff = Backoff(initial: .milliseconds(250), maximum: .seconds(30), jitter: false)
        #expect(
            (1...9).map { backoff.pause(after: $0) / .milliseconds(1) } == [
                250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000,
            ])
        #expect(backoff.pause(after: 0) == .milliseconds(250), "no failure counts as the first")
        #expect(backoff.pause(after: 10_000) == .seconds(30), "a long run of failures does not overflow")
    }

    @Test("With jitter every pause lies between zero and the ceiling, and they differ")
    func jitter() {
        let backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(30))
        let pauses = (0..<200).map { _ in backoff.pause(after: 3) }
        #expect(pauses.allSatisfy { $0 >= .zero && $0 <= .milliseconds(800) })
        #expect(Set(pauses.map { $0 / .microseconds(1) }).count > 100)
    }
}
