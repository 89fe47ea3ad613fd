import SSDTensor

/// transformers `CLIPTextModel` and `CLIPTextModelWithProjection` (`models/clip/modeling_clip.py`):
/// token + learned position embeddings, pre-LN causal transformer layers, final layer norm, and
/// (with projection) `text_projection` of the EOS token's state. One class serves both.
public final class CLIPTextModel: Sendable {
    /// The decoded `config.json`.
    public let config: CLIPTextConfig
    /// Whether the model has `text_projection` (`CLIPTextModelWithProjection`).
    public let hasProjection: Bool
    /// The backend holding the weights.
    public let backend: any ComputeBackend
    let network: CLIPTextNetwork

    /// Builds the model from `config` and `weights`. `withProjection` overrides what the config's
    /// `architectures` says; when neither says, the presence of `text_projection.weight` decides.
    public init(config: CLIPTextConfig, weights: WeightFiles, backend: any ComputeBackend, withProjection: Bool? = nil) throws {
        let projection = withProjection ?? config.declaresProjection ?? (weights.entry("text_projection.weight") != nil)
        let model = projection ? "CLIPTextModelWithProjection" : "CLIPTextModel"
        let loader = ParameterLoader(model: model, family: .clipText, weights: weights, backend: backend, component: .textEncoder)
        network = try CLIPTextNetwork(config: config, withProjection: projection, scope: loader.root)
        try loader.finish()
        self.config = config
        self.hasProjection = projection
        self.backend = backend
    }

    private init(extending base: CLIPTextModel, network: CLIPTextNetwork) {
        config = base.config
        hasProjection = base.hasProjection
        backend = base.backend
        self.network = network
    }

    /// Token embeddings past the vocabulary (textual inversion: diffusers `load_textual_inversion`, after
    /// `resize_token_embeddings`): a copy whose ids `vocab_size + i` embed as `rows[i]`.
    public func addingTokenEmbeddings(_ rows: [[Float]]) throws -> CLIPTextModel {
        let d = network.tokenEmbedding.shape[1]
        guard !rows.isEmpty, rows.allSatisfy({ $0.count == d }) else {
            throw ModelError.invalidInput(model: hasProjection ? "CLIPTextModelWithProjection" : "CLIPTextModel", argument: "rows",
                                          message: "\(rows.map(\.count)) values per token; the embeddings are \(d) wide")
        }
        let extra = try backend.upload(Array(rows.joined()), shape: [rows.count, d], as: network.tokenEmbedding.dtype)
        var extended = network
        extended.tokenEmbedding = try backend.concat([network.tokenEmbedding, extra], axis: 0)
        extended.vocabSize += rows.count
        return CLIPTextModel(extending: self, network: extended)
    }

    /// Rows of the token embedding table (the vocabulary plus any added by `addingTokenEmbeddings`).
    public var tokenCount: Int { network.vocabSize }

    /// Loads `config.json` and `model[.variant].safetensors` (or a sharded index) from a component
    /// folder such as `<pipeline>/text_encoder_2`.
    public static func load(componentDirectory: String, backend: any ComputeBackend, variant: String? = nil,
                            withProjection: Bool? = nil) throws -> CLIPTextModel {
        let config = try ConfigFile.load(CLIPTextConfig.self, path: componentDirectory + "/config.json")
        let weights = try WeightFiles.locate(in: componentDirectory, baseNames: ["model"], variant: variant)
        return try CLIPTextModel(config: config, weights: weights, backend: backend, withProjection: withProjection)
    }

    /// The parameters `config` implies, in transformers' `state_dict` names (with `text_model.`).
    public static func parameterSpecs(config: CLIPTextConfig, withProjection: Bool) throws -> [ParameterSpec] {
        let loader = ParameterLoader(describing: "CLIPTextModel", family: .clipText)
        _ = try CLIPTextNetwork(config: config, withProjection: withProjection, scope: loader.root)
        return loader.specs
    }

    /// Encodes token ids.
    /// - Parameters:
    ///   - inputIDs: one row of ids per prompt, all rows the same length (≤ max_position_embeddings).
    ///   - hiddenStateIndex: which entry of transformers' `hidden_states` to return, Python-style:
    ///     0 is the embeddings, `k` the output of layer `k`, negative counts from the end
    ///     (`-1` last layer, `-2` penultimate as SDXL uses; clip skip `s` is `-(s + 2)`).
    ///     No final layer norm is applied to it, as in transformers. Layers past it are not run
    ///     unless `pooled` is requested.
    ///   - pooled: also return the pooled output: `text_projection(final_layer_norm(last)[eos])`
    ///     with a projection, `final_layer_norm(last)[eos]` without.
    /// - Returns: `hiddenStates` `[B, S, hidden_size]` and `pooled` `[B, projection_dim or hidden_size]`.
    public func encode(inputIDs: [[Int32]], hiddenStateIndex: Int = -1, pooled: Bool) throws
        -> (hiddenStates: Tensor, pooled: Tensor?) {
        try network.encode(inputIDs: inputIDs, hiddenStateIndex: hiddenStateIndex, pooled: pooled, eosTokenID: config.eosTokenId,
                           model: hasProjection ? "CLIPTextModelWithProjection" : "CLIPTextModel", backend)
    }
}

/// The module tree of a CLIP text model.
struct CLIPTextNetwork: Sendable {
    var tokenEmbedding: Tensor
    let positionEmbedding: Tensor
    let layers: [CLIPEncoderLayer]
    let finalLayerNorm: LayerNorm
    let textProjection: Linear?
    var vocabSize: Int
    let maxPositions: Int

