import Connectors
import Foundation
import OData
import ProspectToCash
import Runtime
import Synchronization

/// Writes documents into Dataverse: each document's events in order, as one change set (atomic, "Execute batch
/// operations using the Web API") where they can go together, many documents per `$batch` with
/// `odata.continue-on-error` so that one refused document does not hold back the others.
///
/// A line's alternate key holds its header's id (`_salesorderid_value`, "Use an alternate key to reference a
/// record"), read once by the header's own alternate key and kept; a header written in the same round is read from
/// its write's `OData-EntityId` ("Compose HTTP requests and handle errors"), and its lines go in the next round.
public final class DataverseSink: DocumentSink, BatchingSink {
    public let client: ServiceClient
    public let builder: DataverseWriteBuilder
    private let root: String
    private let ids = Mutex<[DataverseReference: UUID]>([:])
    /// Rows whose ids were read (a line's header), and `$batch` requests sent.
    public let idReads = Counter()
    public let batches = Counter()

    public init(client: ServiceClient, schema: DataverseSchema) {
        self.client = client
        builder = DataverseWriteBuilder(schema: schema)
        var base = client.settings.url.absoluteString
        if !base.hasSuffix("/") { base += "/" }
        root = base + "api/data/v9.2/"
    }

    /// Writes `documents` (each the events of one key, in order) in one `$batch`; one outcome per
    /// item, in the documents' order.
    public func apply(_ documents: [[ApplyItem]]) async -> [[ApplyOutcome]] {
        var outcomes = documents.map { Array(repeating: ApplyOutcome.notSent, count: $0.count) }
        var changeSets: [(document: Int, items: [Int], messages: [ODataMessage], rows: [DataverseReference?])] = []
        var contentID = 0
        // Once the service pushed back (429, 5xx), the round's other documents ask it nothing more.
        var halted: ApplyOutcome?
        for (number, items) in documents.enumerated() {
            if let halted {
                outcomes[number] = Array(repeating: halted, count: items.count)
                continue
            }
            typealias Segment = (items: [Int], messages: [ODataMessage], rows: [DataverseReference?])
            var segment: Segment = ([], [], [])
            // Writes that waited for a reference go alone, after the document's other writes (which
            // may create what they wait for); a later write to the same row waits behind them.
            var alone: [Segment] = []
            var blocked = Set<String>()
            var written = Set<DataverseReference>()
            // Rows of this document not written in the main change set (waiting, or sent alone):
            // a write naming one waits too, without asking the service.
            var unsettled = Set<DataverseReference>()
            var cut = false
            itemLoop: for (position, item) in items.enumerated() {
                let write: DataverseWrite
                do {
                    write = try await builder.write(table: item.table, deleted: item.deleted, record: item.record)
                } catch let refusal as WriteRefusal {
                    outcomes[number][position] = .refused(code: refusal.code, message: refusal.message, request: nil)
                    continue
                } catch {
                    halted = Self.outcome(of: error)
                    for rest in position..<items.count { outcomes[number][rest] = halted! }
                    break
                }
                let identity = write.identity
                if cut || blocked.contains(identity) || write.references.contains(where: unsettled.contains) {
                    blocked.insert(identity)
                    if let row = write.row { unsettled.insert(row) }
                    continue
                }
                var known: [DataverseReference: UUID] = [:]
                for reference in write.references {
                    // Its row is written earlier in this change set: its id is known after it, and
                    // what follows waits for the next round.
                    if written.contains(reference) {
                        if item.waiting {
                            blocked.insert(identity)
                        } else {
                            cut = true
                        }
                        continue itemLoop
                    }
                    switch await resolve(reference) {
                    case .found(let id): known[reference] = id
                    case .missing:
                        outcomes[number][position] = .referenceMissing("\(reference) does not exist yet")
                        blocked.insert(identity)
                        if let row = write.row { unsettled.insert(row) }
                        continue itemLoop
                    case .failed(let outcome):
                        halted = outcome
                        for rest in position..<items.count { outcomes[number][rest] = outcome }
                        break itemLoop
                    }
                }
                guard var message = write.message(root: root, ids: known) else { break }
                contentID += 1
                message.headers.set("Content-ID", String(contentID))
                if item.waiting {
                    alone.append(([position], [message], [write.row]))
                    blocked.insert(identity)
                    if let row = write.row { unsettled.insert(row) }
                    continue
                }
                segment.items.append(position)
                segment.messages.append(message)
                segment.rows.append(write.row)
                if let row = write.row { written.insert(row) }
            }
            for set in [segment] + alone where !set.items.isEmpty {
                changeSets.append((number, set.items, set.messages, set.rows))
            }
        }
        guard !changeSets.isEmpty else { return outcomes }
        func settle(_ changeSet: Int, _ outcome: ApplyOutcome) {
            let set = changeSets[changeSet]
            for item in set.items { outcomes[set.document][item] = outcome }
        }
        batches.add()
        let (parts, failure) = await exchange(changeSets.map { .changeSet($0.messages) })
        if let failure {
            for index in changeSets.indices { settle(index, failure) }
            return outcomes
        }
        for (index, set) in changeSets.enumerated() {
            guard index < parts.count else {
                settle(
                    index, .unavailable("the batch answered \(parts.count) of \(changeSets.count) change sets"))
                continue
            }
            switch parts[index] {
            case .changeSet(let responses):
                settle(index, .applied)
                // A created or updated row's id, for the lines that follow it.
                for (message, row) in zip(responses, set.rows) {
                    guard let row, let entity = message.headers["OData-EntityId"], let id = Self.entityID(in: entity)
                    else { continue }
                    remember(row, id)
                }
            case .single(let failure):
                // The change set was rolled back; the request that failed says which.
                let failed = failure.contentID.flatMap { id in
                    set.messages.firstIndex { $0.contentID == id }
                }
                let outcome = Self.outcome(status: failure.status, headers: failure.headers, body: failure.body)
                switch outcome {
                case .refused(let code, let message, _):
                    settle(index, .notSent)
                    let position = failed ?? 0
                    let request = set.messages[position]
                    if request.method == "DELETE" && failure.status == 404 {
                        // Already gone: what a delete wants.
                        outcomes[set.document][set.items[position]] = .applied
                    } else {
                        outcomes[set.document][set.items[position]] = .refused(
                            code: code, message: message, request: "\(request.method) \(request.url)")
                    }
                case .referenceMissing:
                    settle(index, .notSent)
                    outcomes[set.document][set.items[failed ?? 0]] = outcome
                default:
                    settle(index, outcome)
                }
            }
        }
        return outcomes
    }

