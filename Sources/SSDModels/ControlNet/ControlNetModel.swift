import SSDTensor

/// `config.json` of a ControlNet (diffusers `models/controlnets/controlnet.py`, `ControlNetModel`):
/// the fields it shares with `UNet2DConditionModel` (decoded as a `UNet2DConditionConfig`: the down
/// and mid blocks, embeddings, attention layout) plus its own.
public struct ControlNetConfig: Decodable, Sendable {
    /// The UNet-shaped part (its up-block and output fields are unused).
    public var unet: UNet2DConditionConfig
    /// Channels of the control image (`conditioning_channels`, 3).
    public var conditioningChannels: Int
    /// Widths of the control image's embedding network (`conditioning_embedding_out_channels`).
    public var conditioningEmbeddingOutChannels: [Int]
    /// `"rgb"` or `"bgr"` (`controlnet_conditioning_channel_order`): the order the network expects.
    public var conditioningChannelOrder: String
    /// `global_pool_conditions` (a few SD 1.5 "shuffle" models): not supported here.
    public var globalPoolConditions: Bool
    /// The ControlNet Union fields (`ControlNetUnionModel`), nil for a plain ControlNet.
    public var union: ControlNetUnionConfig?

    enum CodingKeys: String, CodingKey {
        case conditioningChannels = "conditioning_channels"
        case conditioningEmbeddingOutChannels = "conditioning_embedding_out_channels"
        case conditioningChannelOrder = "controlnet_conditioning_channel_order"
        case globalPoolConditions = "global_pool_conditions"
    }

    public init(from decoder: any Decoder) throws {
        unet = try UNet2DConditionConfig(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        conditioningChannels = try c.decodeIfPresent(Int.self, forKey: .conditioningChannels) ?? 3
        conditioningEmbeddingOutChannels = try c.decodeIfPresent([Int].self, forKey: .conditioningEmbeddingOutChannels) ?? [16, 32, 96, 256]
        conditioningChannelOrder = try c.decodeIfPresent(String.self, forKey: .conditioningChannelOrder) ?? "rgb"
        globalPoolConditions = try c.decodeIfPresent(Bool.self, forKey: .globalPoolConditions) ?? false
        union = try ControlNetUnionConfig.decodeIfUnion(from: decoder)
        // (diffusers' ControlNetUnionModel always builds a cross-attention mid block)
        if union != nil { unet.midBlockType = "UNetMidBlock2DCrossAttn" }
    }
}

/// A ControlNet's outputs for one UNet call: one residual per skip connection of the UNet's down
/// pass (NHWC, in order) and one for the mid block's output (diffusers `ControlNetOutput`).
public struct ControlNetResiduals: Sendable {
    public var down: [Tensor]
    public var mid: Tensor

    public init(down: [Tensor], mid: Tensor) {
        self.down = down
        self.mid = mid
    }
}

/// The control image's embedding (diffusers `ControlNetConditioningEmbedding`): 3×3 convolutions with
/// SiLU, stride 2 every second one, then the (trained from zero) `conv_out` to `block_out_channels[0]`.
struct ControlNetConditioningEmbedding: Sendable {
    let convIn: Conv2d
    let blocks: [Conv2d]
    let convOut: Conv2d

    init(_ scope: ParameterScope, conditioningChannels: Int, widths: [Int], outChannels: Int) throws {
        convIn = try Conv2d(scope("conv_in"), in: conditioningChannels, out: widths[0], kernel: 3)
        var blocks: [Conv2d] = []
        for i in 0..<(widths.count - 1) {
            blocks.append(try Conv2d(scope("blocks", 2 * i), in: widths[i], out: widths[i], kernel: 3))
            blocks.append(try Conv2d(scope("blocks", 2 * i + 1), in: widths[i], out: widths[i + 1], kernel: 3, stride: 2))
        }
        self.blocks = blocks
        convOut = try Conv2d(scope("conv_out"), in: widths[widths.count - 1], out: outChannels, kernel: 3)
    }

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        var h = try b.activation(convIn(x, b), .silu)
        for block in blocks { h = try b.activation(block(h, b), .silu) }
        return try convOut(h, b)
    }
}

