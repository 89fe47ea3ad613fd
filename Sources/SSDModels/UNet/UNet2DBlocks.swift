import SSDTensor

/// Cross-attention settings of a block's `Transformer2DModel`s.
struct CrossAttentionOptions: Sendable {
    var heads: Int
    /// Transformer depth per layer of the block.
    var depths: [Int]
    var crossAttentionDim: Int
    var useLinearProjection: Bool
}

/// diffusers `DownBlock2D`, `CrossAttnDownBlock2D` (with `attention`) and `DownEncoderBlock2D`
/// (no time embedding, downsample padding 0) (`models/unets/unet_2d_blocks.py`).
struct DownBlock2D: Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let downsampler: Downsample2D?

    init(_ scope: ParameterScope, inChannels: Int, outChannels: Int, layers: Int, timeEmbeddingChannels: Int?,
         groups: Int, epsilon: Double, attention: CrossAttentionOptions?, addDownsample: Bool, downsamplePadding: Int) throws {
        resnets = try (0..<layers).map {
            try ResnetBlock2D(scope("resnets", $0), inChannels: $0 == 0 ? inChannels : outChannels, outChannels: outChannels,
                              timeEmbeddingChannels: timeEmbeddingChannels, groups: groups, epsilon: epsilon)
        }
        attentions = try attention.map { options in
            try (0..<layers).map {
                try Transformer2DModel(scope("attentions", $0), channels: outChannels, heads: options.heads,
                                       depth: options.depths[$0], crossAttentionDim: options.crossAttentionDim,
                                       groups: groups, useLinearProjection: options.useLinearProjection)
            }
        } ?? []
        downsampler = addDownsample
            ? try Downsample2D(scope("downsamplers.0"), channels: outChannels, padding: downsamplePadding) : nil
    }

    /// Runs the block; appends each layer's output (and the downsampled one) to `skips`.
    /// `intrablockResidual` (a T2I-Adapter feature map, diffusers `down_intrablock_additional_residuals`):
    /// a block with attention adds it to its last layer's output (before the skip and the downsampler);
    /// one without adds it to its final output, which is also its last skip (diffusers adds it in place).
    func callAsFunction(_ x: Tensor, temb: Tensor?, context: CrossAttentionContext?, skips: inout [Tensor],
                        intrablockResidual: Tensor? = nil, _ b: any ComputeBackend) throws -> Tensor {
        let withAttention = !attentions.isEmpty && context != nil
        var h = x
        for (i, resnet) in resnets.enumerated() {
            h = try resnet(h, activatedTimeEmbedding: temb, b)
            if withAttention, let context { h = try attentions[i](h, context: context, b) }
            if withAttention, i == resnets.count - 1, let residual = intrablockResidual { h = try b.binary(h, residual, .add) }
            skips.append(h)
        }
        if let downsampler {
            h = try downsampler(h, b)
            skips.append(h)
        }
        if !withAttention, let residual = intrablockResidual {
            h = try b.binary(h, residual, .add)
            if !skips.isEmpty { skips[skips.count - 1] = h }
        }
        return h
    }

    /// The shape `[height, width, channels]` its intrablock residual must have for an input of
    /// `height × width` (see `callAsFunction`), and the output size.
    func intrablockSlot(height: Int, width: Int) -> (shape: [Int], height: Int, width: Int) {
        let channels = resnets.last?.conv2.weight.shape[0] ?? 0
        let (outH, outW) = downsampler == nil ? (height, width) : ((height + 1) / 2, (width + 1) / 2)
        return (attentions.isEmpty ? [outH, outW, channels] : [height, width, channels], outH, outW)
    }
}

/// diffusers `UpBlock2D`, `CrossAttnUpBlock2D` (with `attention`) and `UpDecoderBlock2D` (no skips,
/// no time embedding) (`models/unets/unet_2d_blocks.py`).
struct UpBlock2D: Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let upsampler: Upsample2D?

    /// `resnetInputChannels[i]` is the input width of resnet `i` (including the concatenated skip).
    init(_ scope: ParameterScope, resnetInputChannels: [Int], outChannels: Int, timeEmbeddingChannels: Int?,
         groups: Int, epsilon: Double, attention: CrossAttentionOptions?, addUpsample: Bool) throws {
        resnets = try resnetInputChannels.enumerated().map {
            try ResnetBlock2D(scope("resnets", $0.offset), inChannels: $0.element, outChannels: outChannels,
                              timeEmbeddingChannels: timeEmbeddingChannels, groups: groups, epsilon: epsilon)
        }
        attentions = try attention.map { options in
            try resnetInputChannels.indices.map {
                try Transformer2DModel(scope("attentions", $0), channels: outChannels, heads: options.heads,
                                       depth: options.depths[$0], crossAttentionDim: options.crossAttentionDim,
                                       groups: groups, useLinearProjection: options.useLinearProjection)
            }
        } ?? []
        upsampler = addUpsample ? try Upsample2D(scope("upsamplers.0"), channels: outChannels) : nil
    }

    /// Runs the block; with `skips`, each resnet first concatenates (channels last) the most
    /// recent skip, which is removed from the stack.
    /// `freeU`: FreeU's backbone scaling and skip filter before each concatenation (diffusers `apply_freeu`).
    func callAsFunction(_ x: Tensor, temb: Tensor?, context: CrossAttentionContext?, skips: inout [Tensor], usesSkips: Bool,
                        freeU: FreeUFilter? = nil, _ b: any ComputeBackend) throws -> Tensor {
        var h = x
        for (i, resnet) in resnets.enumerated() {
            if usesSkips, var skip = skips.popLast() {
                if let freeU { (h, skip) = try freeU(h, skip: skip, b) }
                h = try b.concat([h, skip], axis: 3)
            }
            h = try resnet(h, activatedTimeEmbedding: temb, b)
            if !attentions.isEmpty, let context { h = try attentions[i](h, context: context, b) }
        }
        // (the next skip's size: diffusers' `upsample_size`, odd where the input is not a multiple of 2^levels)
        if let upsampler { h = try upsampler(h, size: usesSkips ? skips.last.map { ($0.shape[1], $0.shape[2]) } : nil, b) }
        return h
    }
}

