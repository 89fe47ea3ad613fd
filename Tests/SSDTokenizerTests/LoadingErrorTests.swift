import Testing
@testable import SSDTokenizer

/// Bad tokenizer folders give typed errors that name the file.
@Suite struct LoadingErrorTests {
    static let config = #"{"model_max_length": 77, "pad_token": "!", "tokenizer_class": "CLIPTokenizer"}"#
    static let smallVocabulary = #"{"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab</w>": 4, "<|startoftext|>": 5, "<|endoftext|>": 6, "!": 7}"#

    /// Runs `body` on a scratch folder and returns the error loading it throws.
    func loadingError(_ setUp: (ScratchFolder) throws -> Void) throws -> (TokenizerError?, ScratchFolder) {
        let folder = try ScratchFolder("errors")
        try setUp(folder)
        do {
            _ = try CLIPTokenizer(directory: folder.path)
            return (nil, folder)
        } catch {
            return (error, folder)
        }
    }

    @Test func missingFolder() {
        #expect(throws: TokenizerError.fileNotFound(path: "/nonexistent/tokenizer")) {
            try CLIPTokenizer(directory: "/nonexistent/tokenizer")
        }
    }

    @Test func missingPipelineSubfolder() throws {
        let folder = try ScratchFolder("pipeline")
        defer { folder.remove() }
        #expect(throws: TokenizerError.fileNotFound(path: folder.path + "/tokenizer")) {
            try SDXLTokenizers(pipelineDirectory: folder.path)
        }
    }

    @Test func missingConfig() throws {
        let (error, folder) = try loadingError { folder in
            try folder.write("vocab.json", Self.smallVocabulary)
            try folder.write("merges.txt", "#version: 0.2\na b</w>\n")
        }
        defer { folder.remove() }
        #expect(error == .fileNotFound(path: folder.path + "/tokenizer_config.json"))
    }

    @Test func missingVocabulary() throws {
        let (error, folder) = try loadingError { folder in
            try folder.write("tokenizer_config.json", Self.config)
            try folder.write("merges.txt", "#version: 0.2\na b</w>\n")
        }
        defer { folder.remove() }
        #expect(error == .fileNotFound(path: folder.path + "/vocab.json"))
        #expect(error?.description.contains("vocab.json") == true)
    }

    @Test func missingMerges() throws {
        let (error, folder) = try loadingError { folder in
            try folder.write("tokenizer_config.json", Self.config)
            try folder.write("vocab.json", Self.smallVocabulary)
        }
        defer { folder.remove() }
        #expect(error == .fileNotFound(path: folder.path + "/merges.txt"))
    }

    @Test(arguments: ["tokenizer_config.json", "vocab.json", "special_tokens_map.json", "tokenizer.json"])
    func malformedJSON(file: String) throws {
        let (error, folder) = try loadingError { folder in
            try folder.write("tokenizer_config.json", Self.config)
            try folder.write("vocab.json", Self.smallVocabulary)
            try folder.write("merges.txt", "#version: 0.2\na b</w>\n")
            try folder.write("special_tokens_map.json", #"{"pad_token": "!"}"#)
            try folder.write(file, #"{"pad_token": "!", "#)
        }
        defer { folder.remove() }
        guard case .malformedJSON(let path, _) = error else {
            Issue.record("expected malformedJSON, got \(String(describing: error))")
            return
        }
        #expect(path == folder.path + "/" + file)
        #expect(error?.description.contains(file) == true)
    }

    @Test func vocabularyOfWrongShape() throws {
        let (error, folder) = try loadingError { folder in
            try folder.write("tokenizer_config.json", Self.config)
            try folder.write("vocab.json", #"["a", "b"]"#)
            try folder.write("merges.txt", "#version: 0.2\n")
        }
        defer { folder.remove() }
        guard case .malformedJSON(let path, _) = error else {
            Issue.record("expected malformedJSON, got \(String(describing: error))")
            return
        }
        #expect(path.hasSuffix("/vocab.json"))
    }

    @Test func malformedMergesLine() throws {
        let (error, folder) = try loadingError { folder in
            try folder.write("tokenizer_config.json", Self.config)
            try folder.write("vocab.json", Self.smallVocabulary)
            try folder.write("merges.txt", "#version: 0.2\na b</w>\na  b\n")
        }
        defer { folder.remove() }
        guard case .malformedMerges(let path, let line, _) = error else {
            Issue.record("expected malformedMerges, got \(String(describing: error))")
            return
        }
        #expect(path == folder.path + "/merges.txt")
        #expect(line == 3)
    }

    @Test func mergeOfUnknownSymbols() throws {
        let (error, folder) = try loadingError { folder in
            try folder.write("tokenizer_config.json", Self.config)
            try folder.write("vocab.json", Self.smallVocabulary)
            try folder.write("merges.txt", "#version: 0.2\nb a</w>\n")
        }
        defer { folder.remove() }
        guard case .invalidContent(let path, _) = error else {
            Issue.record("expected invalidContent, got \(String(describing: error))")
            return
        }
        #expect(path == folder.path + "/merges.txt")
    }

    @Test func mergesNotUTF8() throws {
        let folder = try ScratchFolder("utf8")
        defer { folder.remove() }
        try folder.write("tokenizer_config.json", Self.config)
        try folder.write("vocab.json", Self.smallVocabulary)
        try FileBytes.write([0x61, 0x20, 0xFF, 0x0A], to: folder.path + "/merges.txt")
        #expect(throws: TokenizerError.invalidUTF8(path: folder.path + "/merges.txt")) {
            try CLIPTokenizer(directory: folder.path)
        }
    }

    @Test func tokenizerJSONWithoutBPE() throws {
        let (error, folder) = try loadingError { folder in
            try folder.write("tokenizer_config.json", Self.config)
            try folder.write("tokenizer.json", #"{"model": {"type": "WordPiece", "vocab": {"a": 0}}}"#)
        }
        defer { folder.remove() }
        guard case .unsupported(let path, _) = error else {
            Issue.record("expected unsupported, got \(String(describing: error))")
            return
        }
        #expect(path == folder.path + "/tokenizer.json")
    }

    @Test func tokenizerJSONWithoutMerges() throws {
        let (error, folder) = try loadingError { folder in
            try folder.write("tokenizer_config.json", Self.config)
            try folder.write("tokenizer.json", #"{"model": {"type": "BPE", "vocab": {"a": 0}}}"#)
        }
        defer { folder.remove() }
        #expect(error == .malformedJSON(path: folder.path + "/tokenizer.json", reason: "no \"model.merges\""))
    }

    @Test(arguments: [#""77""#, "1", "7.5"])
    func badModelMaxLength(value: String) throws {
        let (error, folder) = try loadingError { folder in
            try folder.write("tokenizer_config.json", #"{"model_max_length": \#(value)}"#)
            try folder.write("vocab.json", Self.smallVocabulary)
            try folder.write("merges.txt", "#version: 0.2\n")
        }
        defer { folder.remove() }
        guard case .invalidContent(let path, _) = error else {
            Issue.record("expected invalidContent, got \(String(describing: error))")
            return
        }
        #expect(path == folder.path + "/tokenizer_config.json")
    }

    @Test func singleWordTokensAreRefused() throws {
        let (error, folder) = try loadingError { folder in
            try folder.write("tokenizer_config.json", #"{"model_max_length": 77, "pad_token": {"__type": "AddedToken", "content": "!", "single_word": true, "normalized": false}}"#)
            try folder.write("vocab.json", Self.smallVocabulary)
            try folder.write("merges.txt", "#version: 0.2\n")
        }
        defer { folder.remove() }
        guard case .unsupported(let path, _) = error else {
            Issue.record("expected unsupported, got \(String(describing: error))")
            return
        }
        #expect(path == folder.path + "/tokenizer_config.json")
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes raw bytes (for files that are deliberately not UTF-8).
enum FileBytes {
    static func write(_ bytes: [UInt8], to path: String) throws {
        guard let file = fopen(path, "wb") else { throw TokenizerError.unreadableFile(path: path, reason: "cannot create") }
        defer { fclose(file) }
        _ = bytes.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, file) }
    }
}
