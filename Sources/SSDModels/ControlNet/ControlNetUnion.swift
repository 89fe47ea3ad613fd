#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SSDTensor

/// The fields a ControlNet Union adds to a ControlNet's `config.json` (diffusers
/// `models/controlnets/controlnet_union.py`, `ControlNetUnionModel`; xinsir/controlnet-union-sdxl-1.0).
public struct ControlNetUnionConfig: Sendable, Hashable {
    /// Condition types the model knows (`num_control_type`: 6 for xinsir's union, 8 for its "promax").
    public var numControlType: Int
    /// Width of the conditions' feature tokens (`num_trans_channel`; must equal `block_out_channels[0]`).
    public var numTransChannel: Int
    /// Heads of the residual attention blocks (`num_trans_head`).
    public var numTransHead: Int
    /// Residual attention blocks (`num_trans_layer`).
    public var numTransLayer: Int
    /// Output width of `spatial_ch_projs` (`num_proj_channel`; must equal `block_out_channels[0]`).
    public var numProjChannel: Int

    enum CodingKeys: String, CodingKey {
        case numControlType = "num_control_type", numTransChannel = "num_trans_channel", numTransHead = "num_trans_head"
        case numTransLayer = "num_trans_layer", numProjChannel = "num_proj_channel", className = "_class_name"
    }

    /// The union fields with diffusers' defaults, or nil for a plain ControlNet (no `_class_name`
    /// `ControlNetUnionModel` and no `num_control_type`).
    static func decodeIfUnion(from decoder: any Decoder) throws -> ControlNetUnionConfig? {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let className = try c.decodeIfPresent(String.self, forKey: .className)
        guard className == "ControlNetUnionModel" || c.contains(.numControlType) else { return nil }
        return ControlNetUnionConfig(
            numControlType: try c.decodeIfPresent(Int.self, forKey: .numControlType) ?? 6,
            numTransChannel: try c.decodeIfPresent(Int.self, forKey: .numTransChannel) ?? 320,
            numTransHead: try c.decodeIfPresent(Int.self, forKey: .numTransHead) ?? 8,
            numTransLayer: try c.decodeIfPresent(Int.self, forKey: .numTransLayer) ?? 1,
            numProjChannel: try c.decodeIfPresent(Int.self, forKey: .numProjChannel) ?? 320)
    }

    init(numControlType: Int, numTransChannel: Int, numTransHead: Int, numTransLayer: Int, numProjChannel: Int) {
        self.numControlType = numControlType
        self.numTransChannel = numTransChannel
        self.numTransHead = numTransHead
        self.numTransLayer = numTransLayer
        self.numProjChannel = numProjChannel
    }
}

/// One condition of a ControlNet Union call: its prepared image, its type (diffusers `control_mode`) and scale.
public struct ControlNetUnionCondition: Sendable {
    /// NHWC `[B, 8h, 8w, 3]` in [0, 1], RGB.
    public var image: Tensor
    /// Index of the condition type (`control_mode`, below `num_control_type`).
    public var mode: Int
    /// `conditioning_scale` of this condition at this step (its scale times `controlnet_keep`).
    public var scale: Float

    public init(image: Tensor, mode: Int, scale: Float) {
        self.image = image
        self.mode = mode
        self.scale = scale
    }
}

/// diffusers' `ResidualAttentionBlock` of `controlnet_union.py`: `x + attn(ln_1(x))`, `x + mlp(ln_2(x))` with
/// `nn.MultiheadAttention` (packed `in_proj`, no `batch_first`) and a QuickGELU MLP.
struct ResidualAttentionBlock: Sendable {
    let norm1: LayerNorm
    let inProjection: Linear
    let outProjection: Linear
    let norm2: LayerNorm
    let fc: Linear
    let projection: Linear
    let heads: Int

    init(_ scope: ParameterScope, width: Int, heads: Int) throws {
        norm1 = try LayerNorm(scope("ln_1"), dim: width, epsilon: 1e-5)
        let attention = scope("attn")
        inProjection = Linear(weight: try attention.parameter("in_proj_weight", shape: [3 * width, width], role: .linear),
                              bias: try attention.parameter("in_proj_bias", shape: [3 * width], role: .vector))
        outProjection = try Linear(attention("out_proj"), in: width, out: width)
        norm2 = try LayerNorm(scope("ln_2"), dim: width, epsilon: 1e-5)
        fc = try Linear(scope("mlp")("c_fc"), in: width, out: 4 * width)
        projection = try Linear(scope("mlp")("c_proj"), in: 4 * width, out: width)
        self.heads = heads
    }

