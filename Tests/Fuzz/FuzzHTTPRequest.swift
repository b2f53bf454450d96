// libFuzzer target for the HTTP/1.1 request parser the receivers and probes share: any bytes, as
// what a client sends on a connection, must give a request or a refusal (a status from 400 to
// 501), never a crash, and never a body over the limit. Built and run by .ci/fuzz.
import Runtime

struct EndOfInput: Error {}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let limit = 4_096
    // The input arrives in two reads: the head's and the rest, as a slow client would send it.
    let split = count / 2
    var input = InputBuffer(Array(UnsafeRawBufferPointer(start: start, count: split)))
    var rest: [UInt8]? = Array(UnsafeRawBufferPointer(start: start + split, count: count - split))
    func more(_ buffer: inout InputBuffer) throws {
        guard let bytes = rest else { throw EndOfInput() }
        rest = nil
        bytes.withUnsafeBytes { buffer.append($0) }
    }
    do {
        var length: Int?
        while true {
            length = try HTTPRequestParser.headLength(in: input.available, limit: 2_048)
            if length != nil || rest == nil { break }
            try more(&input)
        }
        guard let length else { return 0 }
        var request = try HTTPRequestParser.request(head: input.available.prefix(length))
        input.consume(length)
        let framing = try HTTPRequestParser.framing(of: request, limit: limit)
        request.body = try HTTPRequestParser.body(framing, from: &input, limit: limit, more: more)
        precondition(request.body.count <= limit, "a body over the limit")
        precondition(request.target.first == "/", "a target that is not a path")
    } catch let failure as HTTPRequestParser.Failure {
        precondition((400...501).contains(failure.status), "a refusal that is not a client error")
    } catch {
        preconditionFailure("an error that is not a refusal: \(error)")
    }
    return 0
}
