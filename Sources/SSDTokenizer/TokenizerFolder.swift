/// The contents of a diffusers tokenizer folder, read the way transformers 5 reads it for `CLIPTokenizer`
/// (tokenization_utils_base.py `_from_pretrained`, tokenization_utils_tokenizers.py `TokenizersBackend`):
/// - vocabulary and merges from tokenizer.json when present (transformers 5 `save_pretrained`), otherwise
///   from vocab.json + merges.txt (the published SDXL / SSD-1B layout);
/// - special tokens from tokenizer_config.json, overridden by special_tokens_map.json unless the config has
///   `added_tokens_decoder`; added tokens from `added_tokens_decoder`, or else from tokenizer.json;
/// - `model_max_length` from tokenizer_config.json.
struct TokenizerFolder {
    static let vocabularyFile = "vocab.json", mergesFile = "merges.txt", tokenizerFile = "tokenizer.json"
    static let configFile = "tokenizer_config.json", specialTokensFile = "special_tokens_map.json"
    /// transformers' `SPECIAL_TOKENS_ATTRIBUTES`, in the order the tokens are added.
    static let specialTokenKeys = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]
    /// CLIPTokenizer's defaults for what the files leave out.
    static let clipDefaults = ["bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                               "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"]
    /// transformers' `VERY_LARGE_INTEGER` stands for "no limit"; such values (and a missing one) mean 77 here.
    static let defaultMaxLength = 77

    enum SpecialValue: Equatable { case string(String), token(AddedTokenSpec) }

    let directory: String
    var vocabulary: [String: Int32] = [:]
    var merges: [(String, String)] = []
    /// The file vocabulary and merges came from (named in errors).
    var modelSource = ""
    /// Added tokens in the order transformers adds them; a later one with the same content replaces the flags
    /// of an earlier one (tokenizers' `AddedVocabulary::add_tokens`).
    var addedTokenSequence: [AddedTokenSpec] = []
    /// Named special tokens (bos_token, ...) after all overrides.
    var specialTokens: [String: SpecialValue] = [:]
    var maxLength = defaultMaxLength

    private func path(_ name: String) -> String { TokenizerFileAccess.join(directory, name) }

    init(directory: String) throws(TokenizerError) {
        self.directory = directory
        guard TokenizerFileAccess.isDirectory(directory) else { throw .fileNotFound(path: directory) }
        let configPath = path(Self.configFile)
        guard case .object(let config) = try TokenizerFileAccess.decode(JSONValue.self, from: configPath) else {
            throw .malformedJSON(path: configPath, reason: "expected a JSON object")
        }
        try readMaxLength(config, configPath: configPath)

        let tokenizerPath = path(Self.tokenizerFile)
        var tokenizerJSON: TokenizerJSON? = nil
        if TokenizerFileAccess.exists(tokenizerPath) {
            let decoded = try TokenizerFileAccess.decode(TokenizerJSON.self, from: tokenizerPath)
            try readModel(decoded, path: tokenizerPath)
            tokenizerJSON = decoded
        } else {
            try readVocabularyAndMerges()
        }

        // Named special tokens from tokenizer_config.json.
        for key in Self.specialTokenKeys {
            if let value = config[key], let special = try Self.specialValue(value, special: false, path: configPath, key: key) {
                specialTokens[key] = special
            }
        }
        var extras = try Self.extraSpecialTokens(config, special: false, path: configPath)
        var decoder: [(id: Int, token: AddedTokenSpec)] = []
        if let entries = config["added_tokens_decoder"] {
            guard case .object(let object) = entries else {
                throw .malformedJSON(path: configPath, reason: "added_tokens_decoder must be an object")
            }
            for (key, value) in object {
                guard let id = Int(key), case .object(let fields) = value,
                      let token = AddedTokenSpec(fields, special: false) else {
                    throw .malformedJSON(path: configPath, reason: "added_tokens_decoder entry \"\(key)\" is not an id → token object")
                }
                decoder.append((id, token))
            }
        } else {
            let mapPath = path(Self.specialTokensFile)
            if TokenizerFileAccess.exists(mapPath) {
                guard case .object(let map) = try TokenizerFileAccess.decode(JSONValue.self, from: mapPath) else {
                    throw .malformedJSON(path: mapPath, reason: "expected a JSON object")
                }
                for key in Self.specialTokenKeys {
                    if let value = map[key], let special = try Self.specialValue(value, special: true, path: mapPath, key: key) {
                        specialTokens[key] = special
                    }
                }
                let mapExtras = try Self.extraSpecialTokens(map, special: true, path: mapPath)
                for token in mapExtras where !extras.contains(token) { extras.append(token) }
            }
            for entry in tokenizerJSON?.addedTokens ?? [] {
                decoder.append((entry.id, entry.spec))
            }
        }
        decoder.sort { $0.id < $1.id }
        // A named token takes the flags of the added token with the same content, if there is one.
        var byContent: [String: AddedTokenSpec] = [:]
        for (_, token) in decoder { byContent[token.content] = token }
        for key in Self.specialTokenKeys {
            if let content = content(of: key), let token = byContent[content] { specialTokens[key] = .token(token) }
        }
        for (key, content) in Self.clipDefaults where specialTokens[key] == nil { specialTokens[key] = .string(content) }

        // TokenizersBackend.__init__ adds the decoder's tokens (by id), then each named and extra special token
        // whose content is not among them and that is not equal to one already queued (a string equals the same
        // string; a token equals a token with the same content and flags), a string as a non-normalized token.
        addedTokenSequence = decoder.map(\.token)
        let decoderContents = Set(decoder.map(\.token.content))
        var queued: [SpecialValue] = []
        for value in Self.specialTokenKeys.compactMap({ specialTokens[$0] }) + extras {
            let content: String
            switch value {
            case .string(let text): content = text
            case .token(let token): content = token.content
            }
            if decoderContents.contains(content) || queued.contains(value) { continue }
            queued.append(value)
            switch value {
            case .string(let text): addedTokenSequence.append(AddedTokenSpec(specialString: text))
            case .token(let token): addedTokenSequence.append(token)
            }
        }
    }

    func content(of key: String) -> String? {
        switch specialTokens[key] {
        case .string(let content): return content
        case .token(let token): return token.content
        case nil: return nil
        }
    }

    var configPath: String { path(Self.configFile) }

    // MARK: Pieces

    private mutating func readMaxLength(_ config: [String: JSONValue], configPath: String) throws(TokenizerError) {
        guard let value = config["model_max_length"] else { return }
        guard case .number(let number) = value, number == number.rounded() else {
            throw .invalidContent(path: configPath, reason: "model_max_length must be an integer")
        }
        if number >= 1e15 { return }  // transformers' "unlimited" sentinel
        guard number >= 2 else {
            throw .invalidContent(path: configPath, reason: "model_max_length \(Int(number)) leaves no room for the start and end tokens")
        }
        maxLength = Int(number)
    }

    private mutating func readVocabularyAndMerges() throws(TokenizerError) {
        let vocabularyPath = path(Self.vocabularyFile)
        let mergesPath = path(Self.mergesFile)
        guard TokenizerFileAccess.exists(vocabularyPath) else { throw .fileNotFound(path: vocabularyPath) }
        guard TokenizerFileAccess.exists(mergesPath) else { throw .fileNotFound(path: mergesPath) }
        let entries = try TokenizerFileAccess.decode([String: Int].self, from: vocabularyPath)
        vocabulary = try Self.checkedVocabulary(entries, path: vocabularyPath)
        modelSource = mergesPath
        // tokenizers reads merges.txt line by line (`\n` or `\r\n`), skipping lines that start with "#version";
        // every other line must be exactly two symbols separated by one space.
        let text = try TokenizerFileAccess.readText(mergesPath)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        merges.reserveCapacity(lines.count)
        for (number, rawLine) in lines.enumerated() {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.hasPrefix("#version") { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw .malformedMerges(path: mergesPath, line: number + 1, reason: "expected two symbols separated by one space")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
    }

    private mutating func readModel(_ json: TokenizerJSON, path tokenizerPath: String) throws(TokenizerError) {
        guard let model = json.model else { throw .malformedJSON(path: tokenizerPath, reason: "no \"model\"") }
        if let type = model.type, type != "BPE" {
            throw .unsupported(path: tokenizerPath, reason: "model type \(type) (CLIPTokenizer needs BPE)")
        }
        guard let vocabulary = model.vocab else { throw .malformedJSON(path: tokenizerPath, reason: "no \"model.vocab\"") }
        guard let merges = model.merges else { throw .malformedJSON(path: tokenizerPath, reason: "no \"model.merges\"") }
        self.vocabulary = try Self.checkedVocabulary(vocabulary, path: tokenizerPath)
        self.merges = try merges.enumerated().map { (index, entry) throws(TokenizerError) in
            guard let pair = entry.pair else {
                throw .invalidContent(path: tokenizerPath, reason: "merge \(index + 1) is not two symbols")
            }
            return pair
        }
        modelSource = tokenizerPath
    }

    private static func checkedVocabulary(_ entries: [String: Int], path: String) throws(TokenizerError) -> [String: Int32] {
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(entries.count)
        for (token, id) in entries {
            guard id >= 0 && id <= Int(Int32.max) else {
                throw .invalidContent(path: path, reason: "token \"\(token)\" has id \(id), out of range")
            }
            vocabulary[token] = Int32(id)
        }
        return vocabulary
    }

    private static func specialValue(_ value: JSONValue, special: Bool, path: String, key: String) throws(TokenizerError) -> SpecialValue? {
        switch value {
        case .null: return nil
        case .string(let content): return .string(content)
        case .object(var fields):
            // special_tokens_map.json entries are always special (transformers drops their "special" field).
            if special { fields["special"] = nil }
            guard let token = AddedTokenSpec(fields, special: special) else {
                throw .malformedJSON(path: path, reason: "\(key) has no \"content\"")
            }
            return .token(token)
        default:
            throw .malformedJSON(path: path, reason: "\(key) must be a string or a token object")
        }
    }

    private static func extraSpecialTokens(_ object: [String: JSONValue], special: Bool, path: String) throws(TokenizerError) -> [SpecialValue] {
        var result: [SpecialValue] = []
        for key in ["additional_special_tokens", "extra_special_tokens"] {
            guard case .array(let values) = object[key] else { continue }
            for value in values {
                if let token = try specialValue(value, special: true, path: path, key: key) { result.append(token) }
            }
        }
        return result
    }
}

/// The parts of tokenizer.json that CLIPTokenizer uses (transformers 5 rebuilds the rest itself).
struct TokenizerJSON: Decodable {
    struct Model: Decodable {
        let type: String?
        let vocab: [String: Int]?
        let merges: [MergeEntry]?
    }

    /// A merge, written as `"a b"` (older files) or `["a", "b"]`.
    struct MergeEntry: Decodable {
        let pair: (String, String)?
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                let parts = text.split(separator: " ", omittingEmptySubsequences: false)
                pair = parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
            } else {
                let parts = try container.decode([String].self)
                pair = parts.count == 2 ? (parts[0], parts[1]) : nil
            }
        }
    }

    struct AddedToken: Decodable {
        let id: Int
        let spec: AddedTokenSpec
        init(from decoder: any Decoder) throws {
            let object = try decoder.singleValueContainer().decode([String: JSONValue].self)
            guard case .number(let number) = object["id"], let id = Int(exactly: number),
                  let spec = AddedTokenSpec(object, special: false) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                        debugDescription: "an added token needs an integer id and a content"))
            }
            self.id = id
            self.spec = spec
        }
    }

    let model: Model?
    let addedTokens: [AddedToken]?

    enum CodingKeys: String, CodingKey {
        case model
        case addedTokens = "added_tokens"
    }
}
