import SSDTensor

/// The module tree of a `UNet2DConditionModel`, resolved from its config (diffusers
/// `UNet2DConditionModel.__init__`); every unsupported architecture-changing value throws
/// `ModelError.unsupportedConfig` naming its field.
struct UNetNetwork: Sendable {
    enum MidBlock: Sendable {
        case crossAttention(UNetMidBlock2DCrossAttn)
        case resnetOnly(UNetMidBlock2D)
    }

    let convIn: Conv2d
    let timeEmbedding: TimestepEmbedding
    /// `text_time` added conditioning: `add_embedding` and the sinusoid width per time id.
    let addEmbedding: TimestepEmbedding?
    let addTimeEmbedDim: Int
    let downBlocks: [DownBlock2D]
    let midBlock: MidBlock?
    let upBlocks: [UpBlock2D]
    /// nil in an encoder-only network (a ControlNet's copy of the down and mid blocks).
    let convNormOut: GroupNorm?
    let convOut: Conv2d?
    let timeEmbeddingActivation: Activation?
    /// Width of the timestep sinusoid (`block_out_channels[0]`).
    let timestepInputDim: Int
    let flipSinToCos: Bool
    let freqShift: Float
    let centerInputSample: Bool
    /// `2^num_upsamplers`: latent sizes that are not multiples of it upsample to the skips' sizes (FreeU needs them).
    let sizeMultiple: Int
    /// The model's name in errors (`UNet2DConditionModel`, or `ControlNetModel` for its encoder).
    let modelName: String

    /// Channels of each skip connection of the down pass, in order: conv_in's output, each resnet's,
    /// each downsampler's (diffusers `down_block_res_samples`).
    var skipChannels: [Int] {
        var widths = [convIn.weight.shape[0]]
        for block in downBlocks {
            let width = block.resnets.last.map { $0.conv2.weight.shape[0] } ?? widths[widths.count - 1]
            widths += Array(repeating: width, count: block.resnets.count)
            if block.downsampler != nil { widths.append(width) }
        }
        return widths
    }

    static let model = "UNet2DConditionModel"

