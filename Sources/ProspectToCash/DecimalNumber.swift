/// An exact decimal number: `mantissa / 10^scale`. Money, quantities and percentages are
/// computed with it, never with binary floating point, and print with their exact digits.
/// Every operation reports overflow as nil instead of trapping, so hostile input cannot crash.
public struct DecimalNumber: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let mantissa: Int128
    /// Digits after the decimal point, 0...38.
    public let scale: Int

    public static let maximumScale = 38

    public init(mantissa: Int128, scale: Int) {
        precondition((0...Self.maximumScale).contains(scale), "scale out of range")
        self.mantissa = mantissa
        self.scale = scale
    }

    public init(_ integer: Int) { self.init(mantissa: Int128(integer), scale: 0) }

    /// Parses a JSON number literal or a plain decimal string (`-12.50`, `3`, `1e-2`).
    public init?(_ text: String) {
        var text = text
        guard let parsed = text.withUTF8({ Self.parse($0) }) else { return nil }
        self = parsed
    }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> DecimalNumber? {
        var index = 0
        var negative = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        var mantissa: Int128 = 0
        var scale = 0
        var digits = 0
        var fraction = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                let (times, overflow1) = mantissa.multipliedReportingOverflow(by: 10)
                let (plus, overflow2) = times.addingReportingOverflow(Int128(byte - UInt8(ascii: "0")))
                guard !overflow1, !overflow2 else { return nil }
                mantissa = plus
                digits += 1
                if fraction { scale += 1 }
            } else if byte == UInt8(ascii: "."), !fraction, digits > 0 {
                fraction = true
            } else {
                break
            }
            index += 1
        }
        guard digits > 0, !(fraction && bytes[index - 1] == UInt8(ascii: ".")) else { return nil }
        var exponent = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            var exponentNegative = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                exponentNegative = bytes[index] == UInt8(ascii: "-")
                index += 1
            }
            var exponentDigits = 0
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                exponent = exponent * 10 + Int(bytes[index] - UInt8(ascii: "0"))
                exponentDigits += 1
                guard exponent <= 1000 else { return nil }
                index += 1
            }
            guard exponentDigits > 0 else { return nil }
            if exponentNegative { exponent = -exponent }
        }
        guard index == bytes.count else { return nil }
        scale -= exponent
        while scale < 0 {
            let (times, overflow) = mantissa.multipliedReportingOverflow(by: 10)
            guard !overflow else { return nil }
            mantissa = times
            scale += 1
        }
        guard scale <= maximumScale else { return nil }
        return DecimalNumber(mantissa: negative ? -mantissa : mantissa, scale: scale)
    }

    public var description: String {
        // Digits from the right into a small buffer: no intermediate strings.
        var magnitude = mantissa < 0 ? Int128(0) - mantissa : mantissa
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 48 + scale) { buffer in
            var index = buffer.count
            var written = 0
            repeat {
                if written == scale && scale > 0 {
                    index -= 1
                    buffer[index] = UInt8(ascii: ".")
                }
                let (quotient, digit) = magnitude.quotientAndRemainder(dividingBy: 10)
                index -= 1
                buffer[index] = UInt8(ascii: "0") + UInt8(digit)
                magnitude = quotient
                written += 1
            } while magnitude != 0 || written <= scale
            if mantissa < 0 {
                index -= 1
                buffer[index] = UInt8(ascii: "-")
            }
            return String(decoding: UnsafeBufferPointer(rebasing: buffer[index...]), as: UTF8.self)
        }
    }

    public var isZero: Bool { mantissa == 0 }

    public var magnitude: DecimalNumber { DecimalNumber(mantissa: mantissa < 0 ? -mantissa : mantissa, scale: scale) }

    /// The same value with `scale` digits (more digits only; nil on overflow).
    func rescaled(to target: Int) -> DecimalNumber? {
        guard target >= scale, target <= Self.maximumScale else { return nil }
        var value = mantissa
        for _ in scale..<target {
            let (times, overflow) = value.multipliedReportingOverflow(by: 10)
            guard !overflow else { return nil }
            value = times
        }
        return DecimalNumber(mantissa: value, scale: target)
    }

    public func adding(_ other: DecimalNumber) -> DecimalNumber? {
        let scale = max(self.scale, other.scale)
        guard let left = rescaled(to: scale), let right = other.rescaled(to: scale) else { return nil }
        let (sum, overflow) = left.mantissa.addingReportingOverflow(right.mantissa)
        return overflow ? nil : DecimalNumber(mantissa: sum, scale: scale)
    }

    public func subtracting(_ other: DecimalNumber) -> DecimalNumber? {
        adding(DecimalNumber(mantissa: -other.mantissa, scale: other.scale))
    }

    public func multiplied(by other: DecimalNumber) -> DecimalNumber? {
        let (product, overflow) = mantissa.multipliedReportingOverflow(by: other.mantissa)
        let scale = self.scale + other.scale
        guard !overflow, scale <= Self.maximumScale else { return nil }
        return DecimalNumber(mantissa: product, scale: scale)
    }

    /// `self / divisor`, rounded half away from zero to `scale` digits; nil for zero or overflow.
    public func divided(by divisor: DecimalNumber, roundingTo scale: Int) -> DecimalNumber? {
        guard !divisor.isZero else { return nil }
        // self / divisor × 10^scale = (m1 × 10^(s2 + scale)) / (m2 × 10^s1)
        guard let numerator = DecimalNumber(mantissa: mantissa, scale: 0).rescaled(to: divisor.scale + scale),
            let denominator = DecimalNumber(mantissa: divisor.mantissa, scale: 0).rescaled(to: self.scale)
        else { return nil }
        let (quotient, remainder) = numerator.mantissa.quotientAndRemainder(dividingBy: denominator.mantissa)
        var result = quotient
        // Half away from zero: compare twice the remainder with the divisor.
        let twice = remainder.magnitude.multipliedReportingOverflow(by: 2)
        if !twice.overflow && twice.partialValue >= denominator.mantissa.magnitude || twice.overflow {
            result += (numerator.mantissa < 0) != (denominator.mantissa < 0) ? -1 : 1
        }
        return DecimalNumber(mantissa: result, scale: scale)
    }

    public static func < (lhs: DecimalNumber, rhs: DecimalNumber) -> Bool {
        guard let difference = lhs.subtracting(rhs) else {
            return lhs.mantissa < 0 && rhs.mantissa >= 0
        }
        return difference.mantissa < 0
    }

    /// Numeric equality (3.30 equals 3.3), unlike `==`, which compares digits and scale.
    public func isEqual(to other: DecimalNumber) -> Bool {
        subtracting(other)?.isZero ?? false
    }
}
