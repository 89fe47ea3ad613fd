import Testing
@testable import SSDTokenizer

/// Pieces of the pipeline, checked on small inputs whose answers are known.
@Suite struct TokenizerUnitTests {
    /// Scalar values, compared exactly (String's == would treat canonically equivalent strings as equal).
    func scalars(_ text: String) -> [UInt32] { text.unicodeScalars.map(\.value) }

    func normalize(_ text: String) -> [UInt32] { CLIPNormalizer().normalize(scalars(text)[...]) }

    @Test func normalization() {
        #expect(normalize("Cafe\u{301}") == scalars("caf\u{E9}"))
        #expect(normalize("A\u{30A}ngstro\u{308}m") == scalars("\u{E5}ngstr\u{F6}m"))
        #expect(normalize("a\u{307}\u{323}") == scalars("\u{1EA1}\u{307}"))  // reordered, then composed
        #expect(normalize("\u{1100}\u{1161}\u{11A8}") == scalars("\u{AC01}"))  // Hangul jamo compose
        #expect(normalize("\u{2126}") == scalars("\u{3C9}"))  // Ohm → Omega (singleton), lower-cased
        #expect(normalize("  a\t\n b\u{3000}") == scalars(" a b "))  // whitespace runs become one space
        #expect(normalize("\u{130}") == scalars("i\u{307}"))  // İ lower-cases to two scalars
        #expect(normalize("\u{3A3}\u{39F}\u{3A3}") == scalars("\u{3C3}\u{3BF}\u{3C3}"))  // per-scalar: no final sigma
        // Unicode 9.0 data: U+11938 (Unicode 13) neither composes nor decomposes in tokenizers.
        #expect(normalize("\u{11935}\u{11930}") == scalars("\u{11935}\u{11930}"))
    }

    /// 2000 random strings of characters that NFC, whitespace folding or lower-casing change, normalized by
    /// the tokenizers library (fixture normalization.json).
    @Test func normalizationMatchesTokenizersLibrary() throws {
        let cases = try Fixtures.decode([[String]].self, "normalization.json")
        #expect(cases.count >= 1000)
        let mismatches = cases.filter { normalize($0[0]) != scalars($0[1]) }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(5).map { $0.map { scalars($0).map { String($0, radix: 16) } } })")
    }

    func words(_ text: String) -> [String] {
        var result: [String] = []
        CLIPPreTokenizer().forEachWord(in: text.unicodeScalars.map(\.value)[...]) { bytes in
            result.append(String(decoding: Array(bytes), as: UTF8.self))
        }
        return result
    }

    @Test func preTokenization() {
        #expect(words("don't stop") == ["don", "'t", "stop"])
        #expect(words("a1b22 x") == ["a", "1", "b", "2", "2", "x"])
        #expect(words("!!!hello?!") == ["!!!", "hello", "?!"])
        #expect(words("''s 'sam") == ["''", "s", "'s", "am"])
        #expect(words("<|endoftext|>x") == ["<|", "endoftext", "|>", "x"])  // the byte-level split
        #expect(words("<<|endoftext|>") == ["<<|", "endoftext", "|>"])
        #expect(words("東京 ÷3") == ["東京", "÷", "3"])
    }

    @Test func byteCharactersAreGPT2Table() {
        let table = BytePairEncoder.byteCharacters
        #expect(table[0x21] == "!" && table[0x7E] == "~" && table[0xA1] == "\u{A1}")
        #expect(table[0x00] == "\u{100}" && table[0x20] == "\u{120}" && table[0xAD] == "\u{143}")
        #expect(Set(table).count == 256)
    }

    @Test func sdxlPadding() throws {
        let pipeline = try Fixtures.pipeline.get()
        let (first, second) = pipeline.encode("! !! !!!")
        #expect(Array(first.inputIDs.prefix(6)) == [49406, 256, 748, 995, 49407, 49407])
        #expect(Array(second.inputIDs.prefix(9)) == [49406, 0, 0, 0, 0, 0, 0, 49407, 0])
        #expect(second.attentionMask.prefix(9) == [1, 1, 1, 1, 1, 1, 1, 1, 0])
        #expect(pipeline.tokenizer.padToken == "<|endoftext|>" && pipeline.tokenizer2.padToken == "!")
        #expect(pipeline.tokenizer.vocabularySize == 49408 && pipeline.tokenizer.maxLength == 77)
        let empty = pipeline.tokenizer.encode("")
        #expect(Array(empty.inputIDs.prefix(3)) == [49406, 49407, 49407] && empty.inputIDs.count == 77)
        #expect(pipeline.tokenizer.encodeUntruncated("a " + String(repeating: "cat ", count: 100)).count == 103)
    }

    @Test func mixedLayoutsAndStringMerges() throws {
        // tokenizer.json with merges written as "a b" strings (older tokenizers) and no added tokens.
        let folder = try ScratchFolder("string-merges")
        defer { folder.remove() }
        var vocabulary = BytePairEncoder.byteCharacters.enumerated().map { "\"\(escape($0.element))\": \($0.offset)" }
        vocabulary += BytePairEncoder.byteCharacters.enumerated().map { "\"\(escape($0.element))</w>\": \($0.offset + 256)" }
        vocabulary += ["\"ab</w>\": 512", "\"<|startoftext|>\": 513", "\"<|endoftext|>\": 514"]
        try folder.write("tokenizer.json", #"{"model": {"type": "BPE", "vocab": {\#(vocabulary.joined(separator: ","))}, "merges": ["a b</w>"]}}"#)
        try folder.write("tokenizer_config.json", #"{"model_max_length": 8}"#)
        let tokenizer = try CLIPTokenizer(directory: folder.path)
        #expect(tokenizer.maxLength == 8 && tokenizer.padTokenID == 514 && tokenizer.bosTokenID == 513)
        // ids here are byte values (+256 with </w>): "b" 98, "a</w>" 353, "!</w>" 289.
        #expect(tokenizer.encode("AB ba!").inputIDs == [513, 512, 98, 353, 289, 514, 514, 514])
        #expect(tokenizer.encode("ab ab ab ab ab ab ab").inputIDs == [513, 512, 512, 512, 512, 512, 512, 514])
    }

    private func escape(_ character: Character) -> String {
        character == "\"" ? "\\\"" : character == "\\" ? "\\\\" : String(character)
    }
}

/// The JSON reader used for vocab.json, tokenizer.json and the configs.
@Suite struct JSONScannerTests {
    func parse(_ text: String) throws -> JSONValue {
        var scanner = JSONScanner(Array(text.utf8))
        let value = try scanner.value()
        try scanner.expectEnd()
        return value
    }

    @Test func valuesAndEscapes() throws {
        let value = try parse(#" {"a\u00e9\ud83d\ude00\"\\\/\n\t": [1, -2.5e1, true, false, null, "x"], "": {}} "#)
        #expect(value == .object([
            "a\u{E9}\u{1F600}\"\\/\n\t": .array([.number(1), .number(-25), .bool(true), .bool(false), .null, .string("x")]),
            "": .object([:]),
        ]))
        #expect(try parse("1e30") == .number(1e30))
    }

    @Test(arguments: [#"{"a": 1,}"#, #"{"a" 1}"#, #"["a\ud800"]"#, "[1] 2", #""\u12""#, "[tru]", "{\"a\n\": 1}", ""])
    func rejects(text: String) {
        #expect(throws: JSONScanner.Failure.self) { try parse(text) }
    }
}
