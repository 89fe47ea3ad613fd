import SSDTensor
import Synchronization

/// Numbers UNet instances, so that a backend's recorded graph (keyed by `runReplayable`'s key) is
/// never replayed for another UNet that happens to reuse a freed one's address.
private let unetInstances = Atomic<Int>(0)

/// The conditional UNet of SDXL / SSD-1B (diffusers `models/unets/unet_2d_condition.py`,
/// `UNet2DConditionModel`), built from its config and run on any `ComputeBackend`.
/// Activations are NHWC.
public final class UNet2DConditionModel: Sendable {
    /// The decoded `config.json`.
    public let config: UNet2DConditionConfig
    /// The backend holding the weights and running the forward pass.
    public let backend: any ComputeBackend
    let network: UNetNetwork
    /// `runReplayable` key: one region per instance (a backend re-records when the shapes change).
    let replayKey: String

    /// Builds the network from `config` with the weights in `weights` (names and shapes checked).
    public init(config: UNet2DConditionConfig, weights: WeightFiles, backend: any ComputeBackend) throws {
        let loader = ParameterLoader(model: UNetNetwork.model, family: .unet, weights: weights, backend: backend, component: .unet)
        network = try UNetNetwork(config: config, scope: loader.root)
        try loader.finish()
        self.config = config
        self.backend = backend
        replayKey = "unet-\(unetInstances.add(1, ordering: .relaxed).newValue)"
    }

    /// Loads `config.json` and `diffusion_pytorch_model[.variant].safetensors` (or a sharded
    /// index) from a component folder such as `<pipeline>/unet`.
    public static func load(componentDirectory: String, backend: any ComputeBackend, variant: String? = nil) throws -> UNet2DConditionModel {
        let config = try ConfigFile.load(UNet2DConditionConfig.self, path: componentDirectory + "/config.json")
        let weights = try WeightFiles.locate(in: componentDirectory, baseNames: ["diffusion_pytorch_model"], variant: variant)
        return try UNet2DConditionModel(config: config, weights: weights, backend: backend)
    }

    /// The parameters `config` implies, in diffusers' `state_dict` names (no weights needed).
    public static func parameterSpecs(config: UNet2DConditionConfig) throws -> [ParameterSpec] {
        let loader = ParameterLoader(describing: UNetNetwork.model, family: .unet)
        _ = try UNetNetwork(config: config, scope: loader.root)
        return loader.specs
    }

    /// One denoising call.
    /// - Parameters:
    ///   - sample: NHWC latents `[B, h, w, in_channels]`, any size: where `h` or `w` is not a multiple of
    ///     2^(levels−1) the up blocks upsample to the skip connections' sizes (diffusers' `forward_upsample_size`).
    ///   - timesteps: one timestep per batch row (or one for all rows).
    ///   - encoderHiddenStates: text embeddings `[B, T, cross_attention_dim]`.
    ///   - textEmbeds: pooled text embedding `[B, D]` (`text_time` conditioning; SDXL `D = 1280`).
    ///   - timeIDs: `B × 6` micro-conditioning numbers (`B × 5` for the refiner), row-major (`text_time`).
    ///   - timestepCond: `B × time_cond_proj_dim` guidance embedding values (LCM UNets).
    /// - Returns: NHWC `[B, h, w, out_channels]` in the backend's UNet activation type. On a backend
    ///   that replays recorded graphs (`CUDABackend`, unless `SSD_CUDA_GRAPHS=0`) its contents are
    ///   overwritten by this UNet's next call: use or copy it before then.
    public func callAsFunction(sample: Tensor, timesteps: [Float], encoderHiddenStates: Tensor, textEmbeds: Tensor?,
                               timeIDs: [Float]?, timestepCond: [Float]? = nil) throws -> Tensor {
        try forward(sample: sample, timesteps: timesteps, encoderHiddenStates: encoderHiddenStates,
                    textEmbeds: textEmbeds, timeIDs: timeIDs, timestepCond: timestepCond, trace: nil)
    }