    /// `x`: `[B, T, C]`, batch-major as diffusers passes it; the attention, built without `batch_first`, reads
    /// it as a sequence of B tokens for each of the T positions, so rows attend to one another per position.
    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        let width = x.shape[2]
        let packed = try b.permute(inProjection(norm1(x, b), b), [1, 0, 2])  // [T, B, 3C]
        let q = try b.slice(packed, axis: 2, range: 0..<width)
        let k = try b.slice(packed, axis: 2, range: width..<(2 * width))
        let v = try b.slice(packed, axis: 2, range: (2 * width)..<(3 * width))
        let scale = 1 / Float(Double(width / heads).squareRoot())
        let attended = try b.permute(b.attention(query: q, key: k, value: v, heads: heads, scale: scale, causal: false), [1, 0, 2])
        let h = try outProjection(attended, b, residual: x)
        return try projection(b.activation(fc(norm2(h, b), b), .quickGELU), b, residual: h)
    }
}

/// The parts a ControlNet Union adds to a ControlNet (`ControlNetUnionModel`): task embeddings, the residual
/// attention blocks over the conditions' mean features, `spatial_ch_projs` and the control-type embedding
/// (`control_type_proj` sinusoids, `control_add_embedding`).
struct ControlNetUnionParts: Sendable {
    let config: ControlNetUnionConfig
    /// `task_embedding` `[num_control_type, num_trans_channel]`, an embedding table.
    let taskEmbedding: Tensor
    let layers: [ResidualAttentionBlock]
    let spatialProjection: Linear
    let controlEmbedding: TimestepEmbedding
    let controlTimeDim: Int

    init(_ root: ParameterScope, config: ControlNetUnionConfig, firstWidth: Int, addTimeEmbedDim: Int, timeEmbedDim: Int) throws {
        let model = ControlNetModel.model
        guard config.numTransChannel == firstWidth, config.numProjChannel == firstWidth else {
            throw ModelError.unsupportedConfig(model: model, field: "num_trans_channel / num_proj_channel",
                                               value: "\(config.numTransChannel) / \(config.numProjChannel) (must equal block_out_channels[0] = \(firstWidth))")
        }
        guard config.numControlType >= 1, config.numTransHead >= 1, config.numTransChannel % config.numTransHead == 0 else {
            throw ModelError.unsupportedConfig(model: model, field: "num_control_type / num_trans_head",
                                               value: "\(config.numControlType) / \(config.numTransHead)")
        }
        guard addTimeEmbedDim > 0 else {
            throw ModelError.unsupportedConfig(model: model, field: "addition_time_embed_dim", value: "none (a union ControlNet embeds its control types with it)")
        }
        self.config = config
        let width = config.numTransChannel
        taskEmbedding = try root.parameter("task_embedding", shape: [config.numControlType, width], role: .embedding)
        layers = try (0..<config.numTransLayer).map {
            try ResidualAttentionBlock(root("transformer_layes", $0), width: width, heads: config.numTransHead)
        }
        spatialProjection = try Linear(root("spatial_ch_projs"), in: width, out: config.numProjChannel)
        controlEmbedding = try TimestepEmbedding(root("control_add_embedding"), inChannels: addTimeEmbedDim * config.numControlType,
                                                 timeEmbedDim: timeEmbedDim, activation: .silu, postActivation: nil, conditionDim: nil)
        controlTimeDim = addTimeEmbedDim
    }

    /// diffusers' `control_type`: 1 at every mode in `modes`, 0 elsewhere.
    func controlType(_ modes: [Int]) -> [Float] {
        var type = [Float](repeating: 0, count: config.numControlType)
        for mode in modes { type[mode] = 1 }
        return type
    }
}

extension ControlNetModel {
    /// Whether this is a ControlNet Union (`ControlNetUnionModel`), whose call is
    /// `callAsFunction(sample:timesteps:encoderHiddenStates:conditions:…)`.
    public var isUnion: Bool { union != nil }

    /// The condition types of a union ControlNet (`num_control_type`), nil for a plain one.
    public var unionControlTypes: Int? { union?.config.numControlType }

