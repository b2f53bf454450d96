import Foundation
import Kafka
import ProspectToCash
import Runtime

extension CaptureMember {
    /// Inside poll: an assigned state partition's tables are restored and polled from here on; a
    /// revoked or lost one's are left to their next owner (a page is committed whole or not at all).
    package func rebalanced(_ event: RebalanceEvent) {
        switch event {
        case .assigned(let partitions):
            let mine = Set(partitions.filter { $0.topic == CaptureConfiguration.stateTopic }.map(\.partition))
            do {
                try restore(mine)
                owned.formUnion(mine)
                log.info(
                    "assigned",
                    [
                        ("partitions", .int(Int64(mine.count))),
                        (
                            "tables",
                            .string(
                                tables.filter { mine.contains($0.partition) }.map { $0.kind.name(on: side) }.joined(
                                    separator: ",")
                            )
                        ),
                    ])
            } catch {
                log.error("restoring the tables' state failed", [("error", .string("\(error)"))])
            }
        case .revoked(let partitions), .lost(let partitions):
            let gone = Set(partitions.map(\.partition))
            owned.subtract(gone)
            for index in tables.indices where gone.contains(tables[index].partition) {
                tables[index].link = nil
                tables[index].keys = [:]
            }
            log.info("released", [("partitions", .int(Int64(gone.count)))])
        }
        metrics.ownedTables.store(tables.filter { owned.contains($0.partition) }.count, ordering: .relaxed)
    }

    /// Reads `partitions` of the state topic to their end: each table's last link and its rows' keys.
    func restore(_ partitions: Set<Int32>) throws {
        guard !partitions.isEmpty else { return }
        var configuration = ConsumerConfiguration(
            kafka: self.configuration.kafka, groupID: "\(self.configuration.resolvedGroupID)-restore")
        configuration.reportPartitionEnd = true
        let reader = try KafkaConsumer(configuration: configuration)
        let side = self.side.rawValue
        var byKey: [String: Int] = [:]
        for index in tables.indices where partitions.contains(tables[index].partition) {
            byKey["\(side)/\(tables[index].kind.name(on: self.side))"] = index
            tables[index].link = nil
            tables[index].isDelta = false
            tables[index].keys = [:]
            tables[index].nextPoll = .now
        }
        try reader.readToEnd(
            partitions.sorted().map {
                TopicPartitionOffset(CaptureConfiguration.stateTopic, $0, offset: KafkaOffset.beginning)
            }
        ) { record in
            let key = String(decoding: record.key ?? [], as: UTF8.self)
            let value = record.value.flatMap { try? JSONParser.parse($0) }?.objectValue
            if let index = byKey[key] {
                tables[index].link = value?["link"]?.stringValue
                tables[index].isDelta = value?["delta"] == .bool(true)
                return
            }
            // `<side>/<table>/<row id>`: a row's key, or a tombstone once it was deleted.
            guard let slash = key.lastIndex(of: "/"), let index = byKey[String(key[..<slash])] else { return }
            let id = String(key[key.index(after: slash)...])
            if let value, let subject = value["subject"]?.stringValue, let record = value["record"]?.objectValue {
                tables[index].keys[id] = RowKey(subject: subject, record: record)
            } else {
                tables[index].keys[id] = nil
            }
        }
        try? reader.close()
    }

}
