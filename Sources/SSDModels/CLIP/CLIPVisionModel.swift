import SSDTensor

/// transformers `CLIPVisionModelWithProjection` (`models/clip/modeling_clip.py`), the IP-Adapter image
/// encoder: 14×14 patches embedded by a bias-free convolution (here a linear on host-extracted patches:
/// the same products), a class token, learned position embeddings, `pre_layrnorm`, pre-LN transformer
/// layers without a causal mask, and `visual_projection(post_layernorm(state of the class token))`.
public final class CLIPVisionModel: Sendable {
    static let model = "CLIPVisionModelWithProjection"
    /// The decoded `config.json`.
    public let config: CLIPVisionConfig
    /// The backend holding the weights.
    public let backend: any ComputeBackend
    let patchEmbedding: Linear
    let classEmbedding: Tensor
    let positionEmbedding: Tensor
    let preLayerNorm: LayerNorm
    let layers: [CLIPEncoderLayer]
    let postLayerNorm: LayerNorm
    let visualProjection: Linear

    /// Builds the model from `config` and `weights` (names with or without `vision_model.`).
    public init(config c: CLIPVisionConfig, weights: WeightFiles, backend: any ComputeBackend) throws {
        let model = Self.model
        let activation = try ActivationName.resolve(c.hiddenAct, model: model, field: "hidden_act")
        guard activation != .silu else { throw ModelError.unsupportedConfig(model: model, field: "hidden_act", value: "\"\(c.hiddenAct)\"") }
        guard c.numAttentionHeads > 0, c.hiddenSize % c.numAttentionHeads == 0 else {
            throw ModelError.unsupportedConfig(model: model, field: "num_attention_heads", value: "\(c.numAttentionHeads) (must divide hidden_size \(c.hiddenSize))")
        }
        guard c.numChannels == 3 else {
            throw ModelError.unsupportedConfig(model: model, field: "num_channels", value: "\(c.numChannels) (RGB images have 3)")
        }
        guard c.patchSize > 0, c.imageSize > 0, c.imageSize % c.patchSize == 0 else {
            throw ModelError.unsupportedConfig(model: model, field: "patch_size", value: "\(c.patchSize) (must divide image_size \(c.imageSize))")
        }
        let loader = ParameterLoader(model: model, family: .clipVision, weights: weights, backend: backend, component: .textEncoder)
        let root = loader.root, scope = root("vision_model")
        let d = c.hiddenSize, p = c.patchSize
        let positions = (c.imageSize / p) * (c.imageSize / p) + 1
        patchEmbedding = try Linear(patchConv: scope("embeddings.patch_embedding"), in: 3, out: d, kernel: p)
        classEmbedding = try scope("embeddings").parameter("class_embedding", shape: [d], role: .embedding, preparedShape: [1, d])
        positionEmbedding = try scope("embeddings.position_embedding").parameter("weight", shape: [positions, d], role: .embedding)
        preLayerNorm = try LayerNorm(scope("pre_layrnorm"), dim: d, epsilon: c.layerNormEps)
        layers = try (0..<c.numHiddenLayers).map {
            try CLIPEncoderLayer(scope("encoder.layers", $0), dim: d, intermediate: c.intermediateSize, heads: c.numAttentionHeads,
                                 activation: activation, epsilon: c.layerNormEps, causal: false)
        }
        postLayerNorm = try LayerNorm(scope("post_layernorm"), dim: d, epsilon: c.layerNormEps)
        visualProjection = try Linear(root("visual_projection"), in: d, out: c.projectionDim, bias: false)
        try loader.finish()
        config = c
        self.backend = backend
    }

    /// Loads `config.json` and `model[.variant].safetensors` from an image encoder folder (such as
    /// `h94/IP-Adapter/sdxl_models/image_encoder`).
    public static func load(componentDirectory: String, backend: any ComputeBackend, variant: String? = nil) throws -> CLIPVisionModel {
        let config = try ConfigFile.load(CLIPVisionConfig.self, path: componentDirectory + "/config.json")
        let weights = try WeightFiles.locate(in: componentDirectory, baseNames: ["model"], variant: variant)
        return try CLIPVisionModel(config: config, weights: weights, backend: backend)
    }

    /// Encodes preprocessed images (`CLIPImageProcessor` output as NHWC `[B, S, S, 3]` host floats, S =
    /// `image_size`).
    /// - Parameters:
    ///   - hiddenStateIndex: which entry of transformers' `hidden_states` to return as `hiddenStates`,
    ///     Python-style (0: the embeddings after `pre_layrnorm`, `k`: layer k's output, `-2`: the
    ///     penultimate layer's, which IP-Adapter Plus uses); nil: none.
    ///   - projected: also return `image_embeds` `[B, projection_dim]`.
    public func encode(pixels: [Float], batch: Int, hiddenStateIndex: Int?, projected: Bool) throws
        -> (hiddenStates: Tensor?, imageEmbeds: Tensor?) {
        let b = backend, s = config.imageSize, p = config.patchSize, d = config.hiddenSize
        guard batch > 0, pixels.count == batch * s * s * 3 else {
            throw ModelError.invalidInput(model: Self.model, argument: "pixels", message: "expected \(batch) NHWC images of \(s)×\(s)×3, got \(pixels.count) values")
        }
        let count = layers.count
        let index = hiddenStateIndex.map { $0 < 0 ? $0 + count + 1 : $0 }
        if let index, !(0...count).contains(index) {
            throw ModelError.invalidInput(model: Self.model, argument: "hiddenStateIndex",
                                          message: "\(hiddenStateIndex ?? 0) is outside the \(count + 1) hidden states")
        }
        // Patches as rows of (channel, row, column), the order of the convolution's weight.
        let grid = s / p, patches = grid * grid, width = 3 * p * p
        var rows = [Float](repeating: 0, count: batch * patches * width)
        for n in 0..<batch {
            for gy in 0..<grid {
                for gx in 0..<grid {
                    let base = ((n * patches) + gy * grid + gx) * width
                    for c in 0..<3 {
                        for ky in 0..<p {
                            for kx in 0..<p {
                                rows[base + (c * p + ky) * p + kx] = pixels[((n * s + gy * p + ky) * s + gx * p + kx) * 3 + c]
                            }
                        }
                    }
                }
            }
        }
        let dtype = b.activationDType(for: .textEncoder)
        let embedded = try patchEmbedding(b.upload(rows, shape: [batch, patches, width], as: dtype), b)
        let classRows = try b.embedding(classEmbedding, ids: [Int32](repeating: 0, count: batch), outputDType: dtype)
        let tokens = try b.concat([classRows.reshaped([batch, 1, d]), embedded], axis: 1)
        let positions = try b.embedding(positionEmbedding, ids: (0..<Int32(patches + 1)).map { $0 }, outputDType: dtype)
        var h = try preLayerNorm(b.binary(tokens, positions.reshaped([1, patches + 1, d]), .add), b)
        var selected: Tensor? = index == 0 ? h : nil
        let run = projected ? count : (index ?? 0)
        for (i, layer) in layers.prefix(run).enumerated() {
            h = try layer(h, b)
            if i + 1 == index { selected = h }
        }
        guard projected else { return (selected, nil) }
        let classStates = try b.slice(h, axis: 1, range: 0..<1).reshaped([batch, d])
        return (selected, try visualProjection(postLayerNorm(classStates, b), b))
    }
}
