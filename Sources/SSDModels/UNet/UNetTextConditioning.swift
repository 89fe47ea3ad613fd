import SSDTensor

/// The text conditioning of one generation, prepared once for all of its denoising calls: the
/// text states in the UNet's activation type and, for each cross-attention layer (`attn2` of the
/// `BasicTransformerBlock`s), `to_k` and `to_v` of them. diffusers (`models/attention_processor.py`,
/// `AttnProcessor2_0`) projects them again at every step; they depend only on the text, so the UNet's
/// output is the same bit for bit. Made by `UNet2DConditionModel.textConditioning`, valid for that
/// UNet only.
public struct UNetTextConditioning: Sendable {
    /// The text states `[B, T, cross_attention_dim]` in the UNet's activation type.
    public var encoderHiddenStates: Tensor { context.states }
    /// Cross-attention layers whose keys and values are held (the rest project them per call).
    public var cachedLayerCount: Int { context.cached.count }
    /// Bytes held by those keys and values.
    public let cachedBytes: Int
    let context: CrossAttentionContext
    /// The `replayKey` of the UNet that made it.
    let unetKey: String
}

extension UNet2DConditionModel {
    /// Default for `textConditioning`'s `cacheLimitBytes`: at 1024² and batch 1 with guidance the
    /// SSD-1B keys and values take 47 MB in fp32; the limit only bites at large batches.
    public static let defaultCrossAttentionCacheLimit = 1 << 30

    /// Prepares `encoderHiddenStates` `[B, T, cross_attention_dim]` for repeated calls of
    /// `callAsFunction(sample:timesteps:conditioning:textEmbeds:timeIDs:timestepCond:)`: converts them
    /// once and projects the cross-attention keys and values of as many layers (in forward order) as
    /// fit in `cacheLimitBytes` (0: none). On a backend that replays recorded regions (CUDA graphs)
    /// nothing is projected ahead: the recorded step does it.
    /// `imagePrompts`: IP-Adapters with their image tokens (`IPAdapterModel.imageTokens`, rows as the
    /// text states) and scales; every cross-attention layer adds each adapter's attention to its image
    /// tokens (diffusers `IPAdapterAttnProcessor2_0`; a scale of 0 adds nothing). Their keys and values
    /// are projected here, once per generation, on every backend.
    public func textConditioning(encoderHiddenStates: Tensor, imagePrompts: [IPAdapterImagePrompt] = [],
                                 cacheLimitBytes: Int = defaultCrossAttentionCacheLimit) throws -> UNetTextConditioning {
        var context = CrossAttentionContext(states: try textStates(encoderHiddenStates))
        for prompt in imagePrompts {
            guard prompt.tokens.rank == 3, prompt.tokens.shape[0] == context.states.shape[0],
                  prompt.tokens.shape[2] == context.states.shape[2],
                  Set(prompt.adapter.layers.keys) == Set(network.crossAttentions.map(\.name)) else {
                throw ModelError.invalidInput(model: UNetNetwork.model, argument: "imagePrompts",
                                              message: "tokens \(prompt.tokens.shape) of an IP-Adapter for another UNet or batch (text states \(context.states.shape))")
            }
            if let masks = prompt.masks {
                try addMaskedImageKeysValues(prompt, masks: masks, to: &context)
                continue
            }
            guard prompt.scale != 0 else { continue }
            for (name, kv) in try prompt.adapter.keysValues(prompt.tokens, scale: prompt.scale) {
                context.imageKeysValues[name, default: []].append(kv)
            }
        }
        var bytes = 0
        if !backend.replaysRecordedRegions {
            let states = context.states
            let elementBytes = backend.activationDType(for: .unet).byteSize
            for layer in network.crossAttentions {
                let layerBytes = 2 * states.shape[0] * states.shape[1] * layer.toK.outFeatures * elementBytes
                guard bytes + layerBytes <= cacheLimitBytes else { break }
                context.cached[layer.name] = try layer.keysValues(states, backend)
                bytes += layerBytes
            }
        }
        return UNetTextConditioning(cachedBytes: bytes, context: context, unetKey: replayKey)
    }

