import SSDTensor

/// The KL autoencoder of SDXL (diffusers `models/autoencoders/autoencoder_kl.py`, `AutoencoderKL`).
/// Images and latents are NHWC. The backend's activation type for the VAE follows
/// `force_upcast` (fp32 unless the config allows less, DESIGN.md §3).
public final class AutoencoderKL: Sendable {
    /// The decoded `config.json` (`scalingFactor`, `forceUpcast`, …).
    public let config: AutoencoderKLConfig
    /// The backend holding the weights.
    public let backend: any ComputeBackend
    let encoder: VAEEncoder
    let decoder: VAEDecoder
    let quantConv: Conv2d?
    let postQuantConv: Conv2d?

    static let model = "AutoencoderKL"

    /// The `ModelComponent` this VAE's weights and activations belong to.
    public var component: ModelComponent { .vae(forceUpcast: config.forceUpcast) }

    /// Builds encoder and decoder from `config` with the weights in `weights` (names and shapes checked).
    public init(config: AutoencoderKLConfig, weights: WeightFiles, backend: any ComputeBackend) throws {
        let loader = ParameterLoader(model: Self.model, family: .vae, weights: weights, backend: backend,
                                     component: .vae(forceUpcast: config.forceUpcast))
        (encoder, decoder, quantConv, postQuantConv) = try Self.build(config: config, scope: loader.root)
        try loader.finish()
        self.config = config
        self.backend = backend
    }

    /// Loads `config.json` and `diffusion_pytorch_model[.variant].safetensors` from a component folder.
    public static func load(componentDirectory: String, backend: any ComputeBackend, variant: String? = nil) throws -> AutoencoderKL {
        let config = try ConfigFile.load(AutoencoderKLConfig.self, path: componentDirectory + "/config.json")
        let weights = try WeightFiles.locate(in: componentDirectory, baseNames: ["diffusion_pytorch_model"], variant: variant)
        return try AutoencoderKL(config: config, weights: weights, backend: backend)
    }

    /// The parameters `config` implies, in diffusers' `state_dict` names.
    public static func parameterSpecs(config: AutoencoderKLConfig) throws -> [ParameterSpec] {
        let loader = ParameterLoader(describing: model, family: .vae)
        _ = try build(config: config, scope: loader.root)
        return loader.specs
    }

    private static func build(config c: AutoencoderKLConfig, scope: ParameterScope) throws
        -> (VAEEncoder, VAEDecoder, Conv2d?, Conv2d?) {
        func unsupported(_ field: String, _ value: String) -> ModelError {
            .unsupportedConfig(model: model, field: field, value: value)
        }
        let n = c.blockOutChannels.count
        guard n > 0 else { throw unsupported("block_out_channels", "[]") }
        if let bad = c.downBlockTypes.first(where: { $0 != "DownEncoderBlock2D" }) { throw unsupported("down_block_types", "\"\(bad)\"") }
        if let bad = c.upBlockTypes.first(where: { $0 != "UpDecoderBlock2D" }) { throw unsupported("up_block_types", "\"\(bad)\"") }
        guard c.downBlockTypes.count == n else { throw unsupported("down_block_types", "\(c.downBlockTypes) (needs \(n) entries)") }
        guard c.upBlockTypes.count == n else { throw unsupported("up_block_types", "\(c.upBlockTypes) (needs \(n) entries)") }
        if c.actFn != "silu" && c.actFn != "swish" { throw unsupported("act_fn", "\"\(c.actFn)\"") }
        guard c.normNumGroups > 0, c.blockOutChannels.allSatisfy({ $0 % c.normNumGroups == 0 }) else {
            throw unsupported("norm_num_groups", "\(c.normNumGroups) (must divide every block_out_channels entry)")
        }
        let latent = c.latentChannels
        return (try VAEEncoder(config: c, scope: scope("encoder")),
                try VAEDecoder(config: c, scope: scope("decoder")),
                c.useQuantConv ? try Conv2d(scope("quant_conv"), in: 2 * latent, out: 2 * latent, kernel: 1) : nil,
                c.usePostQuantConv ? try Conv2d(scope("post_quant_conv"), in: latent, out: latent, kernel: 1) : nil)
    }