    /// A ControlNet Union's residuals for one UNet call (diffusers `ControlNetUnionModel.forward` with
    /// `control_type` from the conditions' modes and `control_type_idx` = the modes): each condition image
    /// embedded, its mean feature plus its task embedding as a token, the latents' mean feature as the last
    /// token, the residual attention blocks over them, then each condition's embedding plus its projected token
    /// added to `conv_in`'s output; the encoder as a ControlNet's. One condition: the outputs scaled by its
    /// scale; several: each condition's token and embedding scaled, the outputs not (so the latents' part
    /// stays when every scale is 0, as in diffusers). `guessMode`: the residuals scaled from 0.1 (first skip) up
    /// to 1 (mid), times the scale for one condition (diffusers `torch.logspace(-1, 0, n + 1)`).
    /// - Parameters:
    ///   - sample, encoderHiddenStates, textEmbeds, timeIDs: as for `callAsFunction(sample:…controlImage:…)`.
    ///   - conditions: at least one, each image `[B, 8h, 8w, 3]`.
    public func callAsFunction(sample: Tensor, timesteps: [Float], encoderHiddenStates: Tensor,
                               conditions: [ControlNetUnionCondition], guessMode: Bool = false, textEmbeds: Tensor?,
                               timeIDs: [Float]?) throws -> ControlNetResiduals {
        guard let union else {
            throw ModelError.invalidInput(model: Self.model, argument: "conditions", message: "not a ControlNet Union (use controlImage:)")
        }
        guard !conditions.isEmpty else {
            throw ModelError.invalidInput(model: Self.model, argument: "conditions", message: "needs at least one condition")
        }
        if let bad = conditions.first(where: { !(0..<union.config.numControlType).contains($0.mode) }) {
            throw ModelError.invalidInput(model: Self.model, argument: "conditions.mode",
                                          message: "\(bad.mode) is not below num_control_type \(union.config.numControlType)")
        }
        let b = backend
        let prepared = try prepare(sample: sample, timesteps: timesteps, encoderHiddenStates: encoderHiddenStates,
                                   controlImages: conditions.map(\.image))
        let batch = prepared.batch, dtype = prepared.dtype
        // emb = time_embedding(t) + control_add_embedding(control_type sinusoids) + add_embedding(text, time ids)
        let inputs = try network.embeddingInputs(timesteps: prepared.steps, textEmbeds: textEmbeds, timeIDs: timeIDs,
                                                 timestepCond: nil, condDim: nil, dtype: dtype, b)
        let type = union.controlType(conditions.map(\.mode))
        let typeFeatures = timestepSinusoids(Array([[Float]](repeating: type, count: batch).joined()), dim: union.controlTimeDim,
                                             flipSinToCos: network.flipSinToCos, downscaleFreqShift: network.freqShift)
        let typeInput = try b.upload(typeFeatures, shape: [batch, union.controlTimeDim * union.config.numControlType], as: dtype)
        var emb = try union.controlEmbedding(typeInput, residual: network.timeEmbedding(inputs.timestep, condition: nil, b), b)
        if let addEmbedding = network.addEmbedding, let added = inputs.added { emb = try addEmbedding(added, residual: emb, b) }
        if let activation = network.timeEmbeddingActivation { emb = try b.activation(emb, activation) }
        let temb = try b.activation(emb, .silu)

        let h0 = try network.convIn(prepared.sample, b)
        let width = h0.shape[3], pixels = h0.shape[1] * h0.shape[2]
        let ones = try b.upload([Float](repeating: 1, count: pixels), shape: [pixels, 1], as: dtype)
        func spatialMean(_ x: Tensor) throws -> Tensor {  // [B, h, w, C] → [B, 1, C] (torch.mean over h, w)
            try b.permute(b.matmul(x.reshaped([batch, pixels, width]), ones, transposeA: true, transposeB: false,
                                   alpha: 1 / Float(pixels)), [0, 2, 1])
        }
        let single = conditions.count == 1
        var tokens: [Tensor] = [], embedded: [Tensor] = []
        for (condition, image) in zip(conditions, prepared.images) {
            var features = try conditioningEmbedding(image, b)
            let task = try b.embedding(union.taskEmbedding, ids: [Int32(condition.mode)], outputDType: dtype).reshaped([1, 1, width])
            var token = try b.binary(spatialMean(features), task, .add)
            if !single {
                token = try b.affine(token, scale: condition.scale, shift: 0)
                features = try b.affine(features, scale: condition.scale, shift: 0)
            }
            tokens.append(token)
            embedded.append(features)
        }
        tokens.append(try spatialMean(h0))
        var x = try b.concat(tokens, axis: 1)  // [B, K + 1, C]
        for layer in union.layers { x = try layer(x, b) }
        var fuser: Tensor?
        for (i, (condition, features)) in zip(conditions, embedded).enumerated() {
            var alpha = try union.spatialProjection(b.slice(x, axis: 1, range: i..<(i + 1)), b)  // [B, 1, C]
            if !single { alpha = try b.affine(alpha, scale: condition.scale, shift: 0) }
            let term = try b.binary(features, alpha.reshaped([batch, 1, 1, width]), .add)
            fuser = try fuser.map { try b.binary($0, term, .add) } ?? term
        }
        var h = h0
        if let fuser { h = try b.binary(h, fuser, .add) }

        let context = CrossAttentionContext(states: prepared.hiddenStates)
        var skips = [h]
        h = try network.downAndMid(h, temb: temb, context: context, skips: &skips, trace: nil, b)
        let scale: Float = single ? conditions[0].scale : 1
        let n = skips.count
        func factor(_ i: Int) -> Float { guessMode ? Float(pow(10.0, -1.0 + Double(i) / Double(n))) * scale : scale }
        func scaled(_ t: Tensor, _ s: Float) throws -> Tensor { s == 1 ? t : try b.affine(t, scale: s, shift: 0) }
        let down = try zip(skips, downBlocks).enumerated().map { i, pair in try scaled(pair.1(pair.0, b), factor(i)) }
        return ControlNetResiduals(down: down, mid: try scaled(midBlock(h, b), factor(n)))
    }
}
