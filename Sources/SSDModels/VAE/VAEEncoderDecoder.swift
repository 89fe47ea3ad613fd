import SSDTensor

/// diffusers `Encoder` (`models/autoencoders/vae.py`): conv_in, `DownEncoderBlock2D`s,
/// `UNetMidBlock2D` with attention, GN+SiLU, conv_out to `2 × latent_channels` (mean, log variance).
struct VAEEncoder: Sendable {
    let convIn: Conv2d
    let downBlocks: [DownBlock2D]
    let midBlock: UNetMidBlock2D
    let convNormOut: GroupNorm
    let convOut: Conv2d

    init(config c: AutoencoderKLConfig, scope: ParameterScope) throws {
        let channels = c.blockOutChannels, groups = c.normNumGroups
        convIn = try Conv2d(scope("conv_in"), in: c.inChannels, out: channels[0], kernel: 3)
        var blocks: [DownBlock2D] = []
        var output = channels[0]
        for i in channels.indices {
            let input = output
            output = channels[i]
            blocks.append(try DownBlock2D(scope("down_blocks", i), inChannels: input, outChannels: output, layers: c.layersPerBlock,
                                          timeEmbeddingChannels: nil, groups: groups, epsilon: 1e-6, attention: nil,
                                          addDownsample: i < channels.count - 1, downsamplePadding: 0))
        }
        downBlocks = blocks
        let last = channels[channels.count - 1]
        midBlock = try UNetMidBlock2D(scope("mid_block"), channels: last, timeEmbeddingChannels: nil, groups: groups, epsilon: 1e-6,
                                      outputScaleFactor: 1, layers: 1, addAttention: c.midBlockAddAttention, attentionHeadDim: last)
        convNormOut = try GroupNorm(scope("conv_norm_out"), groups: groups, channels: last, epsilon: 1e-6)
        convOut = try Conv2d(scope("conv_out"), in: last, out: 2 * c.latentChannels, kernel: 3)
    }

    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        var h = try convIn(x, b)
        var unused: [Tensor] = []
        for block in downBlocks {
            try Task.checkCancellation()  // a 1024² encode takes seconds on a CPU
            h = try block(h, temb: nil, context: nil, skips: &unused, b)
            unused.removeAll()
        }
        h = try midBlock(h, temb: nil, b)
        return try convOut(convNormOut.silu(h, b), b)
    }
}

/// diffusers `Decoder` (`models/autoencoders/vae.py`): conv_in, `UNetMidBlock2D` with attention,
/// `UpDecoderBlock2D`s, GN+SiLU, conv_out. Activations are released as soon as they are used.
struct VAEDecoder: Sendable {
    let convIn: Conv2d
    let midBlock: UNetMidBlock2D
    let upBlocks: [UpDecoderBlock2D]
    let convNormOut: GroupNorm
    let convOut: Conv2d

    init(config c: AutoencoderKLConfig, scope: ParameterScope) throws {
        let channels = c.blockOutChannels, groups = c.normNumGroups
        let last = channels[channels.count - 1]
        convIn = try Conv2d(scope("conv_in"), in: c.latentChannels, out: last, kernel: 3)
        midBlock = try UNetMidBlock2D(scope("mid_block"), channels: last, timeEmbeddingChannels: nil, groups: groups, epsilon: 1e-6,
                                      outputScaleFactor: 1, layers: 1, addAttention: c.midBlockAddAttention, attentionHeadDim: last)
        let reversed = Array(channels.reversed())
        var blocks: [UpDecoderBlock2D] = []
        var output = reversed[0]
        for i in reversed.indices {
            let previous = output
            output = reversed[i]
            blocks.append(try UpDecoderBlock2D(scope("up_blocks", i), inChannels: previous, outChannels: output,
                                               layers: c.layersPerBlock + 1, groups: groups, epsilon: 1e-6,
                                               addUpsample: i < reversed.count - 1,
                                               previousUpsampler: i > 0 ? scope("up_blocks", i - 1)("upsamplers.0") : nil))
        }
        upBlocks = blocks
        convNormOut = try GroupNorm(scope("conv_norm_out"), groups: groups, channels: channels[0], epsilon: 1e-6)
        convOut = try Conv2d(scope("conv_out"), in: channels[0], out: c.outChannels, kernel: 3)
    }

    func callAsFunction(_ z: Tensor, trace: ForwardTrace?, _ b: any ComputeBackend) throws -> Tensor {
        var h = try convIn(z, b)
        h = try midBlock(h, temb: nil, b)
        trace?.record("decoder.mid_block", h)
        var beforeUpsample: Tensor? = nil
        for (i, block) in upBlocks.enumerated() {
            try Task.checkCancellation()  // a 1024² decode takes seconds on a CPU
            (h, beforeUpsample) = try block(consume h, beforeUpsample: beforeUpsample, b)
            trace?.record("decoder.up_blocks.\(i)", h)
        }
        return try convNormOut.siluConv(h, convOut, b)
    }
}
