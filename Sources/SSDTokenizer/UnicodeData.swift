/// Lookups over `UnicodeTables` (the character data of the Hugging Face tokenizers library, see that file):
/// the character classes of the CLIP split regex, lower-casing, and what NFC needs.
final class UnicodeData: Sendable {
    /// Bits of `flags`.
    static let letter: UInt8 = 1, number: UInt8 = 2, whitespace: UInt8 = 4
    static let hasLowercase: UInt8 = 8
    /// Set on scalars that NFC may change or combine with what precedes them (decomposable, non-zero
    /// combining class, second of a composition pair, Hangul syllable or vowel/trailing jamo).
    static let affectsNFC: UInt8 = 16

    static let shared = UnicodeData()

    /// One byte of flags per scalar value (0...0x10FFFF).
    let flags: [UInt8]
    let lowercase: [UInt32: UInt32]
    let lowercaseExpansions: [UInt32: [UInt32]]
    let combiningClass: [UInt32: UInt8]
    let decomposition: [UInt32: [UInt32]]
    let composition: [UInt64: UInt32]

    private init() {
        var flags = [UInt8](repeating: 0, count: 0x110000)
        for entry in Self.entries(UnicodeTables.characterClassRanges) {
            let (range, value) = Self.rangeAndValue(entry)
            for scalar in range { flags[Int(scalar)] |= UInt8(value) }
        }
        var lowercase: [UInt32: UInt32] = [:]
        var expansions: [UInt32: [UInt32]] = [:]
        for entry in Self.entries(UnicodeTables.lowercaseMappings) {
            let (key, sequence) = Self.keyAndSequence(entry)
            if sequence.count == 1 { lowercase[key] = sequence[0] } else { expansions[key] = sequence }
            flags[Int(key)] |= Self.hasLowercase
        }
        var combiningClass: [UInt32: UInt8] = [:]
        for entry in Self.entries(UnicodeTables.combiningClassRanges) {
            let (range, value) = Self.rangeAndValue(entry)
            for scalar in range {
                combiningClass[scalar] = UInt8(value)
                flags[Int(scalar)] |= Self.affectsNFC
            }
        }
        var decomposition: [UInt32: [UInt32]] = [:]
        for entry in Self.entries(UnicodeTables.canonicalDecompositions) {
            let (key, sequence) = Self.keyAndSequence(entry)
            decomposition[key] = sequence
            flags[Int(key)] |= Self.affectsNFC
        }
        var composition: [UInt64: UInt32] = [:]
        for entry in Self.entries(UnicodeTables.canonicalCompositions) {
            let (pair, composite) = Self.keyAndSequence(entry, keyIsPair: true)
            composition[UInt64(pair) << 32 | UInt64(composite[1])] = composite[0]
            flags[Int(composite[1])] |= Self.affectsNFC
        }
        for scalar in Hangul.syllableBase..<(Hangul.syllableBase + Hangul.syllableCount) { flags[Int(scalar)] |= Self.affectsNFC }
        for scalar in Hangul.vowelBase..<(Hangul.vowelBase + Hangul.vowelCount) { flags[Int(scalar)] |= Self.affectsNFC }
        for scalar in (Hangul.trailingBase + 1)..<(Hangul.trailingBase + Hangul.trailingCount) { flags[Int(scalar)] |= Self.affectsNFC }
        self.flags = flags
        self.lowercase = lowercase
        self.lowercaseExpansions = expansions
        self.combiningClass = combiningClass
        self.decomposition = decomposition
        self.composition = composition
    }

    @inline(__always) func flags(of scalar: UInt32) -> UInt8 { flags[Int(scalar)] }

    // MARK: Table parsing (the format is fixed by the generator; the tables are part of the source)

    private static func entries(_ table: String) -> [Substring.UTF8View] {
        table.utf8.split(whereSeparator: { $0 == 0x20 || $0 == 0x0A })
    }

    private static func hex<S: Sequence<UInt8>>(_ digits: S) -> UInt32 {
        var value: UInt32 = 0
        for digit in digits {
            let nibble: UInt8 = digit <= 0x39 ? digit &- 0x30 : (digit | 0x20) &- 0x57
            value = value << 4 | UInt32(nibble)
        }
        return value
    }

    /// `a-b:v` or `a:v`.
    private static func rangeAndValue(_ entry: Substring.UTF8View) -> (ClosedRange<UInt32>, UInt32) {
        let colon = entry.firstIndex(of: 0x3A)!
        let span = entry[..<colon]
        let value = hex(entry[entry.index(after: colon)...])
        if let dash = span.firstIndex(of: 0x2D) {
            return (hex(span[..<dash])...hex(span[span.index(after: dash)...]), value)
        }
        let scalar = hex(span)
        return (scalar...scalar, value)
    }

    /// `k:a.b.c` → (k, [a, b, c]); with `keyIsPair`, `a.b:c` → (a, [c, b]).
    private static func keyAndSequence(_ entry: Substring.UTF8View, keyIsPair: Bool = false) -> (UInt32, [UInt32]) {
        let colon = entry.firstIndex(of: 0x3A)!
        let left = entry[..<colon].split(separator: 0x2E).map { hex($0) }
        let right = entry[entry.index(after: colon)...].split(separator: 0x2E).map { hex($0) }
        return keyIsPair ? (left[0], [right[0], left[1]]) : (left[0], right)
    }
}

/// Hangul syllable arithmetic (Unicode §3.12), used by NFC.
enum Hangul {
    static let leadingBase: UInt32 = 0x1100, vowelBase: UInt32 = 0x1161, trailingBase: UInt32 = 0x11A7
    static let syllableBase: UInt32 = 0xAC00
    static let leadingCount: UInt32 = 19, vowelCount: UInt32 = 21, trailingCount: UInt32 = 28
    static let syllableCount: UInt32 = 11172
}
