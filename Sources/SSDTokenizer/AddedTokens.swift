/// An added token as the tokenizers library stores it (`AddedToken`): matched in the text before the
/// BPE model runs, on the raw text (`normalized == false`) or on the normalized text.
struct AddedTokenSpec: Equatable, Sendable {
    var content: String
    var singleWord = false
    var leftStrip = false
    var rightStrip = false
    var normalized: Bool
    var special: Bool

    /// Reads `{"content": ..., "lstrip": ..., ...}`; `special` and `normalized` default as in transformers'
    /// `AddedToken` (`normalized` defaults to `not special`).
    init?(_ object: [String: JSONValue], special defaultSpecial: Bool) {
        guard let content = object["content"]?.stringValue else { return nil }
        func flag(_ key: String) -> Bool? { if case .bool(let value) = object[key] { return value } else { return nil } }
        self.content = content
        special = flag("special") ?? defaultSpecial
        normalized = flag("normalized") ?? !special
        singleWord = flag("single_word") ?? false
        leftStrip = flag("lstrip") ?? false
        rightStrip = flag("rstrip") ?? false
    }

    /// A token with these flags (no stripping, not single-word).
    init(content: String, normalized: Bool, special: Bool) {
        self.content = content
        self.normalized = normalized
        self.special = special
    }

    /// A special token given as a plain string: transformers 5 adds it with `normalized=False`.
    init(specialString content: String) {
        self.content = content
        normalized = false
        special = true
    }
}

/// Finds added tokens in a text the way tokenizers' `AddedVocabulary::find_matches` does: leftmost-longest
/// matches (Aho-Corasick `LeftmostLongest`), then `lstrip`/`rstrip` widen a match over adjacent whitespace.
struct AddedTokenMatcher: Sendable {
    enum Segment: Equatable { case text(Range<Int>), token(Int32) }

    private struct Pattern: Sendable {
        let scalars: [UInt32]
        let id: Int32
        let leftStrip: Bool
        let rightStrip: Bool
    }

    private let patterns: [Pattern]
    /// Whether some pattern starts with the scalar: a bit per ASCII scalar, a set for the rest.
    private let firstASCII: (UInt64, UInt64)
    private let firstOther: Set<UInt32>
    private let data = UnicodeData.shared

    init(_ tokens: [(scalars: [UInt32], id: Int32, spec: AddedTokenSpec)]) {
        patterns = tokens.filter { !$0.scalars.isEmpty }
            .map { Pattern(scalars: $0.scalars, id: $0.id, leftStrip: $0.spec.leftStrip, rightStrip: $0.spec.rightStrip) }
        var ascii: (UInt64, UInt64) = (0, 0)
        var other: Set<UInt32> = []
        for first in patterns.map({ $0.scalars[0] }) {
            switch first {
            case 0..<64: ascii.0 |= 1 << UInt64(first)
            case 64..<128: ascii.1 |= 1 << UInt64(first - 64)
            default: other.insert(first)
            }
        }
        firstASCII = ascii
        firstOther = other
    }

    @inline(__always) private func mayStartMatch(_ scalar: UInt32) -> Bool {
        switch scalar {
        case 0..<64: return firstASCII.0 & (1 << UInt64(scalar)) != 0
        case 64..<128: return firstASCII.1 & (1 << UInt64(scalar - 64)) != 0
        default: return !firstOther.isEmpty && firstOther.contains(scalar)
        }
    }

    var isEmpty: Bool { patterns.isEmpty }

    private func longestMatch(in text: ArraySlice<UInt32>, at index: Int) -> Pattern? {
        var best: Pattern? = nil
        for pattern in patterns where pattern.scalars.count <= text.endIndex - index {
            if let current = best, current.scalars.count >= pattern.scalars.count { continue }
            if text[index..<(index + pattern.scalars.count)].elementsEqual(pattern.scalars) { best = pattern }
        }
        return best
    }

    private func isWhitespace(_ scalar: UInt32) -> Bool { data.flags(of: scalar) & UnicodeData.whitespace != 0 }

    /// Splits `text` into runs of text and added tokens. Ranges are indices of `text`.
    func split(_ text: ArraySlice<UInt32>) -> [Segment] {
        guard !patterns.isEmpty, !text.isEmpty else { return text.isEmpty ? [] : [.text(text.indices)] }
        var segments: [Segment] = []
        var unmatchedStart = text.startIndex
        var index = text.startIndex
        while index < text.endIndex {
            guard mayStartMatch(text[index]), let pattern = longestMatch(in: text, at: index) else {
                index += 1
                continue
            }
            var start = index
            var stop = index + pattern.scalars.count
            index = stop
            if pattern.leftStrip {
                while start > text.startIndex && isWhitespace(text[start - 1]) { start -= 1 }
                start = max(start, unmatchedStart)
            }
            if pattern.rightStrip {
                while stop < text.endIndex && isWhitespace(text[stop]) { stop += 1 }
            }
            if unmatchedStart < start { segments.append(.text(unmatchedStart..<start)) }
            segments.append(.token(pattern.id))
            unmatchedStart = stop
        }
        if unmatchedStart < text.endIndex { segments.append(.text(unmatchedStart..<text.endIndex)) }
        return segments
    }
}
