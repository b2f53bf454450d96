import Synchronization

/// A lock-free counter that can live in arrays and dictionaries (an `Atomic` cannot be copied).
public final class Counter: Sendable {
    private let storage = Atomic<Int>(0)
    public init() {}
    public func add(_ amount: Int = 1) { storage.add(amount, ordering: .relaxed) }
    public var value: Int { storage.load(ordering: .relaxed) }
}

/// A Prometheus histogram with fixed buckets; observations are lock-free.
public final class Histogram: Sendable {
    public let name: String
    public let help: String
    /// Upper bounds in seconds.
    public let bounds: [Double]
    private let counts: [Counter]
    private let total = Counter()
    /// Sum in microseconds, so it stays an integer.
    private let sumMicroseconds = Counter()

    public init(
        name: String, help: String, bounds: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    ) {
        self.name = name
        self.help = help
        self.bounds = bounds
        self.counts = bounds.map { _ in Counter() }
    }

    public func observe(seconds: Double) {
        if let index = bounds.firstIndex(where: { seconds <= $0 }) { counts[index].add() }
        total.add()
        sumMicroseconds.add(Int(min(max(0, seconds), 1e9) * 1_000_000))
    }

    /// The exposition lines, with `labels` (e.g. `flow="crm-to-erp"`).
    public func exposition(labels: String) -> String {
        var lines = ["# HELP \(name) \(help)", "# TYPE \(name) histogram"]
        var cumulative = 0
        let prefix = labels.isEmpty ? "" : labels + ","
        for (bound, count) in zip(bounds, counts) {
            cumulative += count.value
            lines.append("\(name)_bucket{\(prefix)le=\"\(bound)\"} \(cumulative)")
        }
        lines.append("\(name)_bucket{\(prefix)le=\"+Inf\"} \(total.value)")
        lines.append("\(name)_sum{\(labels)} \(Double(sumMicroseconds.value) / 1_000_000)")
        lines.append("\(name)_count{\(labels)} \(total.value)")
        return lines.joined(separator: "\n")
    }
}

/// Prometheus text exposition of counters and gauges.
public enum Exposition {
    /// `# HELP`, `# TYPE` and one line per labelled value.
    public static func family(
        _ name: String, type: String, help: String, samples: [(labels: String, value: Double)]
    ) -> String {
        var lines = ["# HELP \(name) \(help)", "# TYPE \(name) \(type)"]
        for sample in samples {
            let value =
                sample.value.rounded() == sample.value && abs(sample.value) < 1e15
                ? String(Int(sample.value)) : String(sample.value)
            lines.append(sample.labels.isEmpty ? "\(name) \(value)" : "\(name){\(sample.labels)} \(value)")
        }
        return lines.joined(separator: "\n")
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    @inlinable public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

extension Duration {
    /// Whole milliseconds (rounded toward zero), for settings and logs that count in them.
    public var inMilliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}
