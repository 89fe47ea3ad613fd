/// The normalizer of transformers' `CLIPTokenizer` (models/clip/tokenization_clip.py):
/// `Sequence([NFC(), Replace(Regex(r"\s+"), " "), Lowercase()])` from the tokenizers library.
/// Works on Unicode scalar values.
struct CLIPNormalizer: Sendable {
    let data = UnicodeData.shared

    func normalize(_ input: ArraySlice<UInt32>) -> [UInt32] {
        let composed = nfc(input)
        var output: [UInt32] = []
        output.reserveCapacity(composed.count)
        var inWhitespace = false
        for scalar in composed {
            let flags = data.flags(of: scalar)
            if flags & UnicodeData.whitespace != 0 {
                if !inWhitespace { output.append(0x20) }
                inWhitespace = true
                continue
            }
            inWhitespace = false
            if flags & UnicodeData.hasLowercase == 0 {
                output.append(scalar)
            } else if let lower = data.lowercase[scalar] {
                output.append(lower)
            } else if let expansion = data.lowercaseExpansions[scalar] {
                output.append(contentsOf: expansion)
            }
        }
        return output
    }

    /// Canonical composition (NFC) with the tokenizers library's character data (Unicode 9.0).
    func nfc(_ input: ArraySlice<UInt32>) -> ArraySlice<UInt32> {
        guard input.contains(where: { data.flags(of: $0) & UnicodeData.affectsNFC != 0 }) else { return input }
        return ArraySlice(compose(reorder(decompose(input))))
    }

    private func decompose(_ input: ArraySlice<UInt32>) -> [UInt32] {
        var output: [UInt32] = []
        output.reserveCapacity(input.count + 8)
        for scalar in input {
            if scalar >= Hangul.syllableBase && scalar < Hangul.syllableBase + Hangul.syllableCount {
                let index = scalar - Hangul.syllableBase
                let perLeading = Hangul.vowelCount * Hangul.trailingCount
                output.append(Hangul.leadingBase + index / perLeading)
                output.append(Hangul.vowelBase + (index % perLeading) / Hangul.trailingCount)
                if index % Hangul.trailingCount != 0 { output.append(Hangul.trailingBase + index % Hangul.trailingCount) }
            } else if let mapping = data.decomposition[scalar] {
                output.append(contentsOf: mapping)
            } else {
                output.append(scalar)
            }
        }
        return output
    }

    private func combiningClass(_ scalar: UInt32) -> UInt8 {
        data.flags(of: scalar) & UnicodeData.affectsNFC == 0 ? 0 : (data.combiningClass[scalar] ?? 0)
    }

    /// Canonical ordering: a stable sort by combining class within each run of non-starters.
    private func reorder(_ scalars: [UInt32]) -> [UInt32] {
        var scalars = scalars
        var start = 0
        while start < scalars.count {
            guard combiningClass(scalars[start]) != 0 else { start += 1; continue }
            var end = start
            while end < scalars.count && combiningClass(scalars[end]) != 0 { end += 1 }
            if end - start > 1 {
                // Insertion sort: stable, and runs are short.
                for i in (start + 1)..<end {
                    let scalar = scalars[i]
                    let key = combiningClass(scalar)
                    var j = i
                    while j > start && combiningClass(scalars[j - 1]) > key {
                        scalars[j] = scalars[j - 1]
                        j -= 1
                    }
                    scalars[j] = scalar
                }
            }
            start = end
        }
        return scalars
    }

    private func composePair(_ first: UInt32, _ second: UInt32) -> UInt32? {
        if first >= Hangul.leadingBase && first < Hangul.leadingBase + Hangul.leadingCount
            && second >= Hangul.vowelBase && second < Hangul.vowelBase + Hangul.vowelCount {
            return Hangul.syllableBase
                + ((first - Hangul.leadingBase) * Hangul.vowelCount + (second - Hangul.vowelBase)) * Hangul.trailingCount
        }
        if first >= Hangul.syllableBase && first < Hangul.syllableBase + Hangul.syllableCount
            && (first - Hangul.syllableBase) % Hangul.trailingCount == 0
            && second > Hangul.trailingBase && second < Hangul.trailingBase + Hangul.trailingCount {
            return first + (second - Hangul.trailingBase)
        }
        return data.composition[UInt64(first) << 32 | UInt64(second)]
    }

    /// Canonical composition: each character combines with the last starter unless blocked by a character
    /// of class 0 or of a class not lower than its own in between.
    private func compose(_ scalars: [UInt32]) -> [UInt32] {
        var output: [UInt32] = []
        output.reserveCapacity(scalars.count)
        var starter: Int? = nil
        var lastClass: UInt8? = nil  // class of the last character kept after the starter, nil if none
        for scalar in scalars {
            let currentClass = combiningClass(scalar)
            if let starterIndex = starter, lastClass.map({ $0 < currentClass }) ?? true,
               let composite = composePair(output[starterIndex], scalar) {
                output[starterIndex] = composite
                continue
            }
            if currentClass == 0 {
                starter = output.count
                lastClass = nil
            } else {
                lastClass = currentClass
            }
            output.append(scalar)
        }
        return output
    }
}
