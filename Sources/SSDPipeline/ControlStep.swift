import SSDModels
import SSDTensor

/// The ControlNets' part of each denoising step (diffusers `StableDiffusionXLControlNetPipeline.__call__`,
/// with `MultiControlNetModel` for several): each control image prepared once (`prepare_image`: RGB in
/// [0, 1], repeated per image and, with guidance outside guess mode, for both halves of the batch),
/// which steps each applies to (`controlnet_keep`), and their residuals, summed, for the UNet.
struct ControlStep {
    /// One ControlNet with its input and prepared control image.
    struct Net {
        let model: ControlNetModel
        let input: ControlInput
        let image: Tensor
    }

    let nets: [Net]
    /// A ControlNet Union (`StableDiffusionXLControlNetUnionPipeline`): one model, every input a condition of it.
    let union: ControlNetModel?
    let guessMode: Bool
    let backend: any ComputeBackend
    /// The ControlNets' text inputs (the conditional half only in guess mode with guidance).
    let hiddenStates: Tensor
    let pooled: Tensor
    let timeIDs: [Float]
    /// Rows of the UNet batch, and of the ControlNets' (fewer in guess mode with guidance).
    let unetRows: Int
    let rows: Int
    let inspect: ((String, [Float]) -> Void)?
    /// Whether the residuals of a call were handed to `inspect` yet.
    private var inspected = false
    /// Guess mode with guidance: the unconditional half's zero residuals (diffusers' `torch.zeros_like`:
    /// zeros even where a residual is not finite), uploaded at the first call.
    private var unconditionalZeros: ControlNetResiduals?

    /// nil when the request has no `controls`.
    init?(run: GenerationRun, conditioning: Conditioning) throws {
        let controls = run.request.controls
        let union = run.models.controlNets.count == 1 && run.models.controlNets[0].isUnion ? run.models.controlNets[0] : nil
        guard !controls.isEmpty, union != nil || controls.count == run.models.controlNets.count else { return nil }
        self.union = union
        let backend = run.backend
        self.backend = backend
        inspect = run.inspect
        guessMode = controls[0].guessMode
        unetRows = run.unetRows
        let conditionalOnly = guessMode && run.usesGuidance
        let rows = conditionalOnly ? run.imageCount : unetRows
        self.rows = rows
        let size = run.request.size
        let models = union.map { [ControlNetModel](repeating: $0, count: controls.count) } ?? run.models.controlNets
        nets = try zip(models, controls).map { model, input in
            let pixels = try ImageProcessing.prepared(input.image, to: size, crop: run.maskCrop).pixels.map { Float($0) / 255 }
            let image = try backend.upload(Array([[Float]](repeating: pixels, count: rows).joined()),
                                           shape: [rows, size.height, size.width, 3],
                                           as: backend.activationDType(for: .unet))
            return Net(model: model, input: input, image: image)
        }
        if conditionalOnly {
            let half = run.imageCount..<unetRows
            hiddenStates = try backend.slice(conditioning.hiddenStates, axis: 0, range: half)
            pooled = try backend.slice(conditioning.pooled, axis: 0, range: half)
            let perRow = conditioning.timeIDs.count / unetRows
            timeIDs = Array(conditioning.timeIDs[(run.imageCount * perRow)...])
        } else {
            (hiddenStates, pooled, timeIDs) = (conditioning.hiddenStates, conditioning.pooled, conditioning.timeIDs)
        }
    }

    /// Checks, before any work, that the request has one input per ControlNet and that each ControlNet
    /// fits the UNet (`ControlNetModel.mismatch`) and embeds 3-channel images at the VAE's scale.
    static func validate(_ request: GenerationRequest, models: LoadedModels) throws {
        guard !request.controls.isEmpty else { return }
        if let i = models.controlNets.firstIndex(where: \.isUnion) {
            // (diffusers: one ControlNetUnionModel takes every condition; MultiControlNetUnionModel is not supported here)
            guard models.controlNets.count == 1 else {
                throw PipelineError.invalidArgument(name: "controlNets[\(i)]", message: "a ControlNet Union runs alone (one union model, several conditions)")
            }
            let types = models.controlNets[0].unionControlTypes ?? 0
            for (j, input) in request.controls.enumerated() {
                guard let mode = input.controlMode, (0..<types).contains(mode) else {
                    throw PipelineError.invalidArgument(
                        name: "controls[\(j)].controlMode", message: "a ControlNet Union needs each input's condition type, 0..<\(types) (diffusers control_mode)")
                }
                if input.guessMode, request.guidanceScale > 1, models.unet.config.timeCondProjDim == nil {
                    throw PipelineError.invalidArgument(
                        name: "controls[\(j)].guessMode", message: "is not supported with a ControlNet Union and guidance (diffusers' union pipelines fail on it: control_type is repeated for both halves)")
                }
            }
            if request.initialImage?.paddingMaskCrop != nil {
                // (diffusers' union inpainting pipeline wraps control_image in a list, which its check_inputs then refuses)
                throw PipelineError.invalidArgument(name: "paddingMaskCrop", message: "is not supported with a ControlNet Union (diffusers' union inpainting pipeline refuses it)")
            }
            if request.initialImage?.mask != nil, models.unet.config.inChannels != 4 {
                // (diffusers' StableDiffusionXLControlNetUnionInpaintPipeline raises for other UNets)
                throw PipelineError.invalidArgument(name: "initialImage", message: "ControlNet Union inpainting takes a 4-channel UNet, as diffusers' union inpainting pipeline; this one has \(models.unet.config.inChannels)")
            }
            if request.perturbedAttentionGuidance.map({ $0.scale > 0 && !$0.layers.isEmpty }) == true {
                throw PipelineError.invalidArgument(name: "perturbedAttentionGuidance", message: "is not combined with a ControlNet Union (diffusers has no such SDXL pipeline)")
            }
        } else {
            guard request.controls.count == models.controlNets.count else {
                throw PipelineError.invalidArgument(
                    name: "controls", message: "\(request.controls.count) inputs for \(models.controlNets.count) ControlNets (PipelineConfiguration.controlNets)")
            }
            if let j = request.controls.firstIndex(where: { $0.controlMode != nil }) {
                throw PipelineError.invalidArgument(name: "controls[\(j)].controlMode", message: "is for a ControlNet Union; these ControlNets take none")
            }
        }
        let vaeFactor = 1 << (models.vae.config.blockOutChannels.count - 1)
        for (i, controlNet) in models.controlNets.enumerated() {
            if let mismatch = controlNet.mismatch(with: models.unet) {
                throw PipelineError.invalidArgument(name: "controlNets[\(i)]", message: "does not fit this UNet: \(mismatch)")
            }
            let factor = 1 << (controlNet.config.conditioningEmbeddingOutChannels.count - 1)
            guard factor == vaeFactor, controlNet.config.conditioningChannels == 3 else {
                throw PipelineError.invalidArgument(
                    name: "controlNets[\(i)]", message: "embeds \(controlNet.config.conditioningChannels)-channel control images at 1/\(factor) scale; the VAE's latents are at 1/\(vaeFactor) and images have 3 channels")
            }
        }
    }

