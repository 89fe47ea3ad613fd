import SSDTensor

/// The `config.json` of diffusers' `AutoencoderTiny` (`models/autoencoders/autoencoder_tiny.py`): TAESD /
/// TAESDXL (`madebyollin/taesdxl`), a small distilled VAE used for step previews.
public struct AutoencoderTinyConfig: Codable, Sendable, Equatable {
    /// `in_channels` / `out_channels` (RGB).
    public var inChannels = 3, outChannels = 3
    /// `latent_channels`.
    public var latentChannels = 4
    /// `encoder_block_out_channels` / `decoder_block_out_channels`.
    public var encoderBlockOutChannels = [64, 64, 64, 64], decoderBlockOutChannels = [64, 64, 64, 64]
    /// `num_encoder_blocks` / `num_decoder_blocks` (`AutoencoderTinyBlock`s per level).
    public var numEncoderBlocks = [1, 3, 3, 3], numDecoderBlocks = [3, 3, 3, 1]
    /// `act_fn` (only `relu`), `upsample_fn` (only `nearest`), `upsampling_scaling_factor` (only 2).
    public var actFn = "relu", upsampleFn = "nearest", upsamplingScalingFactor = 2
    /// `scaling_factor`: pipelines divide latents by it before decoding (1 for TAESDXL). (`force_upcast`
    /// is not read: diffusers' `AutoencoderTiny` always sets it false.)
    public var scalingFactor = 1.0

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels", outChannels = "out_channels", latentChannels = "latent_channels"
        case encoderBlockOutChannels = "encoder_block_out_channels", decoderBlockOutChannels = "decoder_block_out_channels"
        case numEncoderBlocks = "num_encoder_blocks", numDecoderBlocks = "num_decoder_blocks"
        case actFn = "act_fn", upsampleFn = "upsample_fn", upsamplingScalingFactor = "upsampling_scaling_factor"
        case scalingFactor = "scaling_factor"
    }

    /// diffusers' defaults (TAESD's architecture).
    public init() {}

    public init(from decoder: any Decoder) throws {
        let d = AutoencoderTinyConfig()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        inChannels = try c.value(.inChannels, default: d.inChannels)
        outChannels = try c.value(.outChannels, default: d.outChannels)
        latentChannels = try c.value(.latentChannels, default: d.latentChannels)
        encoderBlockOutChannels = try c.value(.encoderBlockOutChannels, default: d.encoderBlockOutChannels)
        decoderBlockOutChannels = try c.value(.decoderBlockOutChannels, default: d.decoderBlockOutChannels)
        numEncoderBlocks = try c.value(.numEncoderBlocks, default: d.numEncoderBlocks)
        numDecoderBlocks = try c.value(.numDecoderBlocks, default: d.numDecoderBlocks)
        actFn = try c.value(.actFn, default: d.actFn)
        upsampleFn = try c.value(.upsampleFn, default: d.upsampleFn)
        upsamplingScalingFactor = try c.value(.upsamplingScalingFactor, default: d.upsamplingScalingFactor)
        scalingFactor = try c.value(.scalingFactor, default: d.scalingFactor)
    }
}

/// diffusers `AutoencoderTiny` (TAESD / TAESDXL): `EncoderTiny` and `DecoderTiny` of plain 3×3
/// convolutions, ReLUs and `AutoencoderTinyBlock`s (`models/autoencoders/vae.py`,
/// `models/unets/unet_2d_blocks.py`). Images and latents are NHWC.
public final class AutoencoderTiny: Sendable {
    /// The decoded `config.json`.
    public let config: AutoencoderTinyConfig
    /// The backend holding the weights.
    public let backend: any ComputeBackend
    private let encoderLayers: [TinyLayer]
    private let decoderLayers: [TinyLayer]

    static let model = "AutoencoderTiny"

    /// The `ModelComponent` its weights and activations belong to.
    public var component: ModelComponent { .vae(forceUpcast: false) }