    /// The id of the row `reference` names: kept, or read by its alternate key (nil when it does
    /// not exist).
    private func resolve(_ reference: DataverseReference) async -> Resolution {
        if let id = ids.withLock({ $0[reference] }) { return .found(id) }
        idReads.add()
        let answer: ServiceClient.Answer
        do {
            answer = try await client.send("GET", "\(reference.path)?$select=\(reference.primaryID)")
        } catch {
            return .failed(Self.outcome(of: error))
        }
        if answer.status == 404 { return .missing }
        guard answer.status == 200 else {
            return .failed(Self.outcome(of: ServiceError(answer)))
        }
        guard let id = answer.json?[reference.primaryID]?.stringValue.flatMap(UUID.init(uuidString:)) else {
            return .failed(.unavailable("\(reference): the answer has no \(reference.primaryID)"))
        }
        remember(reference, id)
        return .found(id)
    }

    private enum Resolution {
        case found(UUID)
        case missing
        case failed(ApplyOutcome)
    }

    private func remember(_ reference: DataverseReference, _ id: UUID) {
        ids.withLock { ids in
            // Bounded: a header's lines come soon after it.
            if ids.count >= 100_000 { ids.removeAll(keepingCapacity: true) }
            ids[reference] = id
        }
    }

    /// The GUID at the end of an `OData-EntityId` (`…/salesorders(<guid>)`).
    static func entityID(in entity: String) -> UUID? {
        guard entity.hasSuffix(")"), let open = entity.lastIndex(of: "(") else { return nil }
        return UUID(uuidString: String(entity[entity.index(after: open)..<entity.index(before: entity.endIndex)]))
    }
}