    /// `controlnet_keep[i]` of one input: 1 while step i of n lies inside [start, end], else 0.
    static func keep(_ input: ControlInput, step i: Int, of n: Int) -> Bool {
        !(Double(i) / Double(n) < input.guidanceStart || Double(i + 1) / Double(n) > input.guidanceEnd)
    }

    /// The summed residuals for the UNet call of step `stepIndex` on `sample` (the UNet's scaled input),
    /// or nil where every ControlNet is outside its guidance window or at scale 0 (diffusers then runs
    /// them and adds zeros: the same result).
    mutating func residuals(sample: Tensor, timestep: Float, stepIndex: Int, stepCount: Int) throws -> ControlNetResiduals? {
        let input = rows == unetRows ? sample : try backend.slice(sample, axis: 0, range: (unetRows - rows)..<unetRows)
        var sum: ControlNetResiduals?
        if let union {
            // One call with every condition at its scale × `controlnet_keep`; one condition at scale 0 gives zeros (skipped),
            // several always run (their latents' part stays).
            let conditions = nets.map { net in
                ControlNetUnionCondition(image: net.image, mode: net.input.controlMode ?? 0,
                                         scale: Self.keep(net.input, step: stepIndex, of: stepCount) ? Float(net.input.conditioningScale) : 0)
            }
            if conditions.count > 1 || conditions[0].scale != 0 {
                sum = try union(sample: input, timesteps: [Float](repeating: timestep, count: rows), encoderHiddenStates: hiddenStates,
                                conditions: conditions, guessMode: guessMode, textEmbeds: pooled, timeIDs: timeIDs)
            }
        }
        for net in nets where union == nil {
            let scale = Float(net.input.conditioningScale)
            guard Self.keep(net.input, step: stepIndex, of: stepCount), scale != 0 else { continue }
            let out = try net.model(
                sample: input, timesteps: [Float](repeating: timestep, count: rows), encoderHiddenStates: hiddenStates,
                controlImage: net.image, conditioningScale: scale, guessMode: guessMode, textEmbeds: pooled, timeIDs: timeIDs)
            if let previous = sum {
                // MultiControlNetModel's order: the earlier nets' sum plus this one's.
                sum = ControlNetResiduals(down: try zip(previous.down, out.down).map { try backend.binary($0, $1, .add) },
                                          mid: try backend.binary(previous.mid, out.mid, .add))
            } else {
                sum = out
            }
        }
        guard var out = sum else { return nil }
        if let inspect, !inspected {
            inspected = true
            inspect("controlnet_down", try out.down.flatMap { try nchw($0) })
            inspect("controlnet_mid", try nchw(out.mid))
        }
        if rows < unetRows {
            // Guess mode: no residuals for the unconditional half.
            let backend = backend
            func zeros(like t: Tensor) throws -> Tensor {
                try backend.upload([Float](repeating: 0, count: t.count), shape: t.shape, as: t.dtype)
            }
            let unconditional = try unconditionalZeros ?? ControlNetResiduals(down: out.down.map { try zeros(like: $0) }, mid: zeros(like: out.mid))
            unconditionalZeros = unconditional
            out = ControlNetResiduals(down: try zip(unconditional.down, out.down).map { try backend.concat([$0, $1], axis: 0) },
                                      mid: try backend.concat([unconditional.mid, out.mid], axis: 0))
        }
        return out
    }

    private func nchw(_ t: Tensor) throws -> [Float] {
        Layout.nhwcToNCHW(try backend.download(t), t.shape[0], t.shape[3], t.shape[1], t.shape[2])
    }
}
