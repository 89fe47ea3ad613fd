/// Token ids and attention mask of one prompt, as transformers returns them for
/// `tokenizer(prompt, padding="max_length", max_length=model_max_length, truncation=True)`.
public struct TokenizedText: Sendable, Equatable {
    /// `maxLength` ids: start token, at most `maxLength - 2` text tokens, end token, then padding.
    public var inputIDs: [Int32]
    /// 1 for the start token, text tokens and end token; 0 for padding.
    public var attentionMask: [Int32]

    /// An encoding of these token ids and attention mask.
    public init(inputIDs: [Int32], attentionMask: [Int32]) {
        self.inputIDs = inputIDs
        self.attentionMask = attentionMask
    }
}

/// CLIP's byte-level BPE tokenizer, identical in its output to transformers 5's `CLIPTokenizer`
/// (models/clip/tokenization_clip.py, running on the tokenizers library) for the tokenizer folders of
/// SDXL-family pipelines: NFC, whitespace runs to one space, lower-casing, the CLIP split regex,
/// byte-level BPE with `</w>` word ends, added/special tokens matched before normalization or after it as
/// their flags say, start and end tokens, truncation and padding to `maxLength`.
/// Thread-safe; BPE results are cached per word.
public final class CLIPTokenizer: Sendable {
    /// `model_max_length` of tokenizer_config.json (77 for CLIP; 77 also when the file leaves it unlimited).
    public let maxLength: Int
    /// `<|startoftext|>` (49406 in CLIP's vocabulary).
    public let bosTokenID: Int32
    /// `<|endoftext|>` (49407).
    public let eosTokenID: Int32
    /// The padding id: 49407 for SDXL's `tokenizer`, 0 ("!") for `tokenizer_2`.
    public let padTokenID: Int32
    /// The padding token's text.
    public let padToken: String
    /// Entries of the BPE vocabulary (without added tokens that are not in it).
    public let vocabularySize: Int
    /// The folder it was loaded from.
    public let directory: String

    private let rawTokens: AddedTokenMatcher
    private let normalizedTokens: AddedTokenMatcher
    /// The added tokens behind the two matchers (kept for `addingTokens`), the vocabulary's strings and
    /// the next free id.
    private let rawList: [(scalars: [UInt32], id: Int32, spec: AddedTokenSpec)]
    private let normalizedList: [(scalars: [UInt32], id: Int32, spec: AddedTokenSpec)]
    private let knownContents: Set<String>
    /// Added tokens by content (`added_tokens_encoder`).
    public let addedTokenIDs: [String: Int32]
    /// `len(tokenizer)`: the id the next added token gets.
    public let count: Int32
    private let normalizer = CLIPNormalizer()
    private let preTokenizer = CLIPPreTokenizer()
    private let encoder: BytePairEncoder

    /// Loads a diffusers tokenizer folder (`tokenizer/` or `tokenizer_2/`) in either layout: vocab.json +
    /// merges.txt + special_tokens_map.json + tokenizer_config.json (as published), or tokenizer.json +
    /// tokenizer_config.json (as transformers 5 saves). Throws `TokenizerError` naming the file at fault.
    public convenience init(directory: String) throws(TokenizerError) {
        try self.init(folder: TokenizerFolder(directory: directory))
    }

    init(folder: TokenizerFolder) throws(TokenizerError) {
        directory = folder.directory
        maxLength = folder.maxLength
        vocabularySize = folder.vocabulary.count
        encoder = try BytePairEncoder(vocabulary: folder.vocabulary, merges: folder.merges,
                                      unknownToken: folder.content(of: "unk_token"), source: folder.modelSource)

        // Added tokens as tokenizers' AddedVocabulary keeps them: the id of a known content (vocabulary
        // first), else the next free id; a later declaration of the same content replaces the flags.
        var addedIDs: [String: Int32] = [:]
        var finalSpecs: [String: AddedTokenSpec] = [:]
        var order: [String] = []
        var nextID = Int32(folder.vocabulary.count)
        for spec in folder.addedTokenSequence where !spec.content.isEmpty {
            if spec.singleWord {
                throw .unsupported(path: folder.configPath, reason: "single_word added token \"\(spec.content)\"")
            }
            if addedIDs[spec.content] == nil {
                let id = folder.vocabulary[spec.content] ?? nextID
                if id >= nextID { nextID = id + 1 }
                addedIDs[spec.content] = id
                order.append(spec.content)
            }
            finalSpecs[spec.content] = spec
        }
        func id(_ key: String) throws(TokenizerError) -> Int32 {
            guard let content = folder.content(of: key), let id = addedIDs[content] ?? folder.vocabulary[content] else {
                throw .invalidContent(path: folder.configPath, reason: "no \(key)")
            }
            return id
        }
        bosTokenID = try id("bos_token")
        eosTokenID = try id("eos_token")
        padTokenID = try id("pad_token")
        padToken = folder.content(of: "pad_token") ?? ""

        let normalizer = CLIPNormalizer()
        var raw: [(scalars: [UInt32], id: Int32, spec: AddedTokenSpec)] = []
        var normalized: [(scalars: [UInt32], id: Int32, spec: AddedTokenSpec)] = []
        for content in order {
            guard let spec = finalSpecs[content], let tokenID = addedIDs[content] else { continue }
            let scalars = content.unicodeScalars.map(\.value)
            if spec.normalized {
                normalized.append((normalizer.normalize(scalars[...]), tokenID, spec))
            } else {
                raw.append((scalars, tokenID, spec))
            }
        }
        rawTokens = AddedTokenMatcher(raw)
        normalizedTokens = AddedTokenMatcher(normalized)
        rawList = raw
        normalizedList = normalized
        knownContents = Set(folder.vocabulary.keys).union(addedIDs.keys)
        addedTokenIDs = addedIDs
        count = nextID
    }