/// A ControlNet (diffusers `models/controlnets/controlnet.py`, `ControlNetModel`): a copy of the
/// UNet's encoder whose input adds an embedding of the control image, with a 1×1 convolution on each
/// skip connection and on the mid block's output; the UNet adds these residuals to its own
/// (`UNet2DConditionModel.callAsFunction(…controlResiduals:)`). Activations are NHWC.
public final class ControlNetModel: Sendable {
    /// The decoded `config.json`.
    public let config: ControlNetConfig
    /// The backend holding the weights.
    public let backend: any ComputeBackend
    let network: UNetNetwork
    let conditioningEmbedding: ControlNetConditioningEmbedding
    /// `controlnet_down_blocks`: one 1×1 convolution per skip connection.
    let downBlocks: [Conv2d]
    /// `controlnet_mid_block`.
    let midBlock: Conv2d
    /// The parts of a ControlNet Union (`ControlNetUnionModel`), nil for a plain ControlNet.
    let union: ControlNetUnionParts?

    static let model = "ControlNetModel"

    /// Builds the network from `config` with the weights in `weights` (names and shapes checked).
    public init(config: ControlNetConfig, weights: WeightFiles, backend: any ComputeBackend) throws {
        let c = config.unet
        if config.globalPoolConditions {
            throw ModelError.unsupportedConfig(model: Self.model, field: "global_pool_conditions", value: "true")
        }
        if config.union != nil, config.conditioningChannelOrder != "rgb" {
            // (diffusers' ControlNetUnionModel.forward raises for any other order)
            throw ModelError.unsupportedConfig(model: Self.model, field: "controlnet_conditioning_channel_order",
                                               value: "\"\(config.conditioningChannelOrder)\" (a ControlNet Union takes rgb only)")
        }
        guard ["rgb", "bgr"].contains(config.conditioningChannelOrder) else {
            throw ModelError.unsupportedConfig(model: Self.model, field: "controlnet_conditioning_channel_order",
                                               value: "\"\(config.conditioningChannelOrder)\"")
        }
        guard !config.conditioningEmbeddingOutChannels.isEmpty else {
            throw ModelError.unsupportedConfig(model: Self.model, field: "conditioning_embedding_out_channels", value: "[]")
        }
        guard c.midBlockType != nil else {
            throw ModelError.unsupportedConfig(model: Self.model, field: "mid_block_type", value: "null (diffusers' ControlNetModel needs a mid block)")
        }
        guard c.convInKernel == 3 else {
            throw ModelError.unsupportedConfig(model: Self.model, field: "conv_in_kernel", value: "\(c.convInKernel) (ControlNetModel uses 3)")
        }
        let loader = ParameterLoader(model: Self.model, family: .unet, weights: weights, backend: backend, component: .unet)
        let root = loader.root
        network = try UNetNetwork(config: c, scope: root, encoderOnly: true, model: Self.model)
        let first = c.blockOutChannels[0]
        conditioningEmbedding = try ControlNetConditioningEmbedding(
            root("controlnet_cond_embedding"), conditioningChannels: config.conditioningChannels,
            widths: config.conditioningEmbeddingOutChannels, outChannels: first)
        // One per skip: conv_in's output, each resnet of each down block, each downsampler.
        downBlocks = try network.skipChannels.enumerated().map { i, w in try Conv2d(root("controlnet_down_blocks", i), in: w, out: w, kernel: 1) }
        let last = c.blockOutChannels[c.blockOutChannels.count - 1]
        midBlock = try Conv2d(root("controlnet_mid_block"), in: last, out: last, kernel: 1)
        let addTimeEmbedDim = network.addTimeEmbedDim
        union = try config.union.map {
            try ControlNetUnionParts(root, config: $0, firstWidth: first, addTimeEmbedDim: addTimeEmbedDim, timeEmbedDim: first * 4)
        }
        try loader.finish()
        self.config = config
        self.backend = backend
    }

