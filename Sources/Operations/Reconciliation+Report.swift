import Foundation
import Runtime
import Topology

extension Reconciliation {
    /// The report: per stream, then the first `show` differences.
    public func report(
        streams: Set<SyncStream>, show: Int, company: String, started: ContinuousClock.Instant, verdict: Bool = true
    ) -> String {
        let elapsed = ContinuousClock.now - started
        var lines = [
            "p2c reconcile: \(company), Dataverse against F&O through the maps, in \(String(format: "%.1f", elapsed.seconds)) s"
        ]
        let shown = SyncStream.allCases.filter(streams.contains)
        let width = max(6, shown.map(\.rawValue.count).max() ?? 6)
        let columns = ["CRM records", "ERP records", "compared", "missing", "different", "held back"]
        lines.append("  stream" + String(repeating: " ", count: width - 6) + columns.map { "  " + $0 }.joined())
        for stream in shown {
            let counts = counts[stream] ?? Counts()
            let values = [
                counts.crmRecords, counts.erpRecords, counts.compared, counts.missing, counts.different,
                counts.filtered,
            ]
            var line = "  " + stream.rawValue.padding(toLength: width, withPad: " ", startingAt: 0)
            for (value, column) in zip(values, columns) {
                let text = String(value)
                line += String(repeating: " ", count: max(0, column.count + 2 - text.count)) + text
            }
            lines.append(line)
        }
        lines.append("  differences: \(mismatches.count)")
        for mismatch in mismatches.prefix(show) { lines.append("    \(mismatch)") }
        if mismatches.count > show { lines.append("    ...") }
        if verdict {
            lines.append(isClean ? "result: the systems agree" : "result: the systems differ")
        }
        return lines.joined(separator: "\n")
    }
}