    /// Builds encoder and decoder from `config` with the weights in `weights` (names and shapes checked).
    public init(config: AutoencoderTinyConfig, weights: WeightFiles, backend: any ComputeBackend) throws {
        func unsupported(_ field: String, _ value: String) -> ModelError {
            .unsupportedConfig(model: Self.model, field: field, value: value)
        }
        guard config.actFn == "relu" else { throw unsupported("act_fn", "\"\(config.actFn)\"") }
        guard config.upsampleFn == "nearest" else { throw unsupported("upsample_fn", "\"\(config.upsampleFn)\"") }
        guard config.upsamplingScalingFactor == 2 else { throw unsupported("upsampling_scaling_factor", "\(config.upsamplingScalingFactor)") }
        guard !config.decoderBlockOutChannels.isEmpty, config.decoderBlockOutChannels.count == config.numDecoderBlocks.count else {
            throw unsupported("num_decoder_blocks", "\(config.numDecoderBlocks) (needs one entry per decoder_block_out_channels)")
        }
        guard !config.encoderBlockOutChannels.isEmpty, config.encoderBlockOutChannels.count == config.numEncoderBlocks.count else {
            throw unsupported("num_encoder_blocks", "\(config.numEncoderBlocks) (needs one entry per encoder_block_out_channels)")
        }
        let loader = ParameterLoader(model: Self.model, family: .vae, weights: weights, backend: backend,
                                     component: .vae(forceUpcast: false))
        encoderLayers = try Self.encoder(config, loader.root("encoder")("layers"))
        decoderLayers = try Self.decoder(config, loader.root("decoder")("layers"))
        try loader.finish()
        self.config = config
        self.backend = backend
    }

    /// Loads `config.json` and `diffusion_pytorch_model[.variant].safetensors` from a folder such as a
    /// download of `madebyollin/taesdxl`.
    public static func load(componentDirectory: String, backend: any ComputeBackend, variant: String? = nil) throws -> AutoencoderTiny {
        let config = try ConfigFile.load(AutoencoderTinyConfig.self, path: componentDirectory + "/config.json")
        let weights = try WeightFiles.locate(in: componentDirectory, baseNames: ["diffusion_pytorch_model"], variant: variant)
        return try AutoencoderTiny(config: config, weights: weights, backend: backend)
    }

    /// `EncoderTiny.layers`: a 3×3 convolution per level (stride 2 and no bias after the first), its
    /// blocks, then a 3×3 convolution to the latent channels.
    private static func encoder(_ c: AutoencoderTinyConfig, _ scope: ParameterScope) throws -> [TinyLayer] {
        var layers: [TinyLayer] = []
        func index() -> ParameterScope { scope(String(layers.count)) }
        for (level, blocks) in c.numEncoderBlocks.enumerated() {
            let channels = c.encoderBlockOutChannels[level]
            layers.append(level == 0
                ? .conv(try TinyConv(index(), in: c.inChannels, out: channels, stride: 1, bias: true))
                : .conv(try TinyConv(index(), in: channels, out: channels, stride: 2, bias: false)))
            for _ in 0..<blocks { layers.append(.block(try TinyBlock(index(), channels: channels))) }
        }
        layers.append(.conv(try TinyConv(index(), in: c.encoderBlockOutChannels.last!, out: c.latentChannels, stride: 1, bias: true)))
        return layers
    }

    /// `DecoderTiny.layers`: a 3×3 convolution and ReLU, then per level its blocks, a ×2 nearest
    /// upsampling (not after the last) and a 3×3 convolution (with bias, to RGB, only the last).
    private static func decoder(_ c: AutoencoderTinyConfig, _ scope: ParameterScope) throws -> [TinyLayer] {
        var layers: [TinyLayer] = []
        func index() -> ParameterScope { scope(String(layers.count)) }
        layers.append(.conv(try TinyConv(index(), in: c.latentChannels, out: c.decoderBlockOutChannels[0], stride: 1, bias: true)))
        layers.append(.relu)
        for (level, blocks) in c.numDecoderBlocks.enumerated() {
            let channels = c.decoderBlockOutChannels[level]
            let last = level == c.numDecoderBlocks.count - 1
            for _ in 0..<blocks { layers.append(.block(try TinyBlock(index(), channels: channels))) }
            if !last { layers.append(.upsample) }
            layers.append(.conv(try TinyConv(index(), in: channels, out: last ? c.outChannels : channels, stride: 1, bias: last)))
        }
        return layers
    }