/// diffusers `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) per layer.
struct UNetMidBlock2DCrossAttn: Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]

    init(_ scope: ParameterScope, channels: Int, timeEmbeddingChannels: Int, groups: Int, epsilon: Double,
         outputScaleFactor: Double, attention: CrossAttentionOptions, layers: Int = 1) throws {
        resnets = try (0...layers).map {
            try ResnetBlock2D(scope("resnets", $0), inChannels: channels, outChannels: channels,
                              timeEmbeddingChannels: timeEmbeddingChannels, groups: groups, epsilon: epsilon,
                              outputScaleFactor: outputScaleFactor)
        }
        attentions = try (0..<layers).map {
            try Transformer2DModel(scope("attentions", $0), channels: channels, heads: attention.heads,
                                   depth: attention.depths[$0], crossAttentionDim: attention.crossAttentionDim,
                                   groups: groups, useLinearProjection: attention.useLinearProjection)
        }
    }

    func callAsFunction(_ x: Tensor, temb: Tensor?, context: CrossAttentionContext, _ b: any ComputeBackend) throws -> Tensor {
        var h = try resnets[0](x, activatedTimeEmbedding: temb, b)
        for (attention, resnet) in zip(attentions, resnets.dropFirst()) {
            h = try attention(h, context: context, b)
            h = try resnet(h, activatedTimeEmbedding: temb, b)
        }
        return h
    }
}

/// diffusers `UNetMidBlock2D`: resnet, then (optional spatial self-attention, resnet) per layer.
/// The VAE uses one layer with attention; SSD-1B's UNet uses zero layers (a single resnet).
struct UNetMidBlock2D: Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [SpatialSelfAttention]

    init(_ scope: ParameterScope, channels: Int, timeEmbeddingChannels: Int?, groups: Int, epsilon: Double,
         outputScaleFactor: Double, layers: Int, addAttention: Bool, attentionHeadDim: Int) throws {
        resnets = try (0...layers).map {
            try ResnetBlock2D(scope("resnets", $0), inChannels: channels, outChannels: channels,
                              timeEmbeddingChannels: timeEmbeddingChannels, groups: groups, epsilon: epsilon,
                              outputScaleFactor: outputScaleFactor)
        }
        attentions = addAttention ? try (0..<layers).map {
            try SpatialSelfAttention(scope("attentions", $0), channels: channels, headDim: attentionHeadDim,
                                     groups: groups, epsilon: epsilon)
        } : []
    }

    func callAsFunction(_ x: Tensor, temb: Tensor?, _ b: any ComputeBackend) throws -> Tensor {
        var h = try resnets[0](x, activatedTimeEmbedding: temb, b)
        for (i, resnet) in resnets.dropFirst().enumerated() {
            if !attentions.isEmpty { h = try attentions[i](h, b) }
            h = try resnet(h, activatedTimeEmbedding: temb, b)
        }
        return h
    }
}

/// diffusers `Attention` with `group_norm` and `residual_connection=True` over all H·W positions
/// (the VAE mid-block attention): `x + to_out(attn(gn(x)))`.
struct SpatialSelfAttention: Sendable {
    let groupNorm: GroupNorm
    let attention: Attention

    init(_ scope: ParameterScope, channels: Int, headDim: Int, groups: Int, epsilon: Double) throws {
        groupNorm = try GroupNorm(scope("group_norm"), groups: groups, channels: channels, epsilon: epsilon)
        attention = try Attention(scope, queryDim: channels, heads: channels / headDim, headDim: headDim, qkvBias: true)
    }

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let tokens = try x.reshaped([n, h * w, c])
        return try attention(groupNorm(tokens, b), residual: tokens, b).reshaped([n, h, w, c])
    }
}
