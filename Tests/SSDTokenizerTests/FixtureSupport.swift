import FoundationEssentials
@testable import SSDTokenizer

/// Tests/Fixtures/tokenizer, written by `Scripts/make_fixtures.py tokenizer`.
enum Fixtures {
    static let root: String = {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(2)  // SSDTokenizerTests/FixtureSupport.swift
        return parts.joined(separator: "/") + "/Fixtures/tokenizer"
    }()

    static func path(_ relative: String) -> String { root + "/" + relative }

    struct PromptFile: Decodable {
        struct Case: Decodable {
            let prompt: String
            let ids: [Int32]
            let ids_2: [Int32]?
            var ids2: [Int32] { ids_2 ?? ids }
        }
        struct Padded: Decodable {
            let index: Int
            let input_ids: [Int32]
            let attention_mask: [Int32]
            let input_ids_2: [Int32]
            let attention_mask_2: [Int32]
        }
        let transformers: String
        let max_length: Int
        let pad_token_id: Int32
        let pad_token_id_2: Int32
        let cases: [Case]
        let padded: [Padded]
    }

    struct Variant: Decodable {
        struct Case: Decodable {
            let prompt: String
            let input_ids: [Int32]
            let attention_mask: [Int32]
        }
        let folder: String
        let pad_token_id: Int32
        let cases: [Case]
    }

    static func decode<T: Decodable>(_ type: T.Type, _ relative: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(contentsOf: URL(fileURLWithPath: path(relative))))
    }

    // Loaded once per test process (the vocabulary takes a moment to read in debug builds).
    static let prompts = Result { try decode(PromptFile.self, "prompts.json") }
    static let pipeline = Result { try SDXLTokenizers(pipelineDirectory: path("pipeline")) }
    static let transformers5Tokenizer2 = Result { try CLIPTokenizer(directory: path("transformers5/tokenizer_2")) }
}

/// A scratch folder for tokenizer folders built by a test; removed by `remove()`.
struct ScratchFolder {
    let path: String

    init(_ name: String) throws {
        path = FileManager.default.temporaryDirectory.path + "/ssd-tokenizer-tests-\(name)-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path + "/" + name))
    }

    func copy(_ fixture: String, as name: String) throws {
        try FileManager.default.copyItem(atPath: Fixtures.path(fixture), toPath: path + "/" + name)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
