/// Which of the records a producer has sent are delivered, told by the ids `KafkaProducer.send`
/// returns. The ids of one producer are consecutive, so the window keeps one flag per id from the
/// oldest undelivered record on: marking and asking cost no hashing, whatever order the delivery
/// reports come in (they are ordered per partition only).
struct DeliveryWindow {
    /// The id of `flags[head]`.
    private var start: UInt64 = 0
    private var flags: [Bool] = []
    /// Flags before `head` are delivered and no longer looked at.
    private var head = 0
    /// Sends below this id were given up (`abandon()`): their late reports do not count.
    private var abandonedBelow: UInt64 = 0

    /// Records sent and not yet reported delivered.
    var outstanding: Int { flags[head...].lazy.filter { !$0 }.count }

    /// Counts record `id` in as sent; ids skipped since the last one (taken by a send that
    /// failed at once) count as delivered.
    mutating func sent(_ id: UInt64) {
        if head == flags.count {
            flags.removeAll(keepingCapacity: true)
            head = 0
            start = id
        }
        var next = start + UInt64(flags.count - head)
        guard id >= next else { return }
        while next < id {
            flags.append(true)
            next += 1
        }
        flags.append(false)
    }

    /// Marks record `id` delivered; an id the window does not hold is ignored.
    mutating func delivered(_ id: UInt64) {
        guard id >= start, id - start < UInt64(flags.count - head) else { return }
        flags[head + Int(id - start)] = true
        advance()
    }

    /// Whether every record sent up to and including `id` is delivered.
    func isDelivered(through id: UInt64) -> Bool { head == flags.count || id < start }

    /// Whether a report for `id` still counts (its send was not given up).
    func counts(_ id: UInt64) -> Bool { id >= abandonedBelow }

    /// Gives up every send so far (a rewind redoes their work): the window starts empty and
    /// their reports, successes and failures alike, no longer count.
    mutating func abandon() {
        abandonedBelow = start + UInt64(flags.count - head)
        flags.removeAll(keepingCapacity: true)
        head = 0
        start = abandonedBelow
    }

    private mutating func advance() {
        while head < flags.count && flags[head] {
            head += 1
            start += 1
        }
        if head == flags.count {
            flags.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 4_096 && head * 2 >= flags.count {
            flags.removeFirst(head)
            head = 0
        }
    }
}