    /// Decodes NHWC latents `[B, h, w, latent_channels]` (already divided by `scaling_factor`) to NHWC
    /// images in [-1, 1] (`DecoderTiny.forward`: `tanh(x / 3) · 3`, the layers, `· 2 − 1`).
    public func decode(_ latents: Tensor) throws -> Tensor {
        let b = backend
        var x = try input(latents, argument: "latents", channels: config.latentChannels)
        x = try b.affine(b.activation(b.affine(x, scale: 1.0 / 3, shift: 0), .tanh), scale: 3, shift: 0)
        for layer in decoderLayers { x = try layer(x, b) }
        return try b.affine(x, scale: 2, shift: -1)
    }

    /// Encodes NHWC images `[B, H, W, in_channels]` in [-1, 1] to latents `[B, H/8, W/8, latent_channels]`
    /// (`EncoderTiny.forward`: the layers on `(x + 1) / 2`).
    public func encode(_ image: Tensor) throws -> Tensor {
        var x = try backend.affine(input(image, argument: "image", channels: config.inChannels), scale: 0.5, shift: 0.5)
        for layer in encoderLayers { x = try layer(x, backend) }
        return x
    }

    /// `x` checked to be NHWC with `channels` channels, in the activation type.
    private func input(_ x: Tensor, argument: String, channels: Int) throws -> Tensor {
        guard x.rank == 4, x.shape[3] == channels else {
            throw ModelError.invalidInput(model: Self.model, argument: argument, message: "expected NHWC [B, H, W, \(channels)], got \(x.shape)")
        }
        let dtype = backend.activationDType(for: component)
        return x.dtype == dtype ? x : try backend.convert(x, to: dtype)
    }
}

/// One element of `EncoderTiny.layers` / `DecoderTiny.layers` (its index names its parameters).
private enum TinyLayer: Sendable {
    case conv(TinyConv)
    case block(TinyBlock)
    case relu
    case upsample

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        switch self {
        case .conv(let conv): return try conv(x, b)
        case .block(let block): return try block(x, b)
        case .relu: return try b.activation(x, .relu)
        case .upsample: return try b.upsampleNearest2x(x)
        }
    }
}

/// `nn.Conv2d(kernel_size=3, padding=1)`, with or without bias.
private struct TinyConv: Sendable {
    let weight: Tensor
    let bias: Tensor?
    let stride: Int

    init(_ scope: ParameterScope, in inChannels: Int, out outChannels: Int, stride: Int, bias: Bool) throws {
        weight = try scope.parameter("weight", shape: [outChannels, inChannels, 3, 3], role: .conv2d)
        self.bias = bias ? try scope.parameter("bias", shape: [outChannels], role: .vector) : nil
        self.stride = stride
    }

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend, residual: Tensor? = nil) throws -> Tensor {
        try b.conv2d(x, weight: weight, bias: bias, stride: stride, padding: 1, residual: residual)
    }
}

/// diffusers `AutoencoderTinyBlock` with equal in and out channels (as TAESD's): `relu(conv(x) + x)`,
/// `conv` = 3×3, ReLU, 3×3, ReLU, 3×3 (`conv.0`, `conv.2`, `conv.4`).
private struct TinyBlock: Sendable {
    let first: TinyConv, second: TinyConv, third: TinyConv

    init(_ scope: ParameterScope, channels: Int) throws {
        first = try TinyConv(scope("conv")("0"), in: channels, out: channels, stride: 1, bias: true)
        second = try TinyConv(scope("conv")("2"), in: channels, out: channels, stride: 1, bias: true)
        third = try TinyConv(scope("conv")("4"), in: channels, out: channels, stride: 1, bias: true)
    }

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        let h = try b.activation(second(b.activation(first(x, b), .relu), b), .relu)
        return try b.activation(third(h, b, residual: x), .relu)
    }
}