    /// `encoderOnly`: conv_in, the embeddings, the down and mid blocks only (diffusers `ControlNetModel`
    /// builds the same modules under the same names); `model` names the model in errors.
    init(config c: UNet2DConditionConfig, scope: ParameterScope, encoderOnly: Bool = false, model: String = Self.model) throws {
        func unsupported(_ field: String, _ value: String) -> ModelError {
            .unsupportedConfig(model: model, field: field, value: value)
        }
        func perLevel<T>(_ value: OneOrMany<T>, _ field: String, _ n: Int) throws -> [T] {
            guard let list = value.expanded(n) else { throw unsupported(field, "\(value) (needs \(n) entries, one per block)") }
            return list
        }
        modelName = model
        let n = c.downBlockTypes.count
        guard n > 0 else { throw unsupported("down_block_types", "[]") }
        guard encoderOnly || c.upBlockTypes.count == n else { throw unsupported("up_block_types", "\(c.upBlockTypes) (needs \(n) entries)") }
        guard c.blockOutChannels.count == n else { throw unsupported("block_out_channels", "\(c.blockOutChannels) (needs \(n) entries)") }
        // Values diffusers supports but that need modules this library does not have.
        if try perLevel(c.onlyCrossAttention, "only_cross_attention", n).contains(true) {
            throw unsupported("only_cross_attention", "\(c.onlyCrossAttention)")
        }
        if let heads = c.numAttentionHeads, !encoderOnly {
            throw unsupported("num_attention_heads", "\(heads) (diffusers rejects it too; use attention_head_dim)")
        }
        if c.dualCrossAttention { throw unsupported("dual_cross_attention", "true") }
        if let v = c.classEmbedType { throw unsupported("class_embed_type", "\"\(v)\"") }
        if let v = c.numClassEmbeds { throw unsupported("num_class_embeds", "\(v)") }
        if let v = c.encoderHidDim { throw unsupported("encoder_hid_dim", "\(v)") }
        if let v = c.encoderHidDimType { throw unsupported("encoder_hid_dim_type", "\"\(v)\"") }
        if c.timeEmbeddingType != "positional" { throw unsupported("time_embedding_type", "\"\(c.timeEmbeddingType)\"") }
        if c.resnetTimeScaleShift != "default" { throw unsupported("resnet_time_scale_shift", "\"\(c.resnetTimeScaleShift)\"") }
        if c.resnetSkipTimeAct { throw unsupported("resnet_skip_time_act", "true") }
        if c.attentionType != "default" { throw unsupported("attention_type", "\"\(c.attentionType)\"") }
        if let v = c.crossAttentionNorm { throw unsupported("cross_attention_norm", "\"\(v)\"") }
        if c.actFn != "silu" && c.actFn != "swish" { throw unsupported("act_fn", "\"\(c.actFn)\"") }
        guard let groups = c.normNumGroups, groups > 0 else { throw unsupported("norm_num_groups", "null") }
        for (field, kernel) in [("conv_in_kernel", c.convInKernel), ("conv_out_kernel", c.convOutKernel)] where kernel < 1 || kernel % 2 == 0 {
            throw unsupported(field, "\(kernel)")
        }
        for (i, channels) in c.blockOutChannels.enumerated() where channels % groups != 0 {
            throw unsupported("block_out_channels", "\(c.blockOutChannels) (entry \(i) is not a multiple of norm_num_groups \(groups))")
        }

        // (ControlNetModel takes `num_attention_heads or attention_head_dim`: both name the head count.)
        let heads = encoderOnly && c.numAttentionHeads != nil
            ? try perLevel(c.numAttentionHeads ?? c.attentionHeadDim, "num_attention_heads", n)
            : try perLevel(c.attentionHeadDim, "attention_head_dim", n)
        let crossDims = try perLevel(c.crossAttentionDim, "cross_attention_dim", n)
        let layers = try perLevel(c.layersPerBlock, "layers_per_block", n)
        let depthsPerLevel: [OneOrMany<Int>]
        switch c.transformerLayersPerBlock {
        case let .one(value): depthsPerLevel = Array(repeating: value, count: n)
        case let .many(list):
            guard list.count == n else { throw unsupported("transformer_layers_per_block", "\(c.transformerLayersPerBlock) (needs \(n) entries)") }
            depthsPerLevel = list
        }
        let hasNested = depthsPerLevel.contains { if case .many = $0 { return true } else { return false } }
        if hasNested && c.reverseTransformerLayersPerBlock == nil && !encoderOnly {
            throw unsupported("reverse_transformer_layers_per_block", "null (required when transformer_layers_per_block is nested)")
        }
        func depths(_ value: OneOrMany<Int>, count: Int, field: String) throws -> [Int] {
            guard let list = value.expanded(count) else { throw unsupported(field, "\(value) (needs \(count) entries)") }
            return list
        }

        // Time embeddings.
        let timeEmbedDim = c.timeEmbeddingDim ?? c.blockOutChannels[0] * 4
        timestepInputDim = c.blockOutChannels[0]
        flipSinToCos = c.flipSinToCos
        freqShift = Float(c.freqShift)
        centerInputSample = c.centerInputSample
        convIn = try Conv2d(scope("conv_in"), in: c.inChannels, out: c.blockOutChannels[0], kernel: c.convInKernel)
        timeEmbedding = try TimestepEmbedding(
            scope("time_embedding"), inChannels: timestepInputDim, timeEmbedDim: timeEmbedDim, activation: .silu,
            postActivation: try c.timestepPostAct.map { try ActivationName.resolve($0, model: Self.model, field: "timestep_post_act") },
            conditionDim: c.timeCondProjDim)
        switch c.additionEmbedType {
        case nil:
            addEmbedding = nil
            addTimeEmbedDim = 0
        case "text_time":
            guard let timeDim = c.additionTimeEmbedDim else { throw unsupported("addition_time_embed_dim", "null (required by text_time)") }
            guard let inputDim = c.projectionClassEmbeddingsInputDim else {
                throw unsupported("projection_class_embeddings_input_dim", "null (required by text_time)")
            }
            addTimeEmbedDim = timeDim
            addEmbedding = try TimestepEmbedding(scope("add_embedding"), inChannels: inputDim, timeEmbedDim: timeEmbedDim,
                                                 activation: .silu, postActivation: nil, conditionDim: nil)
        case let other?:
            throw unsupported("addition_embed_type", "\"\(other)\"")
        }
        timeEmbeddingActivation = try c.timeEmbeddingActFn.map { try ActivationName.resolve($0, model: Self.model, field: "time_embedding_act_fn") }

        // Down blocks.
        var downBlocks: [DownBlock2D] = []
        var outputChannel = c.blockOutChannels[0]
        for (i, type) in c.downBlockTypes.enumerated() {
            let inputChannel = outputChannel
            outputChannel = c.blockOutChannels[i]
            let attention: CrossAttentionOptions?
            switch type {
            case "DownBlock2D": attention = nil
            case "CrossAttnDownBlock2D":
                attention = CrossAttentionOptions(
                    heads: heads[i], depths: try depths(depthsPerLevel[i], count: layers[i], field: "transformer_layers_per_block"),
                    crossAttentionDim: crossDims[i], useLinearProjection: c.useLinearProjection)
            default: throw unsupported("down_block_types", "\"\(type)\"")
            }
            downBlocks.append(try DownBlock2D(
                scope("down_blocks", i), inChannels: inputChannel, outChannels: outputChannel, layers: layers[i],
                timeEmbeddingChannels: timeEmbedDim, groups: groups, epsilon: c.normEps, attention: attention,
                addDownsample: i < n - 1, downsamplePadding: c.downsamplePadding))
        }
        self.downBlocks = downBlocks

        // Mid block.
        let last = c.blockOutChannels[n - 1]
        switch c.midBlockType {
        case nil: midBlock = nil
        case "UNetMidBlock2DCrossAttn":
            let depth: Int
            switch depthsPerLevel[n - 1] {
            case let .one(value): depth = value
            case let .many(list):
                guard let first = list.first else { throw unsupported("transformer_layers_per_block", "\(c.transformerLayersPerBlock)") }
                depth = first
            }
            midBlock = .crossAttention(try UNetMidBlock2DCrossAttn(
                scope("mid_block"), channels: last, timeEmbeddingChannels: timeEmbedDim, groups: groups, epsilon: c.normEps,
                outputScaleFactor: c.midBlockScaleFactor,
                attention: CrossAttentionOptions(heads: heads[n - 1], depths: [depth], crossAttentionDim: crossDims[n - 1],
                                                 useLinearProjection: c.useLinearProjection)))
        case "UNetMidBlock2D":
            midBlock = .resnetOnly(try UNetMidBlock2D(
                scope("mid_block"), channels: last, timeEmbeddingChannels: timeEmbedDim, groups: groups, epsilon: c.normEps,
                outputScaleFactor: c.midBlockScaleFactor, layers: 0, addAttention: false, attentionHeadDim: last))
        case let other?:
            throw unsupported("mid_block_type", "\"\(other)\"")
        }

        // Up blocks: the reversed lists, or the explicit reverse depths of asymmetric UNets.
        let reversedChannels = Array(c.blockOutChannels.reversed())
        let reverseDepths: [OneOrMany<Int>]
        switch encoderOnly ? nil : c.reverseTransformerLayersPerBlock {
        case nil: reverseDepths = depthsPerLevel.reversed()
        case let .many(list)?:
            guard list.count == n else { throw unsupported("reverse_transformer_layers_per_block", "\(list) (needs \(n) entries)") }
            reverseDepths = list
        case let .one(value)?:
            throw unsupported("reverse_transformer_layers_per_block", "\(value) (must be a list, one entry per up block)")
        }
        var upBlocks: [UpBlock2D] = []
        outputChannel = reversedChannels[0]
        for (i, type) in (encoderOnly ? [] : c.upBlockTypes).enumerated() {
            let level = n - 1 - i
            let previousOutput = outputChannel
            outputChannel = reversedChannels[i]
            let inputChannel = reversedChannels[min(i + 1, n - 1)]
            let layerCount = layers[level] + 1
            let resnetInputs = (0..<layerCount).map { j in
                (j == 0 ? previousOutput : outputChannel) + (j == layerCount - 1 ? inputChannel : outputChannel)
            }
            let attention: CrossAttentionOptions?
            switch type {
            case "UpBlock2D": attention = nil
            case "CrossAttnUpBlock2D":
                attention = CrossAttentionOptions(
                    heads: heads[level],
                    depths: try depths(reverseDepths[i], count: layerCount,
                                       field: c.reverseTransformerLayersPerBlock == nil ? "transformer_layers_per_block" : "reverse_transformer_layers_per_block"),
                    crossAttentionDim: crossDims[level], useLinearProjection: c.useLinearProjection)
            default: throw unsupported("up_block_types", "\"\(type)\"")
            }
            upBlocks.append(try UpBlock2D(
                scope("up_blocks", i), resnetInputChannels: resnetInputs, outChannels: outputChannel,
                timeEmbeddingChannels: timeEmbedDim, groups: groups, epsilon: c.normEps, attention: attention,
                addUpsample: i < n - 1))
        }
        self.upBlocks = upBlocks
        sizeMultiple = 1 << (n - 1)

        if encoderOnly {
            (convNormOut, convOut) = (nil, nil)
        } else {
            convNormOut = try GroupNorm(scope("conv_norm_out"), groups: groups, channels: c.blockOutChannels[0], epsilon: c.normEps)
            convOut = try Conv2d(scope("conv_out"), in: c.blockOutChannels[0], out: c.outChannels, kernel: c.convOutKernel)
        }
    }

