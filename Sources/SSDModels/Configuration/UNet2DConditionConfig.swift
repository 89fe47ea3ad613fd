/// `config.json` of a diffusers `UNet2DConditionModel` (diffusers `models/unets/unet_2d_condition.py`).
///
/// Absent keys take diffusers' `__init__` defaults; explicit `null`s are kept (e.g.
/// `mid_block_type: null` means no mid block). Only the SDXL family of blocks is supported;
/// `UNet2DConditionModel` rejects other architecture-changing values with
/// `ModelError.unsupportedConfig` naming the field.
public struct UNet2DConditionConfig: Codable, Sendable, Equatable {
    /// `sample_size`.
    public var sampleSize: OneOrMany<Int>?
    /// `in_channels`.
    public var inChannels: Int
    /// `out_channels`.
    public var outChannels: Int
    /// `center_input_sample`.
    public var centerInputSample: Bool
    /// `flip_sin_to_cos`.
    public var flipSinToCos: Bool
    /// `freq_shift`.
    public var freqShift: Double
    /// `down_block_types`.
    public var downBlockTypes: [String]
    /// `UNetMidBlock2DCrossAttn`.
    public var midBlockType: String?
    /// `up_block_types`.
    public var upBlockTypes: [String]
    /// `only_cross_attention`.
    public var onlyCrossAttention: OneOrMany<Bool>
    /// `block_out_channels`.
    public var blockOutChannels: [Int]
    /// `layers_per_block`.
    public var layersPerBlock: OneOrMany<Int>
    /// `downsample_padding`.
    public var downsamplePadding: Int
    /// `mid_block_scale_factor`.
    public var midBlockScaleFactor: Double
    /// `silu`.
    public var actFn: String
    /// `norm_num_groups`.
    public var normNumGroups: Int?
    /// `norm_eps`.
    public var normEps: Double
    /// `cross_attention_dim`.
    public var crossAttentionDim: OneOrMany<Int>
    /// Int, a list per level, or a list of lists (per level, per layer).
    public var transformerLayersPerBlock: OneOrMany<OneOrMany<Int>>
    /// Per up block: an int or a list per layer (asymmetric UNets such as SSD-1B).
    public var reverseTransformerLayersPerBlock: OneOrMany<OneOrMany<Int>>?
    /// `encoder_hid_dim`.
    public var encoderHidDim: Int?
    /// `encoder_hid_dim_type`.
    public var encoderHidDimType: String?
    /// The number of attention heads in this model family (diffusers' naming quirk).
    public var attentionHeadDim: OneOrMany<Int>
    /// `num_attention_heads`.
    public var numAttentionHeads: OneOrMany<Int>?
    /// `dual_cross_attention`.
    public var dualCrossAttention: Bool
    /// `use_linear_projection`.
    public var useLinearProjection: Bool
    /// `class_embed_type`.
    public var classEmbedType: String?
    /// `addition_embed_type`.
    public var additionEmbedType: String?
    /// `addition_time_embed_dim`.
    public var additionTimeEmbedDim: Int?
    /// `num_class_embeds`.
    public var numClassEmbeds: Int?
    /// `upcast_attention`.
    public var upcastAttention: Bool
    /// `default`.
    public var resnetTimeScaleShift: String
    /// `resnet_skip_time_act`.
    public var resnetSkipTimeAct: Bool
    /// `resnet_out_scale_factor`.
    public var resnetOutScaleFactor: Double
    /// `positional`.
    public var timeEmbeddingType: String
    /// `time_embedding_dim`.
    public var timeEmbeddingDim: Int?
    /// `time_embedding_act_fn`.
    public var timeEmbeddingActFn: String?
    /// `timestep_post_act`.
    public var timestepPostAct: String?
    /// Width of the guidance embedding of LCM-distilled UNets (`timestep_cond`).
    public var timeCondProjDim: Int?
    /// `conv_in_kernel`.
    public var convInKernel: Int
    /// `conv_out_kernel`.
    public var convOutKernel: Int
    /// `projection_class_embeddings_input_dim`.
    public var projectionClassEmbeddingsInputDim: Int?
    /// `default`.
    public var attentionType: String
    /// `class_embeddings_concat`.
    public var classEmbeddingsConcat: Bool
    /// `mid_block_only_cross_attention`.
    public var midBlockOnlyCrossAttention: Bool?
    /// `cross_attention_norm`.
    public var crossAttentionNorm: String?
    /// `addition_embed_type_num_heads`.
    public var additionEmbedTypeNumHeads: Int