    /// Decodes NHWC latents `[B, h, w, latent_channels]` (already divided by the scaling factor)
    /// to NHWC images `[B, 8h, 8w, out_channels]` in about [-1, 1] (`post_quant_conv` + decoder).
    public func decode(_ latents: Tensor) throws -> Tensor {
        try decode(latents, trace: nil)
    }

    /// `decode` in overlapping tiles when `tiling` is set and the latents are larger than one tile
    /// (diffusers `enable_tiling()` + `decode`, `tiled_decode`); otherwise the same as `decode(_:)`.
    public func decode(_ latents: Tensor, tiling: VAETiling?) throws -> Tensor {
        guard let tiling else { return try decode(latents, trace: nil) }
        let tile = try tiling.sizes(config: config).latent
        guard latents.rank == 4, latents.shape[1] > tile || latents.shape[2] > tile else {
            return try decode(latents, trace: nil)
        }
        let geometry = try tiling.decodeGeometry(config: config)
        let (values, shape) = try blendTiles(latents, geometry, backend: backend) { try decode($0, trace: nil) }
        return try backend.upload(values, shape: shape, as: backend.activationDType(for: component))
    }

    func decode(_ latents: Tensor, trace: ForwardTrace?) throws -> Tensor {
        let b = backend
        guard latents.rank == 4, latents.shape[3] == config.latentChannels else {
            throw ModelError.invalidInput(model: Self.model, argument: "latents",
                                          message: "expected NHWC [B, h, w, \(config.latentChannels)], got \(latents.shape)")
        }
        let dtype = b.activationDType(for: component)
        var z = latents.dtype == dtype ? latents : try b.convert(latents, to: dtype)
        if let postQuantConv { z = try postQuantConv(z, b) }
        return try decoder(z, trace: trace, b)
    }

    /// Encodes NHWC images `[B, H, W, in_channels]` in [-1, 1] to the latent distribution:
    /// NHWC mean and log variance `[B, H/8, W/8, latent_channels]` (encoder + `quant_conv`), the log
    /// variance clamped to [-30, 20] as diffusers' `DiagonalGaussianDistribution` does.
    public func encode(_ image: Tensor) throws -> (mean: Tensor, logVariance: Tensor) {
        try encode(image, tiling: nil)
    }

    /// `encode` in overlapping tiles when `tiling` is set and the image is larger than one tile
    /// (diffusers `enable_tiling()` + `encode`, `_tiled_encode`); otherwise the same as `encode(_:)`.
    public func encode(_ image: Tensor, tiling: VAETiling?) throws -> (mean: Tensor, logVariance: Tensor) {
        let b = backend
        guard image.rank == 4, image.shape[3] == config.inChannels else {
            throw ModelError.invalidInput(model: Self.model, argument: "image",
                                          message: "expected NHWC [B, H, W, \(config.inChannels)], got \(image.shape)")
        }
        let dtype = b.activationDType(for: component)
        let x = image.dtype == dtype ? image : try b.convert(image, to: dtype)
        let moments: Tensor
        if let tiling, case let tile = try tiling.sizes(config: config).sample, x.shape[1] > tile || x.shape[2] > tile {
            let (values, shape) = try blendTiles(x, try tiling.encodeGeometry(config: config), backend: b) { try self.moments($0) }
            moments = try b.upload(values, shape: shape, as: dtype)
        } else {
            moments = try self.moments(x)
        }
        let latent = config.latentChannels
        let mean = try b.slice(moments, axis: 3, range: 0..<latent)
        let rawLogVariance = try b.slice(moments, axis: 3, range: latent..<(2 * latent))
        // Clamp on the host: a latent-sized tensor, and the protocol has no clamp op.
        let clamped = try b.download(rawLogVariance).map { min(max($0, -30), 20) }
        let logVariance = try b.upload(clamped, shape: rawLogVariance.shape, as: rawLogVariance.dtype)
        return (mean, logVariance)
    }

    /// Encoder + `quant_conv`: NHWC `[B, H/f, W/f, 2 × latent_channels]` (diffusers `_encode`).
    private func moments(_ x: Tensor) throws -> Tensor {
        let moments = try encoder(x, backend)
        return try quantConv.map { try $0(moments, backend) } ?? moments
    }
}