    /// Host-computed inputs of the embedding MLPs, uploaded in `dtype`: the timestep sinusoids
    /// `[B, block_out_channels[0]]`, the `text_time` features (pooled text, then time-id sinusoids;
    /// `[B, projection_class_embeddings_input_dim]`) and the LCM guidance condition `[B, time_cond_proj_dim]`.
    struct EmbeddingInputs {
        var timestep: Tensor
        var added: Tensor?
        var condition: Tensor?

        var tensors: [Tensor] { [timestep] + [added, condition].compactMap { $0 } }

        init(timestep: Tensor, added: Tensor?, condition: Tensor?) {
            self.timestep = timestep
            self.added = added
            self.condition = condition
        }

        /// Rebuilds from `tensors` (the same optional pieces present).
        init(_ tensors: ArraySlice<Tensor>, like other: EmbeddingInputs) {
            var rest = tensors
            timestep = rest.removeFirst()
            added = other.added == nil ? nil : rest.removeFirst()
            condition = other.condition == nil ? nil : rest.removeFirst()
        }
    }

    /// Computes the sinusoids on the host (fp32, as diffusers does) and uploads them.
    func embeddingInputs(timesteps: [Float], textEmbeds: Tensor?, timeIDs: [Float]?, timestepCond: [Float]?,
                         condDim: Int?, dtype: DType, _ b: any ComputeBackend) throws -> EmbeddingInputs {
        let batch = timesteps.count
        let sinusoids = timestepSinusoids(timesteps, dim: timestepInputDim, flipSinToCos: flipSinToCos, downscaleFreqShift: freqShift)
        let timestep = try b.upload(sinusoids, shape: [batch, timestepInputDim], as: dtype)
        var condition: Tensor?
        if let condDim {
            guard let timestepCond, timestepCond.count == batch * condDim else {
                throw ModelError.invalidInput(model: modelName, argument: "timestepCond",
                                              message: "needs \(batch) × \(condDim) values (time_cond_proj_dim)")
            }
            condition = try b.upload(timestepCond, shape: [batch, condDim], as: dtype)
        }
        guard let addEmbedding else { return EmbeddingInputs(timestep: timestep, added: nil, condition: condition) }
        guard let textEmbeds, let timeIDs else {
            throw ModelError.invalidInput(model: modelName, argument: "textEmbeds",
                                          message: "text_time conditioning needs textEmbeds and timeIDs")
        }
        let features = addEmbedding.linear1.weight.shape[1]
        guard textEmbeds.rank == 2, textEmbeds.shape[0] == batch, timeIDs.count % batch == 0,
              textEmbeds.shape[1] + timeIDs.count / batch * addTimeEmbedDim == features
        else {
            throw ModelError.invalidInput(model: modelName, argument: "textEmbeds/timeIDs",
                                          message: "text embeds \(textEmbeds.shape) and \(timeIDs.count) time ids do not give \(features) features for batch \(batch)")
        }
        let timeFeatures = timestepSinusoids(timeIDs, dim: addTimeEmbedDim, flipSinToCos: flipSinToCos, downscaleFreqShift: freqShift)
        let timeEmbeds = try b.upload(timeFeatures, shape: [batch, timeIDs.count / batch * addTimeEmbedDim], as: dtype)
        let text = textEmbeds.dtype == dtype ? textEmbeds : try b.convert(textEmbeds, to: dtype)
        return EmbeddingInputs(timestep: timestep, added: try b.concat([text, timeEmbeds], axis: 1), condition: condition)
    }

