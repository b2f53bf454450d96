/// Exponential backoff: the pause after the `n`th failure in a row is `initial` doubled `n - 1`
/// times, at most `maximum`; with full jitter, a random pause up to that.
public struct Backoff: Sendable, Equatable {
    /// The pause after the first failure. Default: 200 ms.
    public var initial: Duration
    /// The longest pause. Default: 30 s.
    public var maximum: Duration
    /// A random pause between zero and the doubled one ("full jitter"), so that clients failing
    /// together do not come back together. Default: true.
    public var jitter: Bool

    public init(initial: Duration = .milliseconds(200), maximum: Duration = .seconds(30), jitter: Bool = true) {
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
    }

    /// The longest pause after `failures` failures in a row (1 or more).
    public func ceiling(after failures: Int) -> Duration {
        min(maximum, initial * (1 << min(max(failures, 1) - 1, 20)))
    }

    /// The pause after `failures` failures in a row (1 or more).
    public func pause(after failures: Int) -> Duration {
        jitter ? ceiling(after: failures) * Double.random(in: 0.0...1.0) : ceiling(after: failures)
    }
}
