/// The pre-tokenizer of transformers' `CLIPTokenizer` (models/clip/tokenization_clip.py):
/// `Split(Regex(<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+),
/// behavior="removed", invert=True)` keeps the matches and drops what lies between (whitespace), then
/// `ByteLevel(add_prefix_space=False)` splits each piece again with the GPT-2 pattern
/// (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`) and maps it to UTF-8 bytes.
/// The regexes are matched by hand here, alternative by alternative in the order the regex tries them.
struct CLIPPreTokenizer: Sendable {
    let data = UnicodeData.shared

    private static let startOfText = Array("<|startoftext|>".unicodeScalars.map(\.value))
    private static let endOfText = Array("<|endoftext|>".unicodeScalars.map(\.value))
    private static let apostrophe: UInt32 = 0x27

    /// Calls `body` with the UTF-8 bytes of each word of a normalized text, in order.
    func forEachWord(in text: ArraySlice<UInt32>, _ body: (ArraySlice<UInt8>) -> Void) {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let end = clipMatchEnd(text, at: index)
            guard end > index else { index += 1; continue }  // whitespace: removed
            forEachByteLevelPiece(text[index..<end]) { piece in
                bytes.removeAll(keepingCapacity: true)
                for scalar in piece { appendUTF8(scalar, to: &bytes) }
                body(bytes[...])
            }
            index = end
        }
    }

    @inline(__always) private func isLetter(_ scalar: UInt32) -> Bool { data.flags(of: scalar) & UnicodeData.letter != 0 }
    @inline(__always) private func isNumber(_ scalar: UInt32) -> Bool { data.flags(of: scalar) & UnicodeData.number != 0 }
    @inline(__always) private func isOther(_ scalar: UInt32) -> Bool {
        data.flags(of: scalar) & (UnicodeData.letter | UnicodeData.number | UnicodeData.whitespace) == 0
    }

    private func hasPrefix(_ text: ArraySlice<UInt32>, at index: Int, _ literal: [UInt32]) -> Bool {
        guard text.endIndex - index >= literal.count else { return false }
        for (offset, scalar) in literal.enumerated() where text[index + offset] != scalar { return false }
        return true
    }

    /// End of `'s|'t|'re|'ve|'m|'ll|'d` at `index`, or nil.
    private func contractionEnd(_ text: ArraySlice<UInt32>, at index: Int) -> Int? {
        guard text[index] == Self.apostrophe, index + 1 < text.endIndex else { return nil }
        let next = text[index + 1]
        let following = index + 2 < text.endIndex ? text[index + 2] : 0
        switch next {
        case 0x73, 0x74, 0x6D, 0x64: return index + 2  // s t m d
        case 0x72, 0x76: return following == 0x65 ? index + 3 : nil  // re ve
        case 0x6C: return following == 0x6C ? index + 3 : nil  // ll
        default: return nil
        }
    }

    private func runEnd(_ text: ArraySlice<UInt32>, from index: Int, while predicate: (UInt32) -> Bool) -> Int {
        var end = index
        while end < text.endIndex && predicate(text[end]) { end += 1 }
        return end
    }

    /// End of the CLIP pattern's match starting at `index`; `index` itself when nothing matches there.
    private func clipMatchEnd(_ text: ArraySlice<UInt32>, at index: Int) -> Int {
        if hasPrefix(text, at: index, Self.startOfText) { return index + Self.startOfText.count }
        if hasPrefix(text, at: index, Self.endOfText) { return index + Self.endOfText.count }
        if let end = contractionEnd(text, at: index) { return end }
        let scalar = text[index]
        if isLetter(scalar) { return runEnd(text, from: index, while: isLetter) }
        if isNumber(scalar) { return index + 1 }
        if isOther(scalar) { return runEnd(text, from: index, while: isOther) }
        return index
    }

    /// The GPT-2 split of the ByteLevel pre-tokenizer, for a piece without whitespace.
    private func forEachByteLevelPiece(_ piece: ArraySlice<UInt32>, _ body: (ArraySlice<UInt32>) -> Void) {
        var index = piece.startIndex
        while index < piece.endIndex {
            let end: Int
            if let contraction = contractionEnd(piece, at: index) {
                end = contraction
            } else if isLetter(piece[index]) {
                end = runEnd(piece, from: index, while: isLetter)
            } else if isNumber(piece[index]) {
                end = runEnd(piece, from: index, while: isNumber)
            } else {
                end = runEnd(piece, from: index + 1, while: isOther)
            }
            body(piece[index..<end])
            index = end
        }
    }
}

@inline(__always) func appendUTF8(_ scalar: UInt32, to bytes: inout [UInt8]) {
    switch scalar {
    case 0..<0x80:
        bytes.append(UInt8(scalar))
    case 0x80..<0x800:
        bytes.append(UInt8(0xC0 | scalar >> 6))
        bytes.append(UInt8(0x80 | scalar & 0x3F))
    case 0x800..<0x10000:
        bytes.append(UInt8(0xE0 | scalar >> 12))
        bytes.append(UInt8(0x80 | scalar >> 6 & 0x3F))
        bytes.append(UInt8(0x80 | scalar & 0x3F))
    default:
        bytes.append(UInt8(0xF0 | scalar >> 18))
        bytes.append(UInt8(0x80 | scalar >> 12 & 0x3F))
        bytes.append(UInt8(0x80 | scalar >> 6 & 0x3F))
        bytes.append(UInt8(0x80 | scalar & 0x3F))
    }
}