    private init(adding contents: [String], to base: CLIPTokenizer) {
        directory = base.directory
        maxLength = base.maxLength
        vocabularySize = base.vocabularySize
        encoder = base.encoder
        bosTokenID = base.bosTokenID
        eosTokenID = base.eosTokenID
        padTokenID = base.padTokenID
        padToken = base.padToken
        rawList = base.rawList
        var normalized = base.normalizedList
        var ids = base.addedTokenIDs
        var next = base.count
        for content in contents {
            let spec = AddedTokenSpec(content: content, normalized: true, special: false)
            normalized.append((normalizer.normalize(content.unicodeScalars.map(\.value)[...]), next, spec))
            ids[content] = next
            next += 1
        }
        normalizedList = normalized
        rawTokens = base.rawTokens
        normalizedTokens = AddedTokenMatcher(normalized)
        knownContents = base.knownContents.union(contents)
        addedTokenIDs = ids
        count = next
    }

    /// A copy with `contents` added as plain (normalized, non-special) tokens with the next free ids, as
    /// transformers' `tokenizer.add_tokens(token)` (diffusers `load_textual_inversion`). Throws for a token
    /// the tokenizer already knows (diffusers: "Token … already in tokenizer vocabulary").
    public func addingTokens(_ contents: [String]) throws(TokenizerError) -> CLIPTokenizer {
        for content in contents where content.isEmpty || knownContents.contains(content) || contents.filter({ $0 == content }).count > 1 {
            throw .invalidContent(path: directory, reason: "token \"\(content)\" is empty or already in the tokenizer's vocabulary")
        }
        return CLIPTokenizer(adding: contents, to: self)
    }

    /// The ids of `text` without start/end tokens, truncation or padding.
    public func tokenIDs(_ text: String) -> [Int32] {
        let scalars = text.unicodeScalars.map(\.value)
        var ids: [Int32] = []
        ids.reserveCapacity(scalars.count / 3 + 4)
        for segment in rawTokens.split(scalars[...]) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let range):
                let normalizedText = normalizer.normalize(scalars[range])
                for piece in normalizedTokens.split(normalizedText[...]) {
                    switch piece {
                    case .token(let id):
                        ids.append(id)
                    case .text(let pieceRange):
                        preTokenizer.forEachWord(in: normalizedText[pieceRange]) { word in
                            encoder.encode(word, into: &ids)
                        }
                    }
                }
            }
        }
        return ids
    }

    /// All ids of `text` between the start and end tokens, without truncation or padding
    /// (`tokenizer(prompt).input_ids`; diffusers uses it to warn about truncated prompts).
    public func encodeUntruncated(_ text: String) -> [Int32] {
        [bosTokenID] + tokenIDs(text) + [eosTokenID]
    }

    /// `tokenizer(text, padding="max_length", max_length=maxLength, truncation=True)`: the start token, the
    /// first `maxLength - 2` text tokens, the end token, padding to `maxLength`.
    public func encode(_ text: String) -> TokenizedText {
        let content = tokenIDs(text).prefix(maxLength - 2)
        var ids = [Int32]()
        ids.reserveCapacity(maxLength)
        ids.append(bosTokenID)
        ids.append(contentsOf: content)
        ids.append(eosTokenID)
        let used = ids.count
        ids.append(contentsOf: repeatElement(padTokenID, count: maxLength - used))
        var mask = [Int32](repeating: 1, count: used)
        mask.append(contentsOf: repeatElement(0, count: maxLength - used))
        return TokenizedText(inputIDs: ids, attentionMask: mask)
    }
}

/// The two tokenizers of an SDXL-family pipeline folder (diffusers `StableDiffusionXLPipeline.tokenizer`
/// and `.tokenizer_2`), read from its `tokenizer/` and `tokenizer_2/` subfolders.
public struct SDXLTokenizers: Sendable {
    /// `tokenizer/` (CLIP ViT-L; pads with `<|endoftext|>`).
    public let tokenizer: CLIPTokenizer
    /// `tokenizer_2/` (OpenCLIP bigG; pads with "!", id 0).
    public let tokenizer2: CLIPTokenizer

    /// Loads `<pipelineDirectory>/tokenizer` and `<pipelineDirectory>/tokenizer_2`.
    public init(pipelineDirectory: String) throws(TokenizerError) {
        tokenizer = try CLIPTokenizer(directory: TokenizerFileAccess.join(pipelineDirectory, "tokenizer"))
        tokenizer2 = try CLIPTokenizer(directory: TokenizerFileAccess.join(pipelineDirectory, "tokenizer_2"))
    }

    /// Both encodings of one prompt (diffusers encodes `prompt` with `tokenizer`, `prompt_2` — by default the
    /// same prompt — with `tokenizer_2`).
    public func encode(_ prompt: String, prompt2: String? = nil) -> (TokenizedText, TokenizedText) {
        (tokenizer.encode(prompt), tokenizer2.encode(prompt2 ?? prompt))
    }
}