    /// `2^num_upsamplers`: latent sizes that are multiples of it go down and up the UNet without odd sizes.
    public var totalDownscale: Int { network.sizeMultiple }

    /// FreeU's filters for calls on latents of `latentHeight × latentWidth` (the Fourier bases at the first
    /// two up blocks' sizes), made once per generation and passed to every call's `freeU:`; disabled
    /// settings (a zero factor) give filters that change nothing, as in diffusers.
    public func freeUFilters(_ freeU: FreeU, latentHeight: Int, latentWidth: Int) throws -> FreeUFilters {
        let levels = network.downBlocks.filter { $0.downsampler != nil }.count
        guard freeU.isEnabled else {
            return FreeUFilters(filters: [], latentHeight: latentHeight, latentWidth: latentWidth, unetKey: replayKey)
        }
        // The sizes down the UNet (each downsampler, 3×3 stride 2 padding 1, rounds up); up block i
        // concatenates the skips of size `sizes[levels − i]`.
        var sizes = [(height: latentHeight, width: latentWidth)]
        for _ in 0..<levels {
            let last = sizes[sizes.count - 1]
            sizes.append(((last.height + 1) / 2, (last.width + 1) / 2))
        }
        let skipSizes = (0..<min(2, levels + 1)).map { sizes[levels - $0] }
        let filters = Array(try freeU.filters(skipSizes: skipSizes, dtype: backend.activationDType(for: .unet), backend)
            .prefix(network.upBlocks.count))
        return FreeUFilters(filters: filters, latentHeight: latentHeight, latentWidth: latentWidth, unetKey: replayKey)
    }

    /// How many of T2I-Adapter feature maps shaped `shapes` (`[height, width, channels]` each, in order)
    /// a call on `latentHeight × latentWidth` latents uses: one per down block, each of its slot's shape, then
    /// one for the mid block's output where the next has its shape (diffusers' rule; the rest are unused).
    /// Throws `ModelError.invalidInput` naming the first that does not fit its down block.
    public func intrablockResidualsUsed(shapes: [[Int]], latentHeight: Int, latentWidth: Int) throws -> Int {
        try network.intrablockSlots(batch: 1, latentHeight: latentHeight, latentWidth: latentWidth,
                                    residuals: shapes.map { [1] + $0 }).count
    }

    func forward(sample: Tensor, timesteps: [Float], encoderHiddenStates: Tensor, textEmbeds: Tensor?,
                 timeIDs: [Float]?, timestepCond: [Float]?, trace: ForwardTrace?) throws -> Tensor {
        let context = CrossAttentionContext(states: try textStates(encoderHiddenStates))
        return try forward(sample: sample, timesteps: timesteps, context: context, textEmbeds: textEmbeds,
                           timeIDs: timeIDs, timestepCond: timestepCond, trace: trace)
    }

    /// `encoderHiddenStates` checked for rank and converted to the UNet's activation type.
    func textStates(_ encoderHiddenStates: Tensor) throws -> Tensor {
        guard encoderHiddenStates.rank == 3 else {
            throw ModelError.invalidInput(model: UNetNetwork.model, argument: "encoderHiddenStates",
                                          message: "expected [B, T, D], got \(encoderHiddenStates.shape)")
        }
        let dtype = backend.activationDType(for: .unet)
        return encoderHiddenStates.dtype == dtype ? encoderHiddenStates : try backend.convert(encoderHiddenStates, to: dtype)
    }

