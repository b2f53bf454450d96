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

    /// One change set of a document: the items it writes, their requests, the rows they write.
    struct ChangeSet {
        var document: Int
        var items: [Int] = []
        var messages: [ODataMessage] = []
        var rows: [DataverseReference?] = []
    }

    /// Writes `documents` (each the events of one key, in order) in one `$batch`; one outcome per
    /// item, in the documents' order.
    public func apply(_ documents: [[ApplyItem]]) async -> [[ApplyOutcome]] {
        var outcomes = documents.map { Array(repeating: ApplyOutcome.notSent, count: $0.count) }
        var changeSets: [ChangeSet] = []
        var contentID = 0
        // Once the service pushed back (429, 5xx), the round's other documents ask it nothing more.
        var halted: ApplyOutcome?
        for (number, items) in documents.enumerated() {
            if let halted {
                outcomes[number] = Array(repeating: halted, count: items.count)
                continue
            }
            let planned = await plan(number, items, outcomes: &outcomes[number], contentID: &contentID)
            changeSets += planned.sets
            halted = planned.halted
        }
        guard !changeSets.isEmpty else { return outcomes }
        batches.add()
        let (parts, failure) = await exchange(changeSets.map { .changeSet($0.messages) })
        for (index, set) in changeSets.enumerated() {
            if let failure {
                for item in set.items { outcomes[set.document][item] = failure }
            } else if index < parts.count {
                settle(set, answer: parts[index], outcomes: &outcomes[set.document])
            } else {
                let missing = ApplyOutcome.unavailable(
                    "the batch answered \(parts.count) of \(changeSets.count) change sets")
                for item in set.items { outcomes[set.document][item] = missing }
            }
        }
        return outcomes
    }

    /// Document `number`'s change sets: its writes in order in one; each write that waited for a
    /// reference before alone after it (the others may create what it waits for). A write whose
    /// reference is written earlier in the change set ends it (the row's id is known only after
    /// it): the rest goes in the next round. A write waiting for a reference, and every later
    /// write naming its row, waits without asking the service. Settles in `outcomes` what needs no
    /// request; `halted` when the service pushed back (429, 5xx) and the round asks nothing more.
    func plan(
        _ number: Int, _ items: [ApplyItem], outcomes: inout [ApplyOutcome], contentID: inout Int
    ) async -> (sets: [ChangeSet], halted: ApplyOutcome?) {
        var segment = ChangeSet(document: number)
        var alone: [ChangeSet] = []
        var blocked = Set<String>()
        var written = Set<DataverseReference>()
        // Rows of this document not written in the main change set (waiting, or sent alone).
        var unsettled = Set<DataverseReference>()
        var cut = false
        func planned(halted: ApplyOutcome? = nil) -> (sets: [ChangeSet], halted: ApplyOutcome?) {
            (([segment] + alone).filter { !$0.items.isEmpty }, halted)
        }
        for (position, item) in items.enumerated() {
            let write: DataverseWrite
            do {
                write = try await builder.write(table: item.table, deleted: item.deleted, record: item.record)
            } catch let refusal as WriteRefusal {
                outcomes[position] = .refused(code: refusal.code, message: refusal.message, request: nil)
                continue
            } catch {
                let halted = Self.outcome(of: error)
                for rest in position..<items.count { outcomes[rest] = halted }
                return planned(halted: halted)
            }
            let identity = write.identity
            func wait() {
                blocked.insert(identity)
                if let row = write.row { unsettled.insert(row) }
            }
            if cut || blocked.contains(identity) || write.references.contains(where: unsettled.contains) {
                wait()
                continue
            }
            let known: [DataverseReference: UUID]
            switch await ids(of: write.references, writtenEarlier: written) {
            case .writtenEarlier:
                if item.waiting { blocked.insert(identity) } else { cut = true }
                continue
            case .missing(let reference):
                outcomes[position] = .referenceMissing("\(reference) does not exist yet")
                wait()
                continue
            case .failed(let outcome):
                for rest in position..<items.count { outcomes[rest] = outcome }
                return planned(halted: outcome)
            case .known(let ids):
                known = ids
            }
            guard var message = write.message(root: root, ids: known) else { return planned() }
            contentID += 1
            message.headers.set("Content-ID", String(contentID))
            if item.waiting {
                alone.append(ChangeSet(document: number, items: [position], messages: [message], rows: [write.row]))
                wait()
                continue
            }
            segment.items.append(position)
            segment.messages.append(message)
            segment.rows.append(write.row)
            if let row = write.row { written.insert(row) }
        }
        return planned()
    }

    /// The ids of the rows a write refers to, in order: kept, or read by their alternate keys.
    enum References {
        case known([DataverseReference: UUID])
        /// One is written earlier in the same change set.
        case writtenEarlier
        case missing(DataverseReference)
        case failed(ApplyOutcome)
    }

    func ids(
        of references: [DataverseReference], writtenEarlier written: Set<DataverseReference>
    ) async -> References {
        var known: [DataverseReference: UUID] = [:]
        for reference in references {
            if written.contains(reference) { return .writtenEarlier }
            switch await resolve(reference) {
            case .found(let id): known[reference] = id
            case .missing: return .missing(reference)
            case .failed(let outcome): return .failed(outcome)
            }
        }
        return .known(known)
    }

    /// What the `$batch` answered for `set`: applied (the rows' ids kept for the lines that
    /// follow), or rolled back with the failing request's outcome.
    func settle(_ set: ChangeSet, answer: ODataBatch.Part, outcomes: inout [ApplyOutcome]) {
        switch answer {
        case .changeSet(let responses):
            for item in set.items { outcomes[item] = .applied }
            // A created or updated row's id, for the lines that follow it.
            for (message, row) in zip(responses, set.rows) {
                guard let row, let entity = message.headers["OData-EntityId"], let id = Self.entityID(in: entity)
                else { continue }
                remember(row, id)
            }
        case .single(let failure):
            // The change set was rolled back; the request that failed says which.
            let failed = failure.contentID.flatMap { id in set.messages.firstIndex { $0.contentID == id } } ?? 0
            let outcome = Self.outcome(status: failure.status, headers: failure.headers, body: failure.body)
            switch outcome {
            case .refused(let code, let message, _):
                for item in set.items { outcomes[item] = .notSent }
                let request = set.messages[failed]
                if request.method == "DELETE" && failure.status == 404 {
                    // Already gone: what a delete wants.
                    outcomes[set.items[failed]] = .applied
                } else {
                    outcomes[set.items[failed]] = .refused(
                        code: code, message: message, request: "\(request.method) \(request.url)")
                }
            case .referenceMissing:
                for item in set.items { outcomes[item] = .notSent }
                outcomes[set.items[failed]] = outcome
            default:
                for item in set.items { outcomes[item] = outcome }
            }
        }
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
