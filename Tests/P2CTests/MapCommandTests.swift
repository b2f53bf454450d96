import Foundation
import TestSupport
import Testing

@Suite("p2c map, as a user pipes events through it")
struct MapCommandTests {
    @Test(
        "Events in, mapped events out; a refusal writes its code and the run goes on; a filtered event writes nothing")
    func pipeline() throws {
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("p2c-map-\(UUID().uuidString).json")
        try #"{"mapping": {"companyDefaults": {"USMF": {"site": "1", "warehouse": "13"}}}}"#.write(
            to: config, atomically: true, encoding: .utf8)
        let input = [
            #"{"specversion":"1.0","id":"e1","source":"crm","type":"salesorderdetail.upserted","company":"USMF","data":{"salesorderid":{"msdyn_salesordernumber":"C000123"},"productid":{"msdyn_productnumber":"D0001"},"quantity":3,"manualdiscountamount":10.00}}"#,
            "not json",
            #"{"specversion":"1.0","id":"e3","source":"crm","type":"account.upserted","company":"USMF","data":{"accountnumber":"US-9","customertypecode":1}}"#,
            #"{"specversion":"1.0","id":"e4","source":"crm","type":"salesorder.upserted","company":"USMF","data":{"msdyn_salesordernumber":"C000123"}}"#,
        ].joined(separator: "\n")
        let result = try runWithInput(
            p2cBinary, ["map", "--flow", "crm-to-erp", "--config", config.path], input: input)
        #expect(result.status == 0)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        try #require(lines.count == 3)
        #expect(lines[0].contains(#""type":"SalesOrderLine.upserted""#))
        #expect(lines[0].contains(#""LINEDISCOUNTAMOUNT":3.33"#))
        #expect(lines[0].contains(#""FIXEDPRICECHARGES":-0.01"#))
        #expect(lines[0].contains(#""SHIPPINGWAREHOUSEID":"13""#))
        #expect(lines[0].contains(#""causationid":"e1""#))
        #expect(lines[1].hasPrefix(#"{"error":{"code":"malformed_json""#))
        #expect(lines[1].hasSuffix(#""id":null}"#))
        #expect(lines[2].contains(#""type":"SalesOrderHeader.upserted""#))
    }

    @Test(
        "A bad flow or configuration fails with one line and exit code 2",
        arguments: [
            (["map"], "option '--flow' is required"),
            (["map", "--flow", "sideways"], "expects one of crm-to-erp, erp-to-crm"),
            (["map", "--flow", "crm-to-erp", "--config", "/nonexistent.json"], "cannot read /nonexistent.json"),
        ] as [([String], String)])
    func badInvocation(arguments: [String], message: String) throws {
        let result = try runWithInput(p2cBinary, arguments, input: "")
        #expect(result.status == 2)
        #expect(result.stderr.contains(message))
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test(
        "A bad mapping setting is named with its key and exits 2, in p2c map and in a targeted replay alike",
        arguments: [
            (["map", "--flow", "crm-to-erp"], #"{"mapping": {"syncProspects": "yes"}}"#, "mapping.syncProspects"),
            (
                ["map", "--flow", "crm-to-erp"],
                #"{"mapping": {"numberSequences": {"crm": "C(\\d+", "erp": "^F\\d+$"}}}"#,
                #"mapping.numberSequences.crm: "C(\d+" is not a regular expression"#
            ),
            (
                [
                    "replay", "--flow", "crm-to-erp", "--key", "USMF/C1", "--bootstrap-servers", "127.0.0.1:9",
                    "--topics", topicsDirectory,
                ],
                #"{"mapping": {"numberSequences": {"crm": "C(\\d+", "erp": "^F\\d+$"}}}"#,
                #"mapping.numberSequences.crm: "C(\d+" is not a regular expression"#
            ),
        ])
    func badConfigurationValue(arguments: [String], text: String, message: String) throws {
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("p2c-bad-\(UUID().uuidString).json")
        try text.write(to: config, atomically: true, encoding: .utf8)
        let result = try runWithInput(
            p2cBinary, arguments + ["--config", config.path], input: "")
        #expect(result.status == 2)
        #expect(result.stderr.contains(message))
        #expect(result.stderr.split(separator: "\n").count == 1)
    }
}

/// Runs a command with `input` on its standard input.
func runWithInput(
    _ executable: String, _ arguments: [String], input: String
) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    stdin.fileHandleForWriting.write(Data(input.utf8))
    try stdin.fileHandleForWriting.close()
    let out = stdout.fileHandleForReading.readDataToEndOfFile()
    let err = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
}