    /// The time embedding `emb` `[B, timeEmbedDim]`: timestep MLP plus the added text/time conditioning.
    func embedding(_ inputs: EmbeddingInputs, _ b: any ComputeBackend) throws -> Tensor {
        let timeEmb = try timeEmbedding(inputs.timestep, condition: inputs.condition, b)
        var emb = timeEmb
        if let addEmbedding, let added = inputs.added {
            emb = try addEmbedding(added, residual: timeEmb, b)
        }
        if let timeEmbeddingActivation { emb = try b.activation(emb, timeEmbeddingActivation) }
        return emb
    }

    /// The UNet forward after the embedding: NHWC in, NHWC out. `control`: a ControlNet's residuals,
    /// added to the skip connections and to the mid block's output (diffusers
    /// `down_block_additional_residuals`, `mid_block_additional_residual`).
    /// `intrablock`: a T2I-Adapter's feature maps (diffusers `down_intrablock_additional_residuals`), taken in
    /// order by the down blocks and then by the mid block where the next one has its output's shape.
    func forward(_ sample: Tensor, emb: Tensor, context: CrossAttentionContext, control: ControlNetResiduals? = nil,
                 intrablock: [Tensor] = [], freeU: [FreeUFilter] = [], trace: ForwardTrace?, _ b: any ComputeBackend) throws -> Tensor {
        guard let convNormOut, let convOut else {
            throw ModelError.invalidInput(model: Self.model, argument: "network", message: "an encoder-only network has no output")
        }
        let temb = try b.activation(emb, .silu)
        var h = centerInputSample ? try b.affine(sample, scale: 2, shift: -1) : sample
        h = try convIn(h, b)
        var skips = [h]
        h = try downAndMid(h, temb: temb, context: context, skips: &skips, intrablock: intrablock, trace: trace, b)
        if let control {
            guard control.down.count == skips.count, zip(control.down, skips).allSatisfy({ $0.shape == $1.shape }),
                  control.mid.shape == h.shape else {
                throw ModelError.invalidInput(
                    model: Self.model, argument: "controlResiduals",
                    message: "expected \(skips.count) down residuals shaped \(skips.map(\.shape)) and a mid residual \(h.shape), got \(control.down.map(\.shape)) and \(control.mid.shape)")
            }
            skips = try zip(skips, control.down).map { try b.binary($0, $1, .add) }
            h = try b.binary(h, control.mid, .add)
        }
        for (i, block) in upBlocks.enumerated() {
            h = try block(h, temb: temb, context: context, skips: &skips, usesSkips: true, freeU: i < freeU.count ? freeU[i] : nil, b)
            trace?.record("up_blocks.\(i)", h)
        }
        return try convOut(convNormOut.silu(h, b), b)
    }

