/// `config.json` of a transformers `CLIPVisionModelWithProjection` (the IP-Adapter image encoder;
/// transformers `models/clip/configuration_clip.py`, `CLIPVisionConfig`). Absent keys take
/// transformers' defaults.
public struct CLIPVisionConfig: Codable, Sendable, Equatable {
    /// `hidden_size`.
    public var hiddenSize: Int
    /// `intermediate_size`.
    public var intermediateSize: Int
    /// `projection_dim` (width of `image_embeds`).
    public var projectionDim: Int
    /// `num_hidden_layers`.
    public var numHiddenLayers: Int
    /// `num_attention_heads`.
    public var numAttentionHeads: Int
    /// `num_channels` (3).
    public var numChannels: Int
    /// `image_size` (224 for the IP-Adapter encoders; square).
    public var imageSize: Int
    /// `patch_size` (14 for ViT-H/14 and ViT-bigG/14).
    public var patchSize: Int
    /// `quick_gelu` (OpenAI CLIP) or `gelu` (OpenCLIP ViT-H, ViT-bigG).
    public var hiddenAct: String
    /// `layer_norm_eps`.
    public var layerNormEps: Double

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size", projectionDim = "projection_dim"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numChannels = "num_channels", imageSize = "image_size", patchSize = "patch_size"
        case hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps"
    }

    /// transformers' defaults (CLIP ViT-B/32 vision tower).
    public init() {
        hiddenSize = 768; intermediateSize = 3072; projectionDim = 512; numHiddenLayers = 12; numAttentionHeads = 12
        numChannels = 3; imageSize = 224; patchSize = 32; hiddenAct = "quick_gelu"; layerNormEps = 1e-5
    }

    public init(from decoder: any Decoder) throws {
        let d = CLIPVisionConfig()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.value(.hiddenSize, default: d.hiddenSize)
        intermediateSize = try c.value(.intermediateSize, default: d.intermediateSize)
        projectionDim = try c.value(.projectionDim, default: d.projectionDim)
        numHiddenLayers = try c.value(.numHiddenLayers, default: d.numHiddenLayers)
        numAttentionHeads = try c.value(.numAttentionHeads, default: d.numAttentionHeads)
        numChannels = try c.value(.numChannels, default: d.numChannels)
        imageSize = try c.value(.imageSize, default: d.imageSize)
        patchSize = try c.value(.patchSize, default: d.patchSize)
        hiddenAct = try c.value(.hiddenAct, default: d.hiddenAct)
        layerNormEps = try c.value(.layerNormEps, default: d.layerNormEps)
    }
}
