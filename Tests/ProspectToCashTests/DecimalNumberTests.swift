import ProspectToCash
import Testing

@Suite("Exact decimals")
struct DecimalNumberTests {
    @Test(
        "Literals parse and print with their exact digits",
        arguments: [
            ("3.33", "3.33"), ("-0.01", "-0.01"), ("10.00", "10.00"), ("0", "0"), ("1e2", "100"), ("1.5E-3", "0.0015"),
            ("-7", "-7"), ("0.10", "0.10"), ("12345678901234567890.123456789", "12345678901234567890.123456789"),
        ])
    func roundTrip(text: String, printed: String) throws {
        #expect(try #require(DecimalNumber(text)).description == printed)
    }

    @Test(
        "Non-numbers and out-of-range numbers are nil, never a crash",
        arguments: [
            "", "-", ".5", "5.", "1e", "1e+", "abc", "1.2.3", "--1", "1e1001", "1e-1000",
            String(repeating: "9", count: 60),
        ])
    func invalid(text: String) {
        #expect(DecimalNumber(text) == nil)
    }

    @Test("Arithmetic is exact and division rounds half away from zero")
    func arithmetic() throws {
        let a = try #require(DecimalNumber("0.1")), b = try #require(DecimalNumber("0.2"))
        #expect(a.adding(b)?.description == "0.3")
        #expect(DecimalNumber("10.00")!.divided(by: DecimalNumber(3), roundingTo: 2)?.description == "3.33")
        #expect(DecimalNumber("0.05")!.divided(by: DecimalNumber(2), roundingTo: 2)?.description == "0.03")
        #expect(DecimalNumber("-0.05")!.divided(by: DecimalNumber(2), roundingTo: 2)?.description == "-0.03")
        #expect(DecimalNumber("1")!.divided(by: DecimalNumber(0), roundingTo: 2) == nil)
        #expect(DecimalNumber("3.30")!.isEqual(to: DecimalNumber("3.3")!))
        #expect(DecimalNumber("-1")! < DecimalNumber("0.5")!)
        let huge = DecimalNumber(String(repeating: "9", count: 37))!
        #expect(huge.multiplied(by: huge) == nil)
    }
}
