import Foundation
import ProspectToCash
import Runtime
import Topology

/// `p2c map`: CloudEvents in structured mode, one JSON per line, through the maps; no Kafka.
enum MapCommand {
    static let spec = CommandSpec(
        name: "map",
        summary: "Map CloudEvents (JSON lines on stdin) to the other system's records (JSON lines on stdout).",
        options: [
            OptionSpec("flow", value: "flow", help: "crm-to-erp or erp-to-crm."),
            OptionSpec("config", value: "file", help: "JSON configuration file (its \"mapping\" object)."),
        ],
        discussion: """
            Each input line is one event in structured mode (specversion, id, source, type, time, subject,
            company, ..., data). Each output event is written as one line in the same mode; a refused input
            writes {"error": {"code": "...", "message": "..."}, "id": "<input id>"} and the run goes on;
            a filtered input (an echo, a prospect, a free-text invoice) writes nothing.
            """
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        guard let flow = try arguments.choice("flow", as: Flow.self) else {
            throw UsageError("option '--flow' is required (crm-to-erp or erp-to-crm)", command: spec.name)
        }
        let configuration = try ConfigurationFile.load(arguments.string("config"), command: spec.name).mapping
        let mapper: Mapper
        do {
            mapper = try Mapper(configuration: configuration)
        } catch {
            throw UsageError("mapping.\(error)", command: spec.name)
        }
        var output = OutputBuffer()
        var lines = LineReader(fileDescriptor: 0)
        while let line = lines.next() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let event: CloudEvent
            do {
                event = try CloudEvent(structured: line)
            } catch {
                output.append(refusal(error, id: inputID(line)))
                continue
            }
            switch mapper.map(event, flow: flow) {
            case .mapped(let events):
                for mapped in events { output.append(mapped.event.structured.jsonText) }
            case .filtered:
                break
            case .refused(let error):
                output.append(refusal(error, id: .string(event.id)))
            }
        }
        output.flush()
        return 0
    }

    private static func refusal(_ error: MappingError, id: JSONValue) -> String {
        JSONObject([
            .init(
                "error",
                .object(
                    JSONObject([.init("code", .string(error.code.rawValue)), .init("message", .string(error.message))]))
            ),
            .init("id", id),
        ]).jsonText
    }

    /// The `id` of a line that is JSON but not a valid event, or null.
    private static func inputID(_ line: [UInt8]) -> JSONValue {
        guard case .object(let object)? = try? JSONParser.parse(line), case .string(let id)? = object["id"] else {
            return .null
        }
        return .string(id)
    }
}

/// Reads lines of bytes from a file descriptor, in large chunks.
struct LineReader {
    let fileDescriptor: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    private var finished = false

    init(fileDescriptor: Int32) { self.fileDescriptor = fileDescriptor }

    mutating func next() -> [UInt8]? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                return line
            }
            if finished {
                guard start < buffer.count else { return nil }
                let line = Array(buffer[start...])
                start = buffer.count
                return line
            }
            buffer.removeSubrange(0..<start)
            start = 0
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let count = chunk.withUnsafeMutableBytes { read(fileDescriptor, $0.baseAddress, $0.count) }
            if count <= 0 {
                finished = true
            } else {
                buffer.append(contentsOf: chunk[0..<count])
            }
        }
    }
}

/// Collects output lines and writes them to standard output in large blocks.
struct OutputBuffer {
    private var pending = Data()

    mutating func append(_ line: String) {
        pending.append(contentsOf: line.utf8)
        pending.append(0x0A)
        if pending.count >= 65_536 { flush() }
    }

    mutating func flush() {
        guard !pending.isEmpty else { return }
        FileHandle.standardOutput.write(pending)
        pending.removeAll(keepingCapacity: true)
    }
}