    enum CodingKeys: String, CodingKey {
        case sampleSize = "sample_size", inChannels = "in_channels", outChannels = "out_channels"
        case centerInputSample = "center_input_sample", flipSinToCos = "flip_sin_to_cos", freqShift = "freq_shift"
        case downBlockTypes = "down_block_types", midBlockType = "mid_block_type", upBlockTypes = "up_block_types"
        case onlyCrossAttention = "only_cross_attention", blockOutChannels = "block_out_channels"
        case layersPerBlock = "layers_per_block", downsamplePadding = "downsample_padding"
        case midBlockScaleFactor = "mid_block_scale_factor", actFn = "act_fn", normNumGroups = "norm_num_groups"
        case normEps = "norm_eps", crossAttentionDim = "cross_attention_dim"
        case transformerLayersPerBlock = "transformer_layers_per_block"
        case reverseTransformerLayersPerBlock = "reverse_transformer_layers_per_block"
        case encoderHidDim = "encoder_hid_dim", encoderHidDimType = "encoder_hid_dim_type"
        case attentionHeadDim = "attention_head_dim", numAttentionHeads = "num_attention_heads"
        case dualCrossAttention = "dual_cross_attention", useLinearProjection = "use_linear_projection"
        case classEmbedType = "class_embed_type", additionEmbedType = "addition_embed_type"
        case additionTimeEmbedDim = "addition_time_embed_dim", numClassEmbeds = "num_class_embeds"
        case upcastAttention = "upcast_attention", resnetTimeScaleShift = "resnet_time_scale_shift"
        case resnetSkipTimeAct = "resnet_skip_time_act", resnetOutScaleFactor = "resnet_out_scale_factor"
        case timeEmbeddingType = "time_embedding_type", timeEmbeddingDim = "time_embedding_dim"
        case timeEmbeddingActFn = "time_embedding_act_fn", timestepPostAct = "timestep_post_act"
        case timeCondProjDim = "time_cond_proj_dim", convInKernel = "conv_in_kernel", convOutKernel = "conv_out_kernel"
        case projectionClassEmbeddingsInputDim = "projection_class_embeddings_input_dim"
        case attentionType = "attention_type", classEmbeddingsConcat = "class_embeddings_concat"
        case midBlockOnlyCrossAttention = "mid_block_only_cross_attention"
        case crossAttentionNorm = "cross_attention_norm", additionEmbedTypeNumHeads = "addition_embed_type_num_heads"
    }

    /// A config with diffusers' defaults (the SD 1.x layout), to be adjusted field by field.
    public init() {
        sampleSize = nil; inChannels = 4; outChannels = 4; centerInputSample = false; flipSinToCos = true
        freqShift = 0
        downBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
        midBlockType = "UNetMidBlock2DCrossAttn"
        upBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
        onlyCrossAttention = .one(false); blockOutChannels = [320, 640, 1280, 1280]; layersPerBlock = .one(2)
        downsamplePadding = 1; midBlockScaleFactor = 1; actFn = "silu"; normNumGroups = 32; normEps = 1e-5
        crossAttentionDim = .one(1280); transformerLayersPerBlock = .one(.one(1)); reverseTransformerLayersPerBlock = nil
        encoderHidDim = nil; encoderHidDimType = nil; attentionHeadDim = .one(8); numAttentionHeads = nil
        dualCrossAttention = false; useLinearProjection = false; classEmbedType = nil; additionEmbedType = nil
        additionTimeEmbedDim = nil; numClassEmbeds = nil; upcastAttention = false; resnetTimeScaleShift = "default"
        resnetSkipTimeAct = false; resnetOutScaleFactor = 1; timeEmbeddingType = "positional"; timeEmbeddingDim = nil
        timeEmbeddingActFn = nil; timestepPostAct = nil; timeCondProjDim = nil; convInKernel = 3; convOutKernel = 3
        projectionClassEmbeddingsInputDim = nil; attentionType = "default"; classEmbeddingsConcat = false
        midBlockOnlyCrossAttention = nil; crossAttentionNorm = nil; additionEmbedTypeNumHeads = 64
    }

