import Foundation

/// Names (UTF-8 byte strings) to small integers: open addressing over flat arrays, so a lookup
/// touches no reference count, hashed eight bytes a step, which beats `Dictionary`'s seeded
/// SipHash at the lengths of field names. Read-only once built. The operation table, the key
/// interner and the value maps of the mapping path are built on it.
struct NameTable: Sendable {
    /// Per slot: the name's hash, where its UTF-8 is in `text` (length -1: an empty slot), its value.
    private let hashes: [UInt32]
    private let starts: [Int32]
    private let lengths: [Int32]
    private let values: [Int32]
    private let text: [UInt8]
    private let mask: Int

    /// A table of `entries`; a name given twice keeps its first value.
    init(_ entries: [(name: [UInt8], value: Int32)]) {
        var capacity = 8
        while capacity < entries.count * 2 { capacity *= 2 }
        var hashes = [UInt32](repeating: 0, count: capacity)
        var starts = [Int32](repeating: 0, count: capacity)
        var lengths = [Int32](repeating: -1, count: capacity)
        var values = [Int32](repeating: 0, count: capacity)
        var text: [UInt8] = []
        for (name, value) in entries {
            let hash = name.withUnsafeBufferPointer { Self.hash($0) }
            var index = Int(hash) & (capacity - 1)
            var known = false
            while lengths[index] >= 0 {
                if hashes[index] == hash && Int(lengths[index]) == name.count
                    && text[Int(starts[index])..<Int(starts[index]) + name.count].elementsEqual(name)
                {
                    known = true
                    break
                }
                index = (index + 1) & (capacity - 1)
            }
            if known { continue }
            hashes[index] = hash
            starts[index] = Int32(text.count)
            lengths[index] = Int32(name.count)
            values[index] = value
            text.append(contentsOf: name)
        }
        self.hashes = hashes
        self.starts = starts
        self.lengths = lengths
        self.values = values
        self.text = text
        mask = capacity - 1
    }

    /// The value of the name whose UTF-8 is `key` and whose `hash(_:)` is `hash`.
    @inline(__always)
    func value(for key: UnsafeBufferPointer<UInt8>, hash: UInt32) -> Int32? {
        text.withUnsafeBufferPointer { text in
            var index = Int(hash) & mask
            while lengths[index] >= 0 {
                if hashes[index] == hash && Int(lengths[index]) == key.count
                    && (key.isEmpty || memcmp(text.baseAddress! + Int(starts[index]), key.baseAddress!, key.count) == 0)
                {
                    return values[index]
                }
                index = (index + 1) & mask
            }
            return nil
        }
    }

    /// The value of `key`.
    func value(for key: String) -> Int32? {
        var key = key
        return key.withUTF8 { value(for: $0, hash: Self.hash($0)) }
    }

    /// The hash of a name's UTF-8: eight bytes per step (names are short, and hashed per record).
    @inline(__always)
    static func hash(_ key: String) -> UInt32 {
        var key = key
        return key.withUTF8 { hash($0) }
    }

    @inline(__always)
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
        let prime: UInt64 = 0x0000_0100_0000_01B3
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(bytes.count)
        guard let base = bytes.baseAddress else { return UInt32(truncatingIfNeeded: hash) }
        var index = 0
        while index + 8 <= bytes.count {
            hash = (hash ^ UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self)) &* prime
            hash ^= hash >> 29
            index += 8
        }
        let rest = bytes.count - index
        if rest > 0 {
            // The last bytes, first byte lowest: one load overlapping the last full word when
            // there was one, else byte by byte.
            var tail: UInt64 = 0
            if bytes.count >= 8 {
                tail =
                    UnsafeRawPointer(base + bytes.count - 8).loadUnaligned(as: UInt64.self) >> UInt64(8 * (8 - rest))
            } else {
                for shift in 0..<rest { tail |= UInt64(bytes[index + shift]) << UInt64(8 * shift) }
            }
            hash = (hash ^ tail) &* prime
            hash ^= hash >> 29
        }
        return UInt32(truncatingIfNeeded: hash ^ (hash >> 32))
    }
}

extension String {
    /// `first`, the ASCII `separator` and `second`, written into one new string: cheaper than
    /// interpolation, which formats and grows piece by piece (built per record for ids and keys).
    public init(_ first: String, _ separator: Unicode.Scalar, _ second: String) {
        var first = first
        var second = second
        self = first.withUTF8 { head in
            second.withUTF8 { tail in
                String(unsafeUninitializedCapacity: head.count + 1 + tail.count) { buffer in
                    var index = buffer.initialize(fromContentsOf: head)
                    buffer[index] = UInt8(ascii: separator)
                    index += 1
                    index = buffer[index...].initialize(fromContentsOf: tail)
                    return index
                }
            }
        }
    }
}