    init(config c: CLIPTextConfig, withProjection: Bool, scope root: ParameterScope) throws {
        let model = withProjection ? "CLIPTextModelWithProjection" : "CLIPTextModel"
        let activation = try ActivationName.resolve(c.hiddenAct, model: model, field: "hidden_act")
        guard activation != .silu else { throw ModelError.unsupportedConfig(model: model, field: "hidden_act", value: "\"\(c.hiddenAct)\"") }
        guard c.numAttentionHeads > 0, c.hiddenSize % c.numAttentionHeads == 0 else {
            throw ModelError.unsupportedConfig(model: model, field: "num_attention_heads", value: "\(c.numAttentionHeads) (must divide hidden_size \(c.hiddenSize))")
        }
        let scope = root("text_model")
        let d = c.hiddenSize
        tokenEmbedding = try scope("embeddings.token_embedding").parameter("weight", shape: [c.vocabSize, d], role: .embedding)
        positionEmbedding = try scope("embeddings.position_embedding").parameter("weight", shape: [c.maxPositionEmbeddings, d], role: .embedding)
        layers = try (0..<c.numHiddenLayers).map {
            try CLIPEncoderLayer(scope("encoder.layers", $0), dim: d, intermediate: c.intermediateSize, heads: c.numAttentionHeads,
                                 activation: activation, epsilon: c.layerNormEps)
        }
        finalLayerNorm = try LayerNorm(scope("final_layer_norm"), dim: d, epsilon: c.layerNormEps)
        textProjection = withProjection ? try Linear(root("text_projection"), in: d, out: c.projectionDim, bias: false) : nil
        vocabSize = c.vocabSize
        maxPositions = c.maxPositionEmbeddings
    }

    func encode(inputIDs: [[Int32]], hiddenStateIndex: Int, pooled: Bool, eosTokenID: Int?, model: String,
                _ b: any ComputeBackend) throws -> (hiddenStates: Tensor, pooled: Tensor?) {
        let batch = inputIDs.count
        guard batch > 0, let length = inputIDs.first?.count, length > 0, length <= maxPositions,
              inputIDs.allSatisfy({ $0.count == length }) else {
            throw ModelError.invalidInput(model: model, argument: "inputIDs",
                                          message: "needs ≥ 1 rows of equal length 1…\(maxPositions)")
        }
        if let bad = inputIDs.joined().first(where: { $0 < 0 || Int($0) >= vocabSize }) {
            throw ModelError.invalidInput(model: model, argument: "inputIDs", message: "token id \(bad) is outside 0..<\(vocabSize)")
        }
        let count = layers.count
        let index = hiddenStateIndex < 0 ? hiddenStateIndex + count + 1 : hiddenStateIndex
        guard (0...count).contains(index) else {
            throw ModelError.invalidInput(model: model, argument: "hiddenStateIndex",
                                          message: "\(hiddenStateIndex) is outside the \(count + 1) hidden states")
        }
        let dtype = b.activationDType(for: .textEncoder)
        let width = tokenEmbedding.shape[1]
        let tokens = try b.embedding(tokenEmbedding, ids: Array(inputIDs.joined()), outputDType: dtype).reshaped([batch, length, width])
        let positions = try b.embedding(positionEmbedding, ids: (0..<Int32(length)).map { $0 }, outputDType: dtype)
        var h = try b.binary(tokens, positions.reshaped([1, length, width]), .add)
        var selected = h
        for (i, layer) in layers.prefix(pooled ? count : index).enumerated() {
            h = try layer(h, b)
            if i + 1 == index { selected = h }
        }
        guard pooled else { return (selected, nil) }
        // Pooled position: argmax of the ids with the legacy eos id 2, else the first eos id.
        let eosPositions = inputIDs.map { row -> Int in
            if eosTokenID == 2 || eosTokenID == nil {
                return row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) } ?? 0
            }
            return row.firstIndex(of: Int32(eosTokenID!)) ?? 0
        }
        let rows = try eosPositions.enumerated().map { row, position in
            try b.slice(b.slice(h, axis: 0, range: row..<(row + 1)), axis: 1, range: position..<(position + 1))
        }
        var pooledOutput = try finalLayerNorm(b.concat(rows, axis: 0).reshaped([batch, width]), b)
        if let textProjection { pooledOutput = try textProjection(pooledOutput, b) }
        return (selected, pooledOutput)
    }
}

/// transformers `CLIPEncoderLayer`: `x += attn(ln1(x))` (causal in the text tower), `x += fc2(act(fc1(ln2(x))))`.
struct CLIPEncoderLayer: Sendable {
    let layerNorm1: LayerNorm
    let attention: Attention
    let layerNorm2: LayerNorm
    let fc1: Linear
    let fc2: Linear
    let activation: Activation
    let causal: Bool

    init(_ scope: ParameterScope, dim: Int, intermediate: Int, heads: Int, activation: Activation, epsilon: Double,
         causal: Bool = true) throws {
        self.causal = causal
        layerNorm1 = try LayerNorm(scope("layer_norm1"), dim: dim, epsilon: epsilon)
        attention = try Attention(scope("self_attn"), naming: .clip, queryDim: dim, heads: heads, headDim: dim / heads, qkvBias: true)
        layerNorm2 = try LayerNorm(scope("layer_norm2"), dim: dim, epsilon: epsilon)
        fc1 = try Linear(scope("mlp.fc1"), in: dim, out: intermediate)
        fc2 = try Linear(scope("mlp.fc2"), in: intermediate, out: dim)
        self.activation = activation
    }

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        let h = try attention(layerNorm1(x, b), residual: x, causal: causal, b)
        return try fc2(b.activation(fc1(layerNorm2(h, b), b), activation), b, residual: h)
    }
}