    /// A masked IP-Adapter's keys and values, one entry per image with its scale (diffusers skips the adapter
    /// when every scale is 0) and its mask resampled to each layer's token grid (uploaded once per grid).
    func addMaskedImageKeysValues(_ prompt: IPAdapterImagePrompt, masks: IPAdapterMasks, to context: inout CrossAttentionContext) throws {
        let n = masks.maps.count
        let scales = masks.scales ?? Array(repeating: prompt.scale, count: n)
        guard n > 0, scales.count == n, prompt.tokens.shape[1] % n == 0, prompt.tokens.shape[1] / n == prompt.adapter.tokensPerImage,
              masks.height > 0, masks.width > 0, masks.latentHeight > 0, masks.latentWidth > 0,
              masks.maps.allSatisfy({ $0.count == masks.height * masks.width }),
              context.maskLatentSize.map({ $0 == [masks.latentHeight, masks.latentWidth] }) ?? true else {
            throw ModelError.invalidInput(
                model: UNetNetwork.model, argument: "imagePrompts.masks",
                message: "\(n) masks of \(masks.height)×\(masks.width) and \(scales.count) scales for tokens \(prompt.tokens.shape) (\(prompt.adapter.tokensPerImage) per image)")
        }
        guard !scales.allSatisfy({ $0 == 0 }) else { return }
        context.maskLatentSize = [masks.latentHeight, masks.latentWidth]
        let perImage = prompt.adapter.tokensPerImage
        let dtype = backend.activationDType(for: .unet)
        let levels = network.downBlocks.count
        /// Token count of a cross-attention layer's grid, from its block (`down_blocks.i`, `up_blocks.i`, `mid_block`).
        func queries(_ name: String) -> Int {
            let parts = name.split(separator: ".")
            var level = levels - 1
            if parts.count > 1, let i = Int(parts[1]) {
                if parts[0] == "down_blocks" { level = i } else if parts[0] == "up_blocks" { level = levels - 1 - i }
            }
            var (h, w) = (masks.latentHeight, masks.latentWidth)
            for _ in 0..<level { (h, w) = ((h + 1) / 2, (w + 1) / 2) }
            return h * w
        }
        for (i, map) in masks.maps.enumerated() {
            let tokens = try backend.slice(prompt.tokens, axis: 1, range: (i * perImage)..<((i + 1) * perImage))
            var grids: [Int: Tensor] = [:]
            for (name, kv) in try prompt.adapter.keysValues(tokens, scale: scales[i]) {
                let count = queries(name)
                let mask = try grids[count] ?? backend.upload(
                    IPAdapterMasks.downsample(map, height: masks.height, width: masks.width, queries: count), shape: [1, count, 1], as: dtype)
                grids[count] = mask
                context.imageKeysValues[name, default: []].append(CrossAttentionKV(key: kv.key, value: kv.value, mask: mask))
            }
        }
    }

    /// Image tokens of one IP-Adapter for `textConditioning`.
    public struct IPAdapterImagePrompt: Sendable {
        /// The adapter (loaded for this UNet).
        public var adapter: IPAdapterModel
        /// `[B, n·T, cross_attention_dim]` from `adapter.imageTokens`, one row per text row.
        public var tokens: Tensor
        /// diffusers `set_ip_adapter_scale` (1 by default).
        public var scale: Float
        /// Per-image masks (diffusers `ip_adapter_masks`); nil: the images are attended together everywhere.
        public var masks: IPAdapterMasks?
        /// One adapter's tokens, scale and masks.
        public init(adapter: IPAdapterModel, tokens: Tensor, scale: Float, masks: IPAdapterMasks? = nil) {
            self.adapter = adapter
            self.tokens = tokens
            self.scale = scale
            self.masks = masks
        }
    }

    /// One denoising call with text conditioning from `textConditioning` (same result as passing its
    /// `encoderHiddenStates` to `callAsFunction(sample:timesteps:encoderHiddenStates:…)`, without
    /// projecting the cached keys and values again). Throws `ModelError.invalidInput` for conditioning
    /// made by another UNet. `controlResiduals`: a `ControlNetModel`'s outputs for this call (diffusers
    /// `down_block_additional_residuals` and `mid_block_additional_residual`). `freeU`: FreeU (diffusers
    /// `enable_freeu`) as `freeUFilters` prepared it for this latent size; nil: off. `intrablockResiduals`:
    /// a `T2IAdapterModel`'s feature maps for this call, already scaled and repeated to the batch (diffusers
    /// `down_intrablock_additional_residuals`; which are used: `intrablockResidualsUsed`). `perturbedAttention`:
    /// perturbed-attention guidance's identity self-attention for the batch's last rows (`selfAttentionLayers`).
    public func callAsFunction(sample: Tensor, timesteps: [Float], conditioning: UNetTextConditioning, textEmbeds: Tensor?,
                               timeIDs: [Float]?, timestepCond: [Float]? = nil,
                               controlResiduals: ControlNetResiduals? = nil, intrablockResiduals: [Tensor] = [],
                               freeU: FreeUFilters? = nil, perturbedAttention: PerturbedSelfAttention? = nil) throws -> Tensor {
        guard conditioning.unetKey == replayKey else {
            throw ModelError.invalidInput(model: UNetNetwork.model, argument: "conditioning",
                                          message: "was prepared by another UNet2DConditionModel instance")
        }
        return try forward(sample: sample, timesteps: timesteps, context: conditioning.context, textEmbeds: textEmbeds,
                           timeIDs: timeIDs, timestepCond: timestepCond, control: controlResiduals,
                           intrablock: intrablockResiduals, freeU: freeU, perturbed: perturbedAttention, trace: nil)
    }
}
