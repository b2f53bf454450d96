/// How many rounds one identity keeps in flight: additive increase, multiplicative decrease. A
/// throttled round takes a quarter (at least one) off the window, half when several identities
/// share the load (a throttled lane's documents go to the others at once, so the member's requests
/// in flight fall only when each lane halves its own); once per pushback: a round started before the
/// last decrease saw the old window. `limit` rounds in a row without one add one back, up to
/// `maximum`. The pause itself lets the service's window drain, so a deeper cut would leave its
/// budget unspent after every pause.
struct ConcurrencyWindow: Equatable {
    private(set) var limit: Int
    let maximum: Int
    private(set) var lastDecrease: ContinuousClock.Instant
    private var successesSinceIncrease = 0

    init(maximum: Int, now: ContinuousClock.Instant = .now) {
        self.maximum = max(1, maximum)
        limit = self.maximum
        lastDecrease = now
    }

    /// A round started at `started` was answered 429; `shared`: other identities take the load.
    mutating func throttled(
        startedAt started: ContinuousClock.Instant, shared: Bool, now: ContinuousClock.Instant = .now
    ) {
        guard started >= lastDecrease else { return }
        limit = shared ? max(1, limit / 2) : max(1, limit - max(1, limit / 4))
        lastDecrease = now
        successesSinceIncrease = 0
    }

    /// A round went through without a pushback.
    mutating func succeeded() {
        guard limit < maximum else { return }
        successesSinceIncrease += 1
        if successesSinceIncrease >= limit {
            limit += 1
            successesSinceIncrease = 0
        }
    }
}