    /// The down blocks (their outputs appended to `skips`) and the mid block, from `h` after conv_in;
    /// `intrablock` as in `forward` (shapes checked against `intrablockSlots`).
    func downAndMid(_ x: Tensor, temb: Tensor, context: CrossAttentionContext, skips: inout [Tensor],
                    intrablock: [Tensor] = [], trace: ForwardTrace?, _ b: any ComputeBackend) throws -> Tensor {
        var h = x
        let slots = intrablock.isEmpty ? [] : try intrablockSlots(batch: x.shape[0], latentHeight: x.shape[1], latentWidth: x.shape[2],
                                                                    residuals: intrablock.map(\.shape))
        for (i, block) in downBlocks.enumerated() {
            h = try block(h, temb: temb, context: context, skips: &skips,
                          intrablockResidual: i < slots.count ? intrablock[i] : nil, b)
            trace?.record("down_blocks.\(i)", h)
        }
        switch midBlock {
        case let .crossAttention(block)?: h = try block(h, temb: temb, context: context, b)
        case let .resnetOnly(block)?: h = try block(h, temb: temb, b)
        case nil: break
        }
        if slots.count > downBlocks.count { h = try b.binary(h, intrablock[downBlocks.count], .add) }
        trace?.record("mid_block", h)
        return h
    }