    /// Whether its residuals fit `unet` and it reads the same conditioning: the same skip connections
    /// (channels, in order), the latents the UNet predicts (an inpainting UNet's ControlNet takes the
    /// latents alone), cross-attention width and `text_time` inputs; nil if so,
    /// else what differs (diffusers fails inside the UNet with a shape error).
    public func mismatch(with unet: UNet2DConditionModel) -> String? {
        let mine = config.unet, theirs = unet.config
        if network.skipChannels != unet.network.skipChannels {
            return "skip connections of \(network.skipChannels) channels, the UNet's \(unet.network.skipChannels)"
        }
        if mine.inChannels != theirs.outChannels {
            return "in_channels \(mine.inChannels), the UNet's latents \(theirs.outChannels)"
        }
        if mine.crossAttentionDim != theirs.crossAttentionDim {
            return "cross_attention_dim \(mine.crossAttentionDim), the UNet's \(theirs.crossAttentionDim)"
        }
        if mine.additionEmbedType != theirs.additionEmbedType || mine.additionTimeEmbedDim != theirs.additionTimeEmbedDim
            || mine.projectionClassEmbeddingsInputDim != theirs.projectionClassEmbeddingsInputDim {
            return "added conditioning \(mine.additionEmbedType ?? "none") (\(mine.additionTimeEmbedDim ?? 0), \(mine.projectionClassEmbeddingsInputDim ?? 0)), the UNet's \(theirs.additionEmbedType ?? "none") (\(theirs.additionTimeEmbedDim ?? 0), \(theirs.projectionClassEmbeddingsInputDim ?? 0))"
        }
        return nil
    }

    /// Loads `config.json` and `diffusion_pytorch_model[.variant].safetensors` from a ControlNet folder
    /// (such as `diffusers/controlnet-canny-sdxl-1.0`).
    public static func load(componentDirectory: String, backend: any ComputeBackend, variant: String? = nil) throws -> ControlNetModel {
        let config = try ConfigFile.load(ControlNetConfig.self, path: componentDirectory + "/config.json")
        let weights = try WeightFiles.locate(in: componentDirectory, baseNames: ["diffusion_pytorch_model"], variant: variant)
        return try ControlNetModel(config: config, weights: weights, backend: backend)
    }

    /// The residuals for one UNet call (diffusers `ControlNetModel.forward`, already multiplied by
    /// `conditioningScale`; with `guessMode`, by 10^(−1 + i/n) · scale for the i-th of the n down
    /// residuals and by the scale for the mid one, as diffusers' `torch.logspace(-1, 0, n + 1)`).
    /// - Parameters:
    ///   - sample: NHWC latents `[B, h, w, in_channels]`, as the UNet gets them.
    ///   - controlImage: NHWC `[B, 8h, 8w, conditioning_channels]` in [0, 1], RGB (flipped here for a
    ///     `bgr` network); height and width `2^(embedding levels − 1)` times the latents'.
    ///   - encoderHiddenStates, textEmbeds, timeIDs: as for the UNet.
    public func callAsFunction(sample: Tensor, timesteps: [Float], encoderHiddenStates: Tensor, controlImage: Tensor,
                               conditioningScale: Float, guessMode: Bool = false, textEmbeds: Tensor?,
                               timeIDs: [Float]?) throws -> ControlNetResiduals {
        guard union == nil else {
            throw ModelError.invalidInput(model: Self.model, argument: "controlImage", message: "a ControlNet Union takes conditions: (image, mode, scale)")
        }
        let b = backend
        let prepared = try prepare(sample: sample, timesteps: timesteps, encoderHiddenStates: encoderHiddenStates, controlImages: [controlImage])
        let inputs = try network.embeddingInputs(timesteps: prepared.steps, textEmbeds: textEmbeds, timeIDs: timeIDs, timestepCond: nil,
                                                 condDim: nil, dtype: prepared.dtype, b)
        let temb = try b.activation(network.embedding(inputs, b), .silu)
        let context = CrossAttentionContext(states: prepared.hiddenStates)
        var h = try network.convIn(prepared.sample, b)
        h = try b.binary(h, conditioningEmbedding(prepared.images[0], b), .add)
        var skips = [h]
        h = try network.downAndMid(h, temb: temb, context: context, skips: &skips, trace: nil, b)
        let n = skips.count
        func scale(_ i: Int) -> Float {
            guessMode ? Float(pow(10.0, -1.0 + Double(i) / Double(n))) * conditioningScale : conditioningScale
        }
        func scaled(_ t: Tensor, _ s: Float) throws -> Tensor { s == 1 ? t : try b.affine(t, scale: s, shift: 0) }
        let down = try zip(skips, downBlocks).enumerated().map { i, pair in try scaled(pair.1(pair.0, b), scale(i)) }
        return ControlNetResiduals(down: down, mid: try scaled(midBlock(h, b), scale(n)))
    }

