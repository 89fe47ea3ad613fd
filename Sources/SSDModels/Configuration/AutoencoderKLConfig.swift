/// `config.json` of a diffusers `AutoencoderKL` (diffusers `models/autoencoders/autoencoder_kl.py`).
/// Absent keys take diffusers' defaults.
public struct AutoencoderKLConfig: Codable, Sendable, Equatable {
    /// `in_channels`.
    public var inChannels: Int
    /// `out_channels`.
    public var outChannels: Int
    /// `down_block_types`.
    public var downBlockTypes: [String]
    /// `up_block_types`.
    public var upBlockTypes: [String]
    /// `block_out_channels`.
    public var blockOutChannels: [Int]
    /// `layers_per_block`.
    public var layersPerBlock: Int
    /// `silu`.
    public var actFn: String
    /// `latent_channels`.
    public var latentChannels: Int
    /// `norm_num_groups`.
    public var normNumGroups: Int
    /// `sample_size`.
    public var sampleSize: OneOrMany<Int>?
    /// Latents are multiplied by this after encoding and divided by it before decoding (SDXL: 0.13025).
    public var scalingFactor: Double
    /// `shift_factor`.
    public var shiftFactor: Double?
    /// `latents_mean`.
    public var latentsMean: [Double]?
    /// `latents_std`.
    public var latentsStd: [Double]?
    /// The VAE must run in fp32 (the original SDXL VAE overflows in fp16).
    public var forceUpcast: Bool
    /// `use_quant_conv`.
    public var useQuantConv: Bool
    /// `use_post_quant_conv`.
    public var usePostQuantConv: Bool
    /// `mid_block_add_attention`.
    public var midBlockAddAttention: Bool

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels", outChannels = "out_channels", downBlockTypes = "down_block_types"
        case upBlockTypes = "up_block_types", blockOutChannels = "block_out_channels"
        case layersPerBlock = "layers_per_block", actFn = "act_fn", latentChannels = "latent_channels"
        case normNumGroups = "norm_num_groups", sampleSize = "sample_size", scalingFactor = "scaling_factor"
        case shiftFactor = "shift_factor", latentsMean = "latents_mean", latentsStd = "latents_std"
        case forceUpcast = "force_upcast", useQuantConv = "use_quant_conv", usePostQuantConv = "use_post_quant_conv"
        case midBlockAddAttention = "mid_block_add_attention"
    }

    /// diffusers' defaults.
    public init() {
        inChannels = 3; outChannels = 3; downBlockTypes = ["DownEncoderBlock2D"]; upBlockTypes = ["UpDecoderBlock2D"]
        blockOutChannels = [64]; layersPerBlock = 1; actFn = "silu"; latentChannels = 4; normNumGroups = 32
        sampleSize = .one(32); scalingFactor = 0.18215; shiftFactor = nil; latentsMean = nil; latentsStd = nil
        forceUpcast = true; useQuantConv = true; usePostQuantConv = true; midBlockAddAttention = true
    }

    /// The SDXL VAE (`stabilityai/stable-diffusion-xl-base-1.0/vae`), spec §4.1.
    public static var sdxl: AutoencoderKLConfig {
        var c = AutoencoderKLConfig()
        c.downBlockTypes = Array(repeating: "DownEncoderBlock2D", count: 4)
        c.upBlockTypes = Array(repeating: "UpDecoderBlock2D", count: 4)
        c.blockOutChannels = [128, 256, 512, 512]
        c.layersPerBlock = 2
        c.sampleSize = .one(1024)
        c.scalingFactor = 0.13025
        return c
    }

    public init(from decoder: any Decoder) throws {
        let d = AutoencoderKLConfig()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        inChannels = try c.value(.inChannels, default: d.inChannels)
        outChannels = try c.value(.outChannels, default: d.outChannels)
        downBlockTypes = try c.value(.downBlockTypes, default: d.downBlockTypes)
        upBlockTypes = try c.value(.upBlockTypes, default: d.upBlockTypes)
        blockOutChannels = try c.value(.blockOutChannels, default: d.blockOutChannels)
        layersPerBlock = try c.value(.layersPerBlock, default: d.layersPerBlock)
        actFn = try c.value(.actFn, default: d.actFn)
        latentChannels = try c.value(.latentChannels, default: d.latentChannels)
        normNumGroups = try c.value(.normNumGroups, default: d.normNumGroups)
        sampleSize = try c.nullable(.sampleSize, default: d.sampleSize)
        scalingFactor = try c.value(.scalingFactor, default: d.scalingFactor)
        shiftFactor = try c.nullable(.shiftFactor, default: nil)
        latentsMean = try c.nullable(.latentsMean, default: nil)
        latentsStd = try c.nullable(.latentsStd, default: nil)
        forceUpcast = try c.value(.forceUpcast, default: d.forceUpcast)
        useQuantConv = try c.value(.useQuantConv, default: d.useQuantConv)
        usePostQuantConv = try c.value(.usePostQuantConv, default: d.usePostQuantConv)
        midBlockAddAttention = try c.value(.midBlockAddAttention, default: d.midBlockAddAttention)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(inChannels, forKey: .inChannels)
        try c.encode(outChannels, forKey: .outChannels)
        try c.encode(downBlockTypes, forKey: .downBlockTypes)
        try c.encode(upBlockTypes, forKey: .upBlockTypes)
        try c.encode(blockOutChannels, forKey: .blockOutChannels)
        try c.encode(layersPerBlock, forKey: .layersPerBlock)
        try c.encode(actFn, forKey: .actFn)
        try c.encode(latentChannels, forKey: .latentChannels)
        try c.encode(normNumGroups, forKey: .normNumGroups)
        try c.encodeNullable(sampleSize, forKey: .sampleSize)
        try c.encode(scalingFactor, forKey: .scalingFactor)
        try c.encodeNullable(shiftFactor, forKey: .shiftFactor)
        try c.encodeNullable(latentsMean, forKey: .latentsMean)
        try c.encodeNullable(latentsStd, forKey: .latentsStd)
        try c.encode(forceUpcast, forKey: .forceUpcast)
        try c.encode(useQuantConv, forKey: .useQuantConv)
        try c.encode(usePostQuantConv, forKey: .usePostQuantConv)
        try c.encode(midBlockAddAttention, forKey: .midBlockAddAttention)
    }
}
