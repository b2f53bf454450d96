import ProspectToCash
import Topology

/// Realistic order documents in the CRM's shape: every column the order maps send to the ERP,
/// filled with plausible values, so the benchmark maps real field counts and sizes.
public enum SampleOrders {
    /// A header and `lines` lines for order `number`, as binary-mode Kafka records.
    public static func document(
        number: Int, lines: Int
    ) -> [(headers: [(name: String, value: [UInt8]?)], value: [UInt8])] {
        let orderNumber = "C\(String(number).leftPadded(to: 6))"
        var events = [
            event(
                kind("salesorder"), data: record(kind("salesorder"), orderNumber: orderNumber, line: 0), orderNumber,
                number, 0)
        ]
        for line in 1...lines {
            events.append(
                event(
                    kind("salesorderdetail"),
                    data: record(kind("salesorderdetail"), orderNumber: orderNumber, line: line), orderNumber, number,
                    line))
        }
        return events.map { event in
            (event.headers.map { ($0.name, Optional($0.value)) }, event.value)
        }
    }

    private static func kind(_ name: String) -> RecordKind { RecordKind.all.first { $0.crmName == name }! }

    private static func event(
        _ kind: RecordKind, data: JSONObject, _ orderNumber: String, _ number: Int, _ index: Int
    ) -> CloudEvent {
        CloudEvent(
            id: "bench-\(number)-\(index)", source: "crm", type: "\(kind.crmName).upserted",
            time: "2026-11-22T10:00:00.000Z",
            subject: "USMF/\(orderNumber)", company: "USMF",
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", data: data)
    }

    private static func record(_ kind: RecordKind, orderNumber: String, line: Int) -> JSONObject {
        var data = JSONObject()
        for row in TableMap.builtIn[kind.mapName]!.rows where row.type.flowsToERP && row.crmColumn != "none" {
            let path =
                row.crmColumn.contains(".Account(")
                ? ["customerid", "accountnumber"] : row.crmColumn.split(separator: ".").map(String.init)
            if data.value(at: path) != nil { continue }
            let value: JSONValue
            if let pair = row.valueMap.first {
                value =
                    Int(pair.crm) != nil
                    ? .number(pair.crm)
                    : (pair.crm == "True" || pair.crm == "False")
                        ? .bool(pair.crm == "True") : .string(pair.crm)
            } else if row.erpField.hasSuffix("DATE") {
                value = .string("2026-11-\(10 + line % 18)T00:00:00Z")
            } else if row.erpField.contains("PERCENTAGE") || row.erpField.contains("AMOUNT")
                || row.erpField.contains("QUANTITY")
                || row.erpField.contains("LATITUDE") || row.erpField.contains("LONGITUDE")
            {
                value = .number("\(line + 1)2.5")
            } else {
                value = .string("\(row.erpField.lowercased().prefix(12)) \(orderNumber)-\(line)")
            }
            if path.count == 1 {
                data[path[0]] = value
            } else {
                data.set(path: path, to: value)
            }
        }
        data.set(path: kind.crmKey, to: .string(orderNumber))
        if kind.role == .line {
            data["productid"] = .object(
                JSONObject(["msdyn_productnumber": .string("D\(String(line).leftPadded(to: 4))")]))
            data["quantity"] = .number("\(line * 3)")
            data["manualdiscountamount"] = .number("10.00")
            data["msdyn_processingstatus"] = nil
        } else {
            data["msdyn_processingstatus"] = .number("192350000")
        }
        return data
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