    /// A call's inputs checked and in the activation type: the latents, per-row timesteps, text states and
    /// control images (flipped for a `bgr` network).
    struct PreparedInputs {
        let sample: Tensor
        let steps: [Float]
        let hiddenStates: Tensor
        let images: [Tensor]
        let batch: Int
        let dtype: DType
    }

    func prepare(sample: Tensor, timesteps: [Float], encoderHiddenStates: Tensor, controlImages: [Tensor]) throws -> PreparedInputs {
        let b = backend
        let c = config.unet
        guard sample.rank == 4, sample.shape[3] == c.inChannels else {
            throw ModelError.invalidInput(model: Self.model, argument: "sample", message: "expected NHWC [B, h, w, \(c.inChannels)], got \(sample.shape)")
        }
        let batch = sample.shape[0]
        let factor = 1 << (config.conditioningEmbeddingOutChannels.count - 1)
        for controlImage in controlImages {
            guard controlImage.rank == 4, controlImage.shape == [batch, sample.shape[1] * factor, sample.shape[2] * factor, config.conditioningChannels] else {
                throw ModelError.invalidInput(
                    model: Self.model, argument: "controlImage",
                    message: "expected NHWC [\(batch), \(sample.shape[1] * factor), \(sample.shape[2] * factor), \(config.conditioningChannels)], got \(controlImage.shape)")
            }
        }
        let crossDims: [Int]
        switch c.crossAttentionDim { case let .one(d): crossDims = [d]; case let .many(list): crossDims = list }
        guard encoderHiddenStates.rank == 3, encoderHiddenStates.shape[0] == batch, crossDims.contains(encoderHiddenStates.shape[2]) else {
            throw ModelError.invalidInput(model: Self.model, argument: "encoderHiddenStates",
                                          message: "expected [\(batch), T, \(crossDims[0])] (cross_attention_dim), got \(encoderHiddenStates.shape)")
        }
        let steps: [Float]
        switch timesteps.count {
        case batch: steps = timesteps
        case 1: steps = Array(repeating: timesteps[0], count: batch)
        default:
            throw ModelError.invalidInput(model: Self.model, argument: "timesteps", message: "expected \(batch) values (one per batch row), got \(timesteps.count)")
        }
        let dtype = b.activationDType(for: .unet)
        func converted(_ t: Tensor) throws -> Tensor { t.dtype == dtype ? t : try b.convert(t, to: dtype) }
        let images = try controlImages.map { controlImage in
            var image = try converted(controlImage)
            if config.conditioningChannelOrder == "bgr" {
                let channels = try (0..<config.conditioningChannels).reversed().map { try b.slice(image, axis: 3, range: $0..<($0 + 1)) }
                image = try b.concat(channels, axis: 3)
            }
            return image
        }
        return PreparedInputs(sample: try converted(sample), steps: steps, hiddenStates: try converted(encoderHiddenStates),
                              images: images, batch: batch, dtype: dtype)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