    func forward(sample: Tensor, timesteps: [Float], context: CrossAttentionContext, textEmbeds: Tensor?,
                 timeIDs: [Float]?, timestepCond: [Float]?, control: ControlNetResiduals? = nil, intrablock: [Tensor] = [],
                 freeU: FreeUFilters? = nil, perturbed: PerturbedSelfAttention? = nil, trace: ForwardTrace?) throws -> Tensor {
        let b = backend
        let model = UNetNetwork.model
        guard sample.rank == 4, sample.shape[3] == config.inChannels else {
            throw ModelError.invalidInput(model: model, argument: "sample", message: "expected NHWC [B, h, w, \(config.inChannels)], got \(sample.shape)")
        }
        let batch = sample.shape[0]
        guard sample.shape[1] > 0, sample.shape[2] > 0 else {
            throw ModelError.invalidInput(model: model, argument: "sample", message: "latent size \(sample.shape[1])×\(sample.shape[2]) is empty")
        }
        guard context.states.shape[0] == batch else {
            throw ModelError.invalidInput(model: model, argument: "encoderHiddenStates", message: "expected [\(batch), T, D], got \(context.states.shape)")
        }
        let steps: [Float]
        switch timesteps.count {
        case batch: steps = timesteps
        case 1: steps = Array(repeating: timesteps[0], count: batch)
        default:
            throw ModelError.invalidInput(model: model, argument: "timesteps", message: "expected \(batch) values (one per batch row), got \(timesteps.count)")
        }
        let dtype = b.activationDType(for: .unet)
        let x = sample.dtype == dtype ? sample : try b.convert(sample, to: dtype)
        let embeddingInputs = try network.embeddingInputs(timesteps: steps, textEmbeds: textEmbeds, timeIDs: timeIDs,
                                                          timestepCond: timestepCond, condDim: config.timeCondProjDim, dtype: dtype, b)
        if let freeU, freeU.latentHeight != x.shape[1] || freeU.latentWidth != x.shape[2] || freeU.unetKey != replayKey {
            throw ModelError.invalidInput(model: model, argument: "freeU", message: "filters made for \(freeU.latentHeight)×\(freeU.latentWidth) latents of another call or UNet")
        }
        let freeUFilters = freeU?.filters ?? []
        if let size = context.maskLatentSize, size != [x.shape[1], x.shape[2]] {
            throw ModelError.invalidInput(model: model, argument: "imagePrompts.masks",
                                          message: "made for \(size[0])×\(size[1]) latents, the sample is \(x.shape[1])×\(x.shape[2])")
        }
        var context = context
        if let perturbed, perturbed.rows > 0 {
            guard perturbed.rows < batch else {
                throw ModelError.invalidInput(model: model, argument: "perturbedAttention",
                                              message: "\(perturbed.rows) perturbed rows of a batch of \(batch) (some must attend as usual)")
            }
            let known = Set(network.registrationOrderSelfAttentions.map(\.name))
            if let unknown = perturbed.layers.first(where: { !known.contains($0) }) {
                throw ModelError.invalidInput(model: model, argument: "perturbedAttention", message: "no self-attention layer \(unknown)")
            }
            context.perturbedLayers = Set(perturbed.layers)
            context.perturbedRows = perturbed.rows
        }
        let used = try network.intrablockSlots(batch: batch, latentHeight: x.shape[1], latentWidth: x.shape[2],
                                               residuals: intrablock.map(\.shape)).count
        let intrablock = try intrablock.prefix(used).map { $0.dtype == dtype ? $0 : try b.convert($0, to: dtype) }
        if let trace {
            let emb = try network.embedding(embeddingInputs, b)
            trace.record("emb", emb)
            return try self.network.forward(x, emb: emb, context: context, control: control, intrablock: intrablock,
                                            freeU: freeUFilters, trace: trace, b)
        }
        // Everything after the host-side sinusoids issues the same ops for the same shapes: a
        // backend may record and replay it (CUDA graphs). The output is valid until the next call.
        // The key names this UNet only; the backend keys its recording by the input shapes too.
        // Cached cross-attention keys and values are inputs too (after the embedding tensors).
        let network = self.network
        let cachedNames = context.cached.keys.sorted()
        let cachedTensors = cachedNames.flatMap { name in context.cached[name].map { [$0.key, $0.value] } ?? [] }
        let embeddingCount = embeddingInputs.tensors.count
        // IP-Adapter keys and values next (per layer name, in adapter order), then ControlNet residuals
        // (a different count or shape makes another recording; the key says which layers have how many).
        // (each entry: key, value and, for a masked image, its mask; the key says which entries have one)
        let imageNames = context.imageKeysValues.keys.sorted()
        let imageMasked = imageNames.map { (context.imageKeysValues[$0] ?? []).map { $0.mask != nil } }
        let imageTensors = imageNames.flatMap { name in
            (context.imageKeysValues[name] ?? []).flatMap { [$0.key, $0.value] + ($0.mask.map { [$0] } ?? []) }
        }
        let controlTensors = control.map { $0.down + [$0.mid] } ?? []
        // Then the T2I-Adapter's feature maps (their count in the key), FreeU's bases last (its factors
        // are in the key: they are constants of the recorded ops).
        let freeUTensors = freeUFilters.map(\.basis)
        let inputs = [x, context.states] + embeddingInputs.tensors + cachedTensors + imageTensors + controlTensors + intrablock
            + freeUTensors
        let imageStart = 2 + embeddingCount + cachedTensors.count
        let freeUStart = inputs.count - freeUTensors.count
        let intrablockStart = freeUStart - intrablock.count
        let controlStart = intrablockStart - controlTensors.count
        let imageKey = imageTensors.isEmpty ? "" : "-ip" + imageMasked.map { $0.map { $0 ? "m" : "u" }.joined() }.joined(separator: ",")
        let freeUKey = freeUFilters.isEmpty ? "" : "-freeu" + freeUFilters.map { "\($0.backboneScale),\($0.skipScale)" }.joined(separator: ",")
        let intrablockKey = intrablock.isEmpty ? "" : "-adapter\(intrablock.count)"
        // (perturbed-attention guidance: which layers and rows are constants of the recorded ops)
        let perturbedKey = context.perturbedRows == 0 ? "" : "-pag\(context.perturbedRows):" + context.perturbedLayers.sorted().joined(separator: ",")
        let key = replayKey + imageKey + (control == nil ? "" : "-control") + intrablockKey + freeUKey + perturbedKey
        let (perturbedLayers, perturbedRows) = (context.perturbedLayers, context.perturbedRows)
        let outputs = try b.runReplayable(key: key, inputs: inputs) { inputs in
            let embedding = UNetNetwork.EmbeddingInputs(inputs[2..<(2 + embeddingCount)], like: embeddingInputs)
            let emb = try network.embedding(embedding, b)
            var replayed = CrossAttentionContext(states: inputs[1], perturbedLayers: perturbedLayers, perturbedRows: perturbedRows)
            for (i, name) in cachedNames.enumerated() {
                let at = 2 + embeddingCount + 2 * i
                replayed.cached[name] = CrossAttentionKV(key: inputs[at], value: inputs[at + 1])
            }
            var at = imageStart
            for (name, masked) in zip(imageNames, imageMasked) {
                replayed.imageKeysValues[name] = masked.map { hasMask in
                    let kv = CrossAttentionKV(key: inputs[at], value: inputs[at + 1], mask: hasMask ? inputs[at + 2] : nil)
                    at += hasMask ? 3 : 2
                    return kv
                }
            }
            let replayedControl = control.map { _ in
                ControlNetResiduals(down: Array(inputs[controlStart..<(intrablockStart - 1)]), mid: inputs[intrablockStart - 1])
            }
            let replayedFreeU = freeUFilters.enumerated().map { i, filter in
                FreeUFilter(backboneScale: filter.backboneScale, skipScale: filter.skipScale, pixels: filter.pixels,
                            basis: inputs[freeUStart + i])
            }
            return [try network.forward(inputs[0], emb: emb, context: replayed, control: replayedControl,
                                        intrablock: Array(inputs[intrablockStart..<freeUStart]), freeU: replayedFreeU, trace: nil, b)]
        }
        return outputs[0]
    }
}