    public init(from decoder: any Decoder) throws {
        let d = UNet2DConditionConfig()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sampleSize = try c.nullable(.sampleSize, default: d.sampleSize)
        inChannels = try c.value(.inChannels, default: d.inChannels)
        outChannels = try c.value(.outChannels, default: d.outChannels)
        centerInputSample = try c.value(.centerInputSample, default: d.centerInputSample)
        flipSinToCos = try c.value(.flipSinToCos, default: d.flipSinToCos)
        freqShift = try c.value(.freqShift, default: d.freqShift)
        downBlockTypes = try c.value(.downBlockTypes, default: d.downBlockTypes)
        midBlockType = try c.nullable(.midBlockType, default: d.midBlockType)
        upBlockTypes = try c.value(.upBlockTypes, default: d.upBlockTypes)
        onlyCrossAttention = try c.value(.onlyCrossAttention, default: d.onlyCrossAttention)
        blockOutChannels = try c.value(.blockOutChannels, default: d.blockOutChannels)
        layersPerBlock = try c.value(.layersPerBlock, default: d.layersPerBlock)
        downsamplePadding = try c.value(.downsamplePadding, default: d.downsamplePadding)
        midBlockScaleFactor = try c.value(.midBlockScaleFactor, default: d.midBlockScaleFactor)
        actFn = try c.value(.actFn, default: d.actFn)
        normNumGroups = try c.nullable(.normNumGroups, default: d.normNumGroups)
        normEps = try c.value(.normEps, default: d.normEps)
        crossAttentionDim = try c.value(.crossAttentionDim, default: d.crossAttentionDim)
        transformerLayersPerBlock = try c.value(.transformerLayersPerBlock, default: d.transformerLayersPerBlock)
        reverseTransformerLayersPerBlock = try c.nullable(.reverseTransformerLayersPerBlock, default: nil)
        encoderHidDim = try c.nullable(.encoderHidDim, default: nil)
        encoderHidDimType = try c.nullable(.encoderHidDimType, default: nil)
        attentionHeadDim = try c.value(.attentionHeadDim, default: d.attentionHeadDim)
        numAttentionHeads = try c.nullable(.numAttentionHeads, default: nil)
        dualCrossAttention = try c.value(.dualCrossAttention, default: d.dualCrossAttention)
        useLinearProjection = try c.value(.useLinearProjection, default: d.useLinearProjection)
        classEmbedType = try c.nullable(.classEmbedType, default: nil)
        additionEmbedType = try c.nullable(.additionEmbedType, default: nil)
        additionTimeEmbedDim = try c.nullable(.additionTimeEmbedDim, default: nil)
        numClassEmbeds = try c.nullable(.numClassEmbeds, default: nil)
        upcastAttention = try c.value(.upcastAttention, default: d.upcastAttention)
        resnetTimeScaleShift = try c.value(.resnetTimeScaleShift, default: d.resnetTimeScaleShift)
        resnetSkipTimeAct = try c.value(.resnetSkipTimeAct, default: d.resnetSkipTimeAct)
        resnetOutScaleFactor = try c.value(.resnetOutScaleFactor, default: d.resnetOutScaleFactor)
        timeEmbeddingType = try c.value(.timeEmbeddingType, default: d.timeEmbeddingType)
        timeEmbeddingDim = try c.nullable(.timeEmbeddingDim, default: nil)
        timeEmbeddingActFn = try c.nullable(.timeEmbeddingActFn, default: nil)
        timestepPostAct = try c.nullable(.timestepPostAct, default: nil)
        timeCondProjDim = try c.nullable(.timeCondProjDim, default: nil)
        convInKernel = try c.value(.convInKernel, default: d.convInKernel)
        convOutKernel = try c.value(.convOutKernel, default: d.convOutKernel)
        projectionClassEmbeddingsInputDim = try c.nullable(.projectionClassEmbeddingsInputDim, default: nil)
        attentionType = try c.value(.attentionType, default: d.attentionType)
        classEmbeddingsConcat = try c.value(.classEmbeddingsConcat, default: d.classEmbeddingsConcat)
        midBlockOnlyCrossAttention = try c.nullable(.midBlockOnlyCrossAttention, default: nil)
        crossAttentionNorm = try c.nullable(.crossAttentionNorm, default: nil)
        additionEmbedTypeNumHeads = try c.value(.additionEmbedTypeNumHeads, default: d.additionEmbedTypeNumHeads)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeNullable(sampleSize, forKey: .sampleSize)
        try c.encode(inChannels, forKey: .inChannels)
        try c.encode(outChannels, forKey: .outChannels)
        try c.encode(centerInputSample, forKey: .centerInputSample)
        try c.encode(flipSinToCos, forKey: .flipSinToCos)
        try c.encode(freqShift, forKey: .freqShift)
        try c.encode(downBlockTypes, forKey: .downBlockTypes)
        try c.encodeNullable(midBlockType, forKey: .midBlockType)
        try c.encode(upBlockTypes, forKey: .upBlockTypes)
        try c.encode(onlyCrossAttention, forKey: .onlyCrossAttention)
        try c.encode(blockOutChannels, forKey: .blockOutChannels)
        try c.encode(layersPerBlock, forKey: .layersPerBlock)
        try c.encode(downsamplePadding, forKey: .downsamplePadding)
        try c.encode(midBlockScaleFactor, forKey: .midBlockScaleFactor)
        try c.encode(actFn, forKey: .actFn)
        try c.encodeNullable(normNumGroups, forKey: .normNumGroups)
        try c.encode(normEps, forKey: .normEps)
        try c.encode(crossAttentionDim, forKey: .crossAttentionDim)
        try c.encode(transformerLayersPerBlock, forKey: .transformerLayersPerBlock)
        try c.encodeNullable(reverseTransformerLayersPerBlock, forKey: .reverseTransformerLayersPerBlock)
        try c.encodeNullable(encoderHidDim, forKey: .encoderHidDim)
        try c.encodeNullable(encoderHidDimType, forKey: .encoderHidDimType)
        try c.encode(attentionHeadDim, forKey: .attentionHeadDim)
        try c.encodeNullable(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(dualCrossAttention, forKey: .dualCrossAttention)
        try c.encode(useLinearProjection, forKey: .useLinearProjection)
        try c.encodeNullable(classEmbedType, forKey: .classEmbedType)
        try c.encodeNullable(additionEmbedType, forKey: .additionEmbedType)
        try c.encodeNullable(additionTimeEmbedDim, forKey: .additionTimeEmbedDim)
        try c.encodeNullable(numClassEmbeds, forKey: .numClassEmbeds)
        try c.encode(upcastAttention, forKey: .upcastAttention)
        try c.encode(resnetTimeScaleShift, forKey: .resnetTimeScaleShift)
        try c.encode(resnetSkipTimeAct, forKey: .resnetSkipTimeAct)
        try c.encode(resnetOutScaleFactor, forKey: .resnetOutScaleFactor)
        try c.encode(timeEmbeddingType, forKey: .timeEmbeddingType)
        try c.encodeNullable(timeEmbeddingDim, forKey: .timeEmbeddingDim)
        try c.encodeNullable(timeEmbeddingActFn, forKey: .timeEmbeddingActFn)
        try c.encodeNullable(timestepPostAct, forKey: .timestepPostAct)
        try c.encodeNullable(timeCondProjDim, forKey: .timeCondProjDim)
        try c.encode(convInKernel, forKey: .convInKernel)
        try c.encode(convOutKernel, forKey: .convOutKernel)
        try c.encodeNullable(projectionClassEmbeddingsInputDim, forKey: .projectionClassEmbeddingsInputDim)
        try c.encode(attentionType, forKey: .attentionType)
        try c.encode(classEmbeddingsConcat, forKey: .classEmbeddingsConcat)
        try c.encodeNullable(midBlockOnlyCrossAttention, forKey: .midBlockOnlyCrossAttention)
        try c.encodeNullable(crossAttentionNorm, forKey: .crossAttentionNorm)
        try c.encode(additionEmbedTypeNumHeads, forKey: .additionEmbedTypeNumHeads)
    }
}
