// libFuzzer target for the event decoder and the maps: any bytes, as a structured event or as a
// binary-mode value, must give an event, a refusal or a filter, never a crash; a decoded event
// must survive its own round trip. Built and run by .ci/fuzz.
import ProspectToCash
import Topology

let mapper: Mapper = {
    var configuration = MappingConfiguration()
    configuration.companyDefaults["USMF"] = .init(site: "1", warehouse: "13", writeInCategory: "Write-in")
    configuration.numberSequences = .init(crm: #"C\d+"#, erp: #"F\d+"#)
    do {
        return try Mapper(configuration: configuration)
    } catch {
        fatalError("\(error)")
    }
}()

/// Builds the mapper before fuzzing starts, so its one-time allocations (Swift's regex parser keeps
/// a few hundred bytes for good) are not blamed on an input.
@_cdecl("LLVMFuzzerInitialize")
public func initialize(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    _ = mapper
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    if let event = try? CloudEvent(structured: bytes) {
        let again = try? CloudEvent(structured: Array(event.structured.jsonText.utf8))
        precondition(again == event, "structured round trip changed the event")
        for flow in Flow.allCases { _ = mapper.map(event, flow: flow) }
    }
    let headers: [(name: String, value: [UInt8]?)] = [
        ("ce_specversion", Array("1.0".utf8)), ("ce_id", Array("f".utf8)), ("ce_source", Array("crm".utf8)),
        ("ce_type", Array("salesorderdetail.upserted".utf8)), ("ce_company", Array("USMF".utf8)),
    ]
    if let event = try? CloudEvent(headers: headers, value: bytes) {
        _ = mapper.map(event, flow: .crmToERP)
        let reparsed = try? JSONParser.parse(event.value)
        precondition(reparsed == .object(event.data), "binary value round trip changed the record")
    }
    return 0
}
