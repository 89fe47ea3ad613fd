import Testing
@testable import SSDTokenizer

/// Every fixture prompt gives the ids transformers 5.24 gives (Scripts/fixtures/tokenizer.py).
@Suite struct FixturePromptTests {
    @Test func fixtureIsComplete() throws {
        let file = try Fixtures.prompts.get()
        #expect(file.cases.count >= 1000)
        #expect(file.max_length == 77)
        #expect(file.pad_token_id == 49407 && file.pad_token_id_2 == 0)
    }

    @Test func tokenizerMatchesTransformers() throws {
        let file = try Fixtures.prompts.get()
        let tokenizer = try Fixtures.pipeline.get().tokenizer
        var mismatches = 0
        for testCase in file.cases where tokenizer.encodeUntruncated(testCase.prompt) != testCase.ids {
            mismatches += 1
            if mismatches <= 10 {
                Issue.record("tokenizer: \(testCase.prompt.debugDescription): \(tokenizer.encodeUntruncated(testCase.prompt)) != \(testCase.ids)")
            }
        }
        #expect(mismatches == 0)
    }

    @Test func tokenizer2MatchesTransformers() throws {
        let file = try Fixtures.prompts.get()
        let tokenizer = try Fixtures.pipeline.get().tokenizer2
        var mismatches = 0
        for testCase in file.cases where tokenizer.encodeUntruncated(testCase.prompt) != testCase.ids2 {
            mismatches += 1
            if mismatches <= 10 {
                Issue.record("tokenizer_2: \(testCase.prompt.debugDescription): \(tokenizer.encodeUntruncated(testCase.prompt)) != \(testCase.ids2)")
            }
        }
        #expect(mismatches == 0)
    }

    @Test func transformers5LayoutMatchesTransformers() throws {
        let file = try Fixtures.prompts.get()
        let tokenizer = try Fixtures.transformers5Tokenizer2.get()
        #expect(tokenizer.maxLength == 77 && tokenizer.padTokenID == 0)
        let mismatches = file.cases.filter { tokenizer.encodeUntruncated($0.prompt) != $0.ids2 }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(5).map(\.prompt))")
    }

    @Test func paddedAndTruncatedMatchTransformers() throws {
        let file = try Fixtures.prompts.get()
        let pipeline = try Fixtures.pipeline.get()
        #expect(file.padded.contains { file.cases[$0.index].ids.count > 77 })
        for padded in file.padded {
            let prompt = file.cases[padded.index].prompt
            let (first, second) = pipeline.encode(prompt)
            #expect(first == TokenizedText(inputIDs: padded.input_ids, attentionMask: padded.attention_mask), "\(prompt.debugDescription)")
            #expect(second == TokenizedText(inputIDs: padded.input_ids_2, attentionMask: padded.attention_mask_2), "\(prompt.debugDescription)")
        }
    }

    @Test func everyPromptPadsAndTruncatesTo77() throws {
        let file = try Fixtures.prompts.get()
        let pipeline = try Fixtures.pipeline.get()
        for testCase in file.cases.prefix(300) {
            for (tokenizer, ids) in [(pipeline.tokenizer, testCase.ids), (pipeline.tokenizer2, testCase.ids2)] {
                let encoded = tokenizer.encode(testCase.prompt)
                let kept = ids.count > 77 ? Array(ids.prefix(76)) + [ids.last!] : ids
                #expect(encoded.inputIDs == kept + Array(repeating: tokenizer.padTokenID, count: 77 - kept.count))
                #expect(encoded.attentionMask == Array(repeating: 1, count: kept.count) + Array(repeating: 0, count: 77 - kept.count))
            }
        }
    }

    @Test func variantsMatchTransformers() throws {
        let variants = try Fixtures.decode([Fixtures.Variant].self, "variants.json")
        #expect(variants.count >= 5)
        for variant in variants {
            let tokenizer = try CLIPTokenizer(directory: Fixtures.path(variant.folder))
            #expect(tokenizer.padTokenID == variant.pad_token_id, "\(variant.folder)")
            for testCase in variant.cases {
                let encoded = tokenizer.encode(testCase.prompt)
                #expect(encoded.inputIDs == testCase.input_ids, "\(variant.folder): \(testCase.prompt.debugDescription)")
                #expect(encoded.attentionMask == testCase.attention_mask, "\(variant.folder): \(testCase.prompt.debugDescription)")
            }
        }
    }
}
