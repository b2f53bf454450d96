import Kafka

extension KafkaProducer {
    /// Sends `events` inside the open transaction and waits until each is delivered, before the
    /// caller sends the position they lead to: a member killed in between leaves the old position,
    /// so its successor reads the page again. (Kafka keeps an aborted transaction from every
    /// read_committed reader anyway; a broker that shows open transactions, as the embedded one
    /// does, would otherwise show a new position without its events.)
    func deliver(_ events: [OutgoingRecord]) throws {
        guard !events.isEmpty else { return }
        for event in events { _ = try send(event) }
        if let failure = try flush(timeout: .seconds(30)).first(where: { $0.error != nil })?.error { throw failure }
    }
}