    /// Where intrablock residuals of `residuals` shapes (NHWC, in order) go for latents of
    /// `latentHeight × latentWidth`: the first goes to down block 0 and so on (each must have its slot's
    /// shape), then one more to the mid block's output if it has that shape; further ones are unused, as
    /// in diffusers. Returns the shapes used; throws `ModelError.invalidInput` naming a mismatch.
    func intrablockSlots(batch: Int, latentHeight: Int, latentWidth: Int, residuals: [[Int]]) throws -> [[Int]] {
        var (h, w) = (latentHeight, latentWidth)
        var used: [[Int]] = []
        for (i, block) in downBlocks.enumerated() where i < residuals.count {
            let slot = block.intrablockSlot(height: h, width: w)
            let expected = [batch] + slot.shape
            guard residuals[i] == expected else {
                throw ModelError.invalidInput(model: modelName, argument: "intrablockResiduals[\(i)]",
                                              message: "down block \(i) takes \(expected), got \(residuals[i])")
            }
            used.append(expected)
            (h, w) = (slot.height, slot.width)
        }
        if residuals.count > downBlocks.count, midBlock != nil,
           let last = downBlocks.last?.resnets.last?.conv2.weight.shape[0],
           residuals[downBlocks.count] == [batch, h, w, last] {
            used.append(residuals[downBlocks.count])
        }
        return used
    }

    /// Every cross-attention layer in diffusers' `attn_processors` order (module registration order:
    /// down blocks, up blocks, then the mid block), which numbers an IP-Adapter's `ip_adapter.N` layers.
    var registrationOrderCrossAttentions: [Attention] {
        var layers = downBlocks.flatMap { $0.attentions.flatMap(\.crossAttentions) }
        layers += upBlocks.flatMap { $0.attentions.flatMap(\.crossAttentions) }
        if case let .crossAttention(block)? = midBlock { layers += block.attentions.flatMap(\.crossAttentions) }
        return layers
    }

    /// Every self-attention layer (`attn1`) in module registration order (down, up, mid), as diffusers'
    /// `named_modules` lists them for `pag_applied_layers`.
    var registrationOrderSelfAttentions: [Attention] {
        var layers = downBlocks.flatMap { $0.attentions.flatMap(\.selfAttentions) }
        layers += upBlocks.flatMap { $0.attentions.flatMap(\.selfAttentions) }
        if case let .crossAttention(block)? = midBlock { layers += block.attentions.flatMap(\.selfAttentions) }
        return layers
    }

    /// Every cross-attention layer, in the order the forward pass runs them.
    var crossAttentions: [Attention] {
        var layers = downBlocks.flatMap { $0.attentions.flatMap(\.crossAttentions) }
        if case let .crossAttention(block)? = midBlock { layers += block.attentions.flatMap(\.crossAttentions) }
        return layers + upBlocks.flatMap { $0.attentions.flatMap(\.crossAttentions) }
    }
}
