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

    /// The hash of a name's UTF-8 (names are short, and hashed per record): its length and its
    /// eight-byte words (the last one overlapping the one before), each multiplied on its own so
    /// that the steps do not wait on one another, as they do in a byte-serial hash. A collision
    /// costs a comparison of bytes, nothing else.
    @inline(__always)
    static func hash(_ key: String) -> UInt32 {
        var key = key
        return key.withUTF8 { hash($0) }
    }

    @inline(__always)
    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
        let count = bytes.count
        var hash = UInt64(truncatingIfNeeded: count) &* 0x9E37_79B9_7F4A_7C15
        guard let base = bytes.baseAddress, count > 0 else { return UInt32(truncatingIfNeeded: hash >> 32) }
        if count >= 8 {
            let first = UnsafeRawPointer(base).loadUnaligned(as: UInt64.self)
            let last = UnsafeRawPointer(base + count - 8).loadUnaligned(as: UInt64.self)
            hash ^= (first ^ 0xA076_1D64_78BD_642F) &* 0xE703_7ED1_A0B4_28DB
            hash ^= (last ^ 0x8EBC_6AF0_9C88_C6E3) &* 0x5899_65CC_7537_4CC3
            // The words between, each mixed with its position: no step waits on the one before.
            var offset = 8
            while offset < count - 8 {
                let word = UnsafeRawPointer(base + offset).loadUnaligned(as: UInt64.self)
                hash ^= (word ^ (UInt64(truncatingIfNeeded: offset) &* 0x1D8E_4E27_C47D_124F)) &* 0xC2B2_AE3D_27D4_EB4F
                offset += 8
            }
        } else {
            var tail: UInt64 = 0
            for index in 0..<count { tail |= UInt64(base[index]) << UInt64(8 * index) }
            hash ^= (tail ^ 0xA076_1D64_78BD_642F) &* 0xE703_7ED1_A0B4_28DB
        }
        hash ^= hash >> 29
        hash &*= 0x94D0_49BB_1331_11EB
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
