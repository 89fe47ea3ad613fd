/// `config.json` of a transformers `CLIPTextModel` / `CLIPTextModelWithProjection`
/// (transformers `models/clip/configuration_clip.py`, `CLIPTextConfig`). Absent keys take
/// transformers' defaults.
public struct CLIPTextConfig: Codable, Sendable, Equatable {
    /// `["CLIPTextModel"]` or `["CLIPTextModelWithProjection"]` when written by transformers.
    public var architectures: [String]?
    /// `vocab_size`.
    public var vocabSize: Int
    /// `hidden_size`.
    public var hiddenSize: Int
    /// `intermediate_size`.
    public var intermediateSize: Int
    /// `projection_dim`.
    public var projectionDim: Int
    /// `num_hidden_layers`.
    public var numHiddenLayers: Int
    /// `num_attention_heads`.
    public var numAttentionHeads: Int
    /// `max_position_embeddings`.
    public var maxPositionEmbeddings: Int
    /// `quick_gelu` (CLIP ViT-L) or `gelu` (OpenCLIP bigG, exact erf GELU).
    public var hiddenAct: String
    /// `layer_norm_eps`.
    public var layerNormEps: Double
    /// `pad_token_id`.
    public var padTokenId: Int?
    /// `bos_token_id`.
    public var bosTokenId: Int?
    /// 2 in the SDXL configs (legacy): the pooled position is then `argmax(ids)`.
    public var eosTokenId: Int?

    enum CodingKeys: String, CodingKey {
        case architectures, vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size", projectionDim = "projection_dim"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case maxPositionEmbeddings = "max_position_embeddings", hiddenAct = "hidden_act"
        case layerNormEps = "layer_norm_eps", padTokenId = "pad_token_id", bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id"
    }

    /// transformers' defaults (CLIP ViT-B/32 text tower).
    public init() {
        architectures = nil; vocabSize = 49408; hiddenSize = 512; intermediateSize = 2048; projectionDim = 512
        numHiddenLayers = 12; numAttentionHeads = 8; maxPositionEmbeddings = 77; hiddenAct = "quick_gelu"
        layerNormEps = 1e-5; padTokenId = 1; bosTokenId = 49406; eosTokenId = 49407
    }

    /// SDXL's `text_encoder` (CLIP ViT-L/14 text), spec §3.1.
    public static var sdxlCLIPL: CLIPTextConfig {
        var c = CLIPTextConfig()
        c.architectures = ["CLIPTextModel"]
        c.hiddenSize = 768; c.intermediateSize = 3072; c.projectionDim = 768; c.numAttentionHeads = 12
        c.padTokenId = 1; c.bosTokenId = 0; c.eosTokenId = 2
        return c
    }

    /// SDXL's `text_encoder_2` (OpenCLIP ViT-bigG/14 text with projection), spec §3.1.
    public static var sdxlBigG: CLIPTextConfig {
        var c = CLIPTextConfig()
        c.architectures = ["CLIPTextModelWithProjection"]
        c.hiddenSize = 1280; c.intermediateSize = 5120; c.projectionDim = 1280; c.numHiddenLayers = 32
        c.numAttentionHeads = 20; c.hiddenAct = "gelu"; c.padTokenId = 1; c.bosTokenId = 0; c.eosTokenId = 2
        return c
    }

    /// Whether `architectures` names the projection variant (`nil` when the config does not say).
    public var declaresProjection: Bool? {
        guard let architectures, !architectures.isEmpty else { return nil }
        return architectures.contains("CLIPTextModelWithProjection")
    }

    public init(from decoder: any Decoder) throws {
        let d = CLIPTextConfig()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        architectures = try c.nullable(.architectures, default: nil)
        vocabSize = try c.value(.vocabSize, default: d.vocabSize)
        hiddenSize = try c.value(.hiddenSize, default: d.hiddenSize)
        intermediateSize = try c.value(.intermediateSize, default: d.intermediateSize)
        projectionDim = try c.value(.projectionDim, default: d.projectionDim)
        numHiddenLayers = try c.value(.numHiddenLayers, default: d.numHiddenLayers)
        numAttentionHeads = try c.value(.numAttentionHeads, default: d.numAttentionHeads)
        maxPositionEmbeddings = try c.value(.maxPositionEmbeddings, default: d.maxPositionEmbeddings)
        hiddenAct = try c.value(.hiddenAct, default: d.hiddenAct)
        layerNormEps = try c.value(.layerNormEps, default: d.layerNormEps)
        padTokenId = try c.nullable(.padTokenId, default: d.padTokenId)
        bosTokenId = try c.nullable(.bosTokenId, default: d.bosTokenId)
        eosTokenId = try c.nullable(.eosTokenId, default: d.eosTokenId)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(architectures, forKey: .architectures)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(projectionDim, forKey: .projectionDim)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        try c.encodeNullable(padTokenId, forKey: .padTokenId)
        try c.encodeNullable(bosTokenId, forKey: .bosTokenId)
        try c.encodeNullable(eosTokenId, forKey: .eosTokenId)
    }
}
