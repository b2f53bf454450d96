import Connectors
import Dispatch
import Foundation
import ProspectToCash
import Runtime
import Synchronization
import Testing

@testable import Capture

/// A reader that takes its time and counts its calls: each record is its read's id.
private final class SlowReader: ContextReader {
    let calls = Mutex<[Int]>([])

    func kind(named name: String) async throws -> RecordKind? { nil }

    func record(of context: JSONObject, kind: RecordKind, deleted: Bool, id: String) async throws -> ContextChange? {
        try await records(of: [ContextRead(context: context, kind: kind, deleted: deleted, id: id)])[0]
    }

    func records(of reads: [ContextRead]) async throws -> [ContextChange?] {
        calls.withLock { $0.append(reads.count) }
        try await Task.sleep(for: .milliseconds(200))
        if reads.contains(where: { $0.id == "fail" }) { throw CancellationError() }
        return reads.map { ContextChange(record: ["id": .string($0.id)], company: nil, deleted: false) }
    }

    var requests: [(kind: String, value: Int)] { [] }
}

@Suite("The receiver's read-back: the posts taken at once are read together")
struct ReadBatcherTests {
    @Test("16 posts at once are read in a few calls, each post gets its own record, a failed read fails only its batch")
    func postsTakenTogether() async throws {
        // On a thread of its own: the batcher's reads run on the cooperative pool, which a test
        // body blocked in a wait there would hold back.
        try await AsyncBridge.onThread { try Self.postsTakenTogether() }
    }

    private static func postsTakenTogether() throws {
        let reader = SlowReader()
        let batcher = ReadBatcher(reader: reader)
        let kind = RecordKind.all[0]
        let answers = Mutex<[String: String]>([:])
        let group = DispatchGroup()
        for index in 0..<16 {
            group.enter()
            Thread {
                defer { group.leave() }
                let id = "post-\(index)"
                let change = try? batcher.change(of: ContextRead(context: [:], kind: kind, deleted: false, id: id))
                answers.withLock { $0[id] = change?.record["id"]?.stringValue }
            }.start()
        }
        group.wait()
        let calls = reader.calls.withLock { $0 }
        #expect(calls.reduce(0, +) == 16)
        #expect(calls.count <= 4, "read in \(calls)")
        #expect(
            answers.withLock { $0 } == Dictionary(uniqueKeysWithValues: (0..<16).map { ("post-\($0)", "post-\($0)") }))
        #expect(throws: CancellationError.self) {
            try batcher.change(of: ContextRead(context: [:], kind: kind, deleted: false, id: "fail"))
        }
        #expect(
            try batcher.change(of: ContextRead(context: [:], kind: kind, deleted: false, id: "after"))?.record["id"]
                == "after")
    }
}
