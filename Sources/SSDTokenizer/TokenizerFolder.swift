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
        let config = try TokenizerFileAccess.jsonObject(configPath)
        try readMaxLength(config, configPath: configPath)

        let tokenizerPath = path(Self.tokenizerFile)
        var tokenizerFileTokens: [(id: Int, token: AddedTokenSpec)] = []
        if TokenizerFileAccess.exists(tokenizerPath) {
            tokenizerFileTokens = try readTokenizerJSON(tokenizerPath)
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
                let map = try TokenizerFileAccess.jsonObject(mapPath)
                for key in Self.specialTokenKeys {
                    if let value = map[key], let special = try Self.specialValue(value, special: true, path: mapPath, key: key) {
                        specialTokens[key] = special
                    }
                }
                let mapExtras = try Self.extraSpecialTokens(map, special: true, path: mapPath)
                for token in mapExtras where !extras.contains(token) { extras.append(token) }
            }
            decoder += tokenizerFileTokens
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
        vocabulary = try TokenizerFileAccess.parseJSON(vocabularyPath) { (scanner) throws(JSONScanner.Failure) in
            try Self.vocabulary(&scanner)
        }
        modelSource = mergesPath
        // tokenizers reads merges.txt line by line (`\n` or `\r\n`), skipping lines that start with "#version";
        // every other line must be exactly two symbols separated by one space.
        let bytes = try TokenizerFileAccess.bytes(mergesPath)
        var lineStart = 0
        var lineNumber = 0
        merges.reserveCapacity(bytes.count / 10)
        while lineStart < bytes.count {
            lineNumber += 1
            var lineEnd = lineStart
            while lineEnd < bytes.count && bytes[lineEnd] != 0x0A { lineEnd += 1 }
            let next = lineEnd + 1
            if lineEnd > lineStart && bytes[lineEnd - 1] == 0x0D { lineEnd -= 1 }
            let line = bytes[lineStart..<lineEnd]
            lineStart = next
            if line.starts(with: Self.versionPrefix) { continue }
            guard let space = line.firstIndex(of: 0x20), !line[(space + 1)...].contains(0x20) else {
                throw .malformedMerges(path: mergesPath, line: lineNumber, reason: "expected two symbols separated by one space")
            }
            guard let left = String(validating: line[..<space], as: UTF8.self),
                  let right = String(validating: line[(space + 1)...], as: UTF8.self) else {
                throw .invalidUTF8(path: mergesPath)
            }
            merges.append((left, right))
        }
    }

    private static let versionPrefix = Array("#version".utf8)

    /// vocab.json, or tokenizer.json's `model.vocab`: an object of token → non-negative integer id.
    private static func vocabulary(_ scanner: inout JSONScanner) throws(JSONScanner.Failure) -> [String: Int32] {
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(50_000)
        try scanner.forEachMember { (scanner, token) throws(JSONScanner.Failure) in
            guard let id = try scanner.integer(), id <= Int(Int32.max) else {
                throw JSONScanner.Failure(message: "the id of \"\(token)\" is not a non-negative integer", offset: scanner.position)
            }
            vocabulary[token] = Int32(id)
        }
        return vocabulary
    }

    /// Reads the parts of tokenizer.json that CLIPTokenizer uses (transformers 5 rebuilds the rest itself):
    /// model type, vocabulary and merges (`"a b"` strings or `["a", "b"]` pairs); returns the added tokens.
    private mutating func readTokenizerJSON(_ path: String) throws(TokenizerError) -> [(id: Int, token: AddedTokenSpec)] {
        var type: String? = nil
        var vocabulary: [String: Int32]? = nil
        var merges: [(String, String)]? = nil
        var added: [JSONValue] = []
        var badMerge: Int? = nil
        try TokenizerFileAccess.parseJSON(path) { (scanner) throws(JSONScanner.Failure) in
            try scanner.forEachMember { (scanner, key) throws(JSONScanner.Failure) in
                switch key {
                case "model":
                    try scanner.forEachMember { (scanner, key) throws(JSONScanner.Failure) in
                        switch key {
                        case "type": type = try scanner.value().stringValue
                        case "vocab": vocabulary = try Self.vocabulary(&scanner)
                        case "merges": merges = try Self.merges(&scanner, firstBad: &badMerge)
                        default: _ = try scanner.value()
                        }
                    }
                case "added_tokens":
                    guard case .array(let items) = try scanner.value() else {
                        throw JSONScanner.Failure(message: "added_tokens must be an array", offset: scanner.position)
                    }
                    added = items
                default: _ = try scanner.value()
                }
            }
        }
        if let type, type != "BPE" {
            throw .unsupported(path: path, reason: "model type \(type) (CLIPTokenizer needs BPE)")
        }
        guard let vocabulary else { throw .malformedJSON(path: path, reason: "no \"model.vocab\"") }
        guard let merges else { throw .malformedJSON(path: path, reason: "no \"model.merges\"") }
        if let badMerge { throw .invalidContent(path: path, reason: "merge \(badMerge) is not two symbols") }
        self.vocabulary = vocabulary
        self.merges = merges
        modelSource = path
        var tokens: [(id: Int, token: AddedTokenSpec)] = []
        for item in added {
            guard case .object(let fields) = item, case .number(let number) = fields["id"], let id = Int(exactly: number),
                  let token = AddedTokenSpec(fields, special: false) else {
                throw .malformedJSON(path: path, reason: "an added token needs an integer id and a content")
            }
            tokens.append((id, token))
        }
        return tokens
    }

    /// tokenizer.json's `model.merges`; `firstBad` is set to the (1-based) number of the first unusable entry.
    private static func merges(_ scanner: inout JSONScanner, firstBad: inout Int?) throws(JSONScanner.Failure) -> [(String, String)] {
        var list: [(String, String)] = []
        list.reserveCapacity(50_000)
        var bad: Int? = nil
        try scanner.forEachElement { (scanner) throws(JSONScanner.Failure) in
            switch try scanner.value() {
            case .string(let text):
                let parts = text.split(separator: " ", omittingEmptySubsequences: false)
                if parts.count == 2 {
                    list.append((String(parts[0]), String(parts[1])))
                    return
                }
            case .array(let items):
                if items.count == 2, let left = items[0].stringValue, let right = items[1].stringValue {
                    list.append((left, right))
                    return
                }
            default: break
            }
            if bad == nil { bad = list.count + 1 }
            list.append(("", ""))
        }
        firstBad = bad
        return list
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

