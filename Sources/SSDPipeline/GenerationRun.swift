import SSDModels
import SSDSchedulers
import SSDTensor
import SSDTokenizer

/// One generation: validation, prompt encoding, latent preparation, the denoising loop, decoding.
/// Mirrors diffusers' SDXL pipelines step by step (file names in the comments of each stage).
struct GenerationRun {
    let request: GenerationRequest
    let models: LoadedModels
    let backend: any ComputeBackend
    let tokenizers: PromptTokenizers
    /// `force_zeros_for_empty_prompt` of the folder (false for the refiner).
    let forceZerosForEmptyPrompt: Bool
    /// `requires_aesthetics_score` of the folder (the refiner's micro-conditioning).
    let requiresAestheticsScore: Bool
    /// `num_train_timesteps` of the folder's scheduler (for `denoisingStart` / `denoisingEnd`).
    let trainTimesteps: Int
    let progress: (@Sendable (GenerationEvent) -> Void)?
    /// Receives named intermediate tensors (NCHW host arrays) for parity checks; nil in normal use.
    var inspect: ((String, [Float]) -> Void)?

    let seed: UInt64
    let latentHeight: Int
    let latentWidth: Int
    let latentChannels: Int
    /// `guidance_scale > 1` and not a guidance-distilled (LCM) UNet.
    let usesGuidance: Bool
    var scheduler: any Scheduler
    let schedulerName: String
    /// Perturbed-attention guidance's layers and rows (nil: off).
    let perturbedAttention: PerturbedSelfAttention?

    init(
        request: GenerationRequest, models: LoadedModels, backend: any ComputeBackend,
        tokenizers: PromptTokenizers, modelIndex: ModelIndex,
        schedulerConfiguration: SchedulerConfiguration, progress: (@Sendable (GenerationEvent) -> Void)?,
        textOnly: Bool = false
    ) throws {
        self.request = request
        self.models = models
        self.backend = backend
        self.tokenizers = tokenizers
        forceZerosForEmptyPrompt = modelIndex.forceZerosForEmptyPrompt
        requiresAestheticsScore = modelIndex.requiresAestheticsScore
        trainTimesteps = try schedulerConfiguration.trainTimesteps
        self.progress = progress
        let factor = 1 << (models.vae.config.blockOutChannels.count - 1)
        try RequestValidation.validate(request, vaeScaleFactor: factor, latentChannels: models.vae.config.latentChannels)
        // (`encodePrompt` needs the text inputs only)
        if !textOnly { try Self.validateForGeneration(request, models: models, modelIndex: modelIndex) }
        seed = request.seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        latentHeight = request.size.height / factor
        latentWidth = request.size.width / factor
        latentChannels = models.vae.config.latentChannels
        usesGuidance = request.guidanceScale > 1 && models.unet.config.timeCondProjDim == nil
        (scheduler, schedulerName) = try SchedulerSelection.make(request.scheduler, configuration: schedulerConfiguration, eta: request.eta)
        perturbedAttention = textOnly ? nil : try Self.perturbedAttention(request, unet: models.unet)
    }

    /// The layers perturbed-attention guidance selects (diffusers `_set_pag_attn_processor`), nil when it is off
    /// (`scale` ≤ 0 or no layers, as diffusers' `do_perturbed_attention_guidance`).
    static func perturbedAttention(_ request: GenerationRequest, unet: UNet2DConditionModel) throws -> PerturbedSelfAttention? {
        guard let pag = request.perturbedAttentionGuidance, pag.scale > 0, !pag.layers.isEmpty else { return nil }
        do {
            return PerturbedSelfAttention(layers: try unet.selfAttentionLayers(matching: pag.layers), rows: request.imagesPerPrompt)
        } catch let ModelError.invalidInput(_, _, message) {
            throw PipelineError.invalidArgument(name: "perturbedAttentionGuidance.layers", message: message)
        }
    }

    /// Parts of the UNet batch, `imageCount` rows each: (unconditional,) conditional(, perturbed).
    var batchParts: Int { (usesGuidance ? 2 : 1) + (perturbedAttention == nil ? 0 : 1) }
    /// Rows of the UNet batch.
    var unetRows: Int { batchParts * imageCount }

    /// The checks of a whole generation beyond `RequestValidation`: the UNet's inputs, tiling, previews,
    /// the refiner's image-to-image only rule, ControlNets, IP-Adapters and T2I-Adapters.
    static func validateForGeneration(_ request: GenerationRequest, models: LoadedModels, modelIndex: ModelIndex) throws {
        try validateUNetInput(request, models: models)
        if let tiling = request.vaeTiling {
            do {
                try tiling.validate(for: models.vae.config, width: request.size.width, height: request.size.height)
            } catch let ModelError.invalidInput(_, _, message) {
                throw PipelineError.invalidArgument(name: "vaeTiling", message: message)
            }
        }
        if request.previewInterval < 0 {
            throw PipelineError.invalidArgument(name: "previewInterval", message: "\(request.previewInterval) must not be negative")
        }
        if request.previewInterval > 0, models.previewDecoder == nil {
            throw PipelineError.invalidArgument(name: "previewInterval", message: "needs PipelineConfiguration.previewDecoder (a TAESD folder)")
        }
        if request.previewInterval > 0, let taesd = models.previewDecoder, taesd.config.latentChannels != models.unet.config.outChannels {
            throw PipelineError.invalidArgument(
                name: "previewDecoder", message: "has \(taesd.config.latentChannels) latent channels, the UNet \(models.unet.config.outChannels)")
        }
        if modelIndex.requiresAestheticsScore, request.initialImage == nil, request.denoisingStart == nil {
            throw PipelineError.invalidArgument(
                name: "initialImage", message: "a refiner folder (requires_aesthetics_score) runs image-to-image only: give initialImage, or initialLatents with denoisingStart")
        }
        try ControlStep.validate(request, models: models)
        try ImagePromptEncoding.validate(request, models: models)
        let factor = 1 << (models.vae.config.blockOutChannels.count - 1)
        try AdapterStep.validate(request, models: models, latentHeight: request.size.height / factor,
                                 latentWidth: request.size.width / factor)
    }

    /// The UNet's input channels: the latents', or for an inpainting UNet (diffusers'
    /// `num_channels_unet == 9`) the latents, the mask and the masked image's latents.
    var unetInputChannels: Int { models.unet.config.inChannels }

    /// The UNet must predict the VAE's latents from them (diffusers: `in_channels` 4, or 9 for an
    /// inpainting UNet, which needs a mask).
    static func validateUNetInput(_ request: GenerationRequest, models: LoadedModels) throws {
        let latent = models.vae.config.latentChannels, unet = models.unet.config
        guard unet.outChannels == latent, unet.inChannels == latent || unet.inChannels == 2 * latent + 1 else {
            throw PipelineError.invalidArgument(
                name: "unet", message: "takes \(unet.inChannels) channels and predicts \(unet.outChannels); with the VAE's \(latent) latent channels it must take \(latent) (or \(2 * latent + 1) for inpainting: latents, mask, masked image) and predict \(latent)")
        }
        if unet.inChannels != latent, request.initialImage?.mask == nil {
            throw PipelineError.invalidArgument(
                name: "initialImage", message: "this UNet is an inpainting UNet (\(unet.inChannels) input channels: latents, mask, masked image): give an image and a mask")
        }
    }

    var imageCount: Int { request.imagesPerPrompt }
    var latentCount: Int { imageCount * latentChannels * latentHeight * latentWidth }
    var latentShape: [Int] { [imageCount, latentChannels, latentHeight, latentWidth] }
    /// The type diffusers draws the noise in: the pipeline's (text encoder) dtype. fp16 draws differ
    /// from fp32 ones beyond rounding (torch's tail block), so seeds match only with the same type.
    var latentDType: DType { backend.activationDType(for: .unet) }

    mutating func execute(afterEncoding: () -> Void) throws -> GenerationResult {
        try Task.checkCancellation()
        let conditioning = try PromptEncoding(run: self).encode()
        let imagePrompts = try ImagePromptEncoding(run: self).encode()
        afterEncoding()
        try Task.checkCancellation()

        let strength = request.initialImage.map { $0.strength ?? ($0.mask == nil ? 0.3 : 0.9999) }
        if let custom = request.customSchedule {
            // diffusers' `timesteps=` / `sigmas=` (`retrieve_timesteps`; `num_inference_steps` is then its length)
            // (with `denoising_start`: `retrieve_timesteps`, then `get_timesteps`' cut on that schedule)
            do {
                if let start = request.denoisingStart {
                    try scheduler.setTimesteps(custom, denoisingStart: start)
                } else {
                    try scheduler.setTimesteps(custom, strength: strength)
                }
            } catch let error as SchedulerError {
                if case .noStepsForStrength = error { throw PipelineError.invalidArgument(name: "strength", message: "\(error) (custom schedule)") }
                if case .noStepsForDenoisingStart = error { throw PipelineError.invalidArgument(name: "denoisingStart", message: "\(error) (custom schedule)") }
                throw PipelineError.invalidArgument(name: "customSchedule", message: "\(error)")
            }
        } else if let start = request.denoisingStart {
            // img2img's `denoising_start` (strength is then ignored, as in diffusers)
            try scheduler.setTimesteps(request.steps, denoisingStart: start)
        } else {
            try scheduler.setTimesteps(request.steps, strength: strength)
        }
        var timesteps = scheduler.timesteps
        // diffusers' `num_inference_steps`: `steps`, or with a custom schedule the timesteps set (`retrieve_timesteps`)
        let stepCount = request.customSchedule == nil ? request.steps : timesteps.count
        guard !timesteps.isEmpty else {
            throw PipelineError.invalidArgument(
                name: "strength", message: "\(strength ?? 1) with \(stepCount) steps leaves no denoising step")
        }
        if let end = request.denoisingEnd {
            // `denoising_end`: stop where a refiner takes over (`output_type="latent"`: result.latents)
            timesteps = Array(timesteps.prefix(scheduler.stepCount(denoisingEnd: end, trainTimesteps: trainTimesteps)))
            guard !timesteps.isEmpty else {
                throw PipelineError.invalidArgument(
                    name: "denoisingEnd", message: "\(end) with \(stepCount) steps leaves no denoising step before it")
            }
        }
        var generator = TorchCPUGenerator(seed: seed)
        let start = try LatentPreparation(run: self).prepare(timesteps: timesteps, generator: &generator)
        progress?(.started(totalSteps: timesteps.count, seed: seed))

        let rows = unetRows
        let timestepCond = models.unet.config.timeCondProjDim.map {
            GuidanceEmbedding.embedding(guidanceScale: Float(request.guidanceScale) - 1, dimension: $0, rows: rows)
        }
        // The cross-attention keys and values of the text, projected once for every step.
        let textConditioning = try models.unet.textConditioning(encoderHiddenStates: conditioning.hiddenStates,
                                                                imagePrompts: imagePrompts)
        var latents = start.latents
        inspect?("initial_latents", latents)
        var control = try ControlStep(run: self, conditioning: conditioning)
        // The T2I-Adapters' feature maps, once for every step (diffusers counts the steps after `denoising_end`).
        let adapter = try AdapterStep(run: self, stepCount: request.denoisingEnd == nil ? stepCount : timesteps.count)
        // FreeU's Fourier bases, once for every step.
        let freeU = try request.freeU.map { try models.unet.freeUFilters($0, latentHeight: latentHeight, latentWidth: latentWidth) }
        let clock = ContinuousClock()
        var adapterCalls: [Float] = []  // (for `inspect`: which UNet calls got the T2I-Adapters' maps)
        for (index, t) in timesteps.enumerated() {
            try Task.checkCancellation()
            let began = clock.now
            let input = batchParts == 1 ? latents : Array([[Float]](repeating: latents, count: batchParts).joined())
            let scaled = try scheduler.scaleModelInput(input, timestepIndex: index)
            // An inpainting UNet also takes the mask and the masked image's latents (after the scaling).
            let unetInput = start.maskInput?.unetInput(scaled, rows: rows) ?? scaled
            if index == 0 { inspect?("first_unet_input", unetInput) }
            func upload(_ nchw: [Float], channels: Int) throws -> Tensor {
                try backend.upload(Layout.nchwToNHWC(nchw, rows, channels, latentHeight, latentWidth),
                                   shape: [rows, latentHeight, latentWidth, channels], as: conditioning.hiddenStates.dtype)
            }
            let sample = try upload(unetInput, channels: unetInputChannels)
            // ControlNets see the latents alone (diffusers' `control_model_input`).
            let controlSample = control == nil || start.maskInput == nil ? sample : try upload(scaled, channels: latentChannels)
            let residuals = try control?.residuals(sample: controlSample, timestep: Float(t), stepIndex: index, stepCount: timesteps.count)
            let intrablock = adapter?.residuals(stepIndex: index) ?? []
            adapterCalls.append(intrablock.isEmpty ? 0 : 1)
            let output = try models.unet(
                sample: sample, timesteps: [Float](repeating: Float(t), count: rows),
                conditioning: textConditioning, textEmbeds: conditioning.pooled,
                timeIDs: conditioning.timeIDs, timestepCond: timestepCond?.flatMap { $0 }, controlResiduals: residuals,
                intrablockResiduals: intrablock, freeU: freeU, perturbedAttention: perturbedAttention)
            let outChannels = output.shape[3]
            var noise = Layout.nhwcToNCHW(try backend.download(output), rows, outChannels, latentHeight, latentWidth)
            if index == 0 { inspect?("first_noise_pred", noise) }
            if perturbedAttention != nil, let pag = request.perturbedAttentionGuidance {
                let (guided, conditional) = Guidance.perturbed(
                    noise, guidanceScale: usesGuidance ? Float(request.guidanceScale) : nil, pagScale: pag.scale(at: Float(t)))
                noise = usesGuidance && request.guidanceRescale > 0
                    ? Guidance.rescale(guided, conditional: conditional, rows: imageCount, factor: Float(request.guidanceRescale))
                    : guided
            } else if usesGuidance {
                let (guided, conditional) = Guidance.combine(noise, scale: Float(request.guidanceScale))
                noise = request.guidanceRescale > 0
                    ? Guidance.rescale(guided, conditional: conditional, rows: imageCount, factor: Float(request.guidanceRescale))
                    : guided
            }
            latents = try scheduler.step(modelOutput: noise, sample: latents, random: &generator)
            if let inpainting = start.inpainting {
                latents = try inpainting.blend(latents, stepIndex: index, stepCount: timesteps.count, scheduler: scheduler)
            }
            guard Layout.allFinite(latents) else {
                throw PipelineError.nonFiniteValues(stage: "latents after step \(index + 1)")
            }
            // The step's time and memory exclude the preview decode that may follow.
            let seconds = Self.seconds(clock.now - began)
            let peakBytes = backend.memoryStatistics().peakBytes
            let interval = request.previewInterval
            let previews = interval > 0 && ((index + 1) % interval == 0 || index + 1 == timesteps.count) && progress != nil
                ? try preview(latents) : nil
            progress?(.step(StepProgress(
                step: index + 1, totalSteps: timesteps.count, timestep: t, seconds: seconds, backendPeakBytes: peakBytes,
                latents: request.reportsLatents ? LatentArray(shape: latentShape, values: latents) : nil, previews: previews)))
        }
        if adapter != nil { inspect?("adapter_calls", adapterCalls) }
        try Task.checkCancellation()
        let images = try overlaid(decode(latents))
        return GenerationResult(
            images: images, latents: LatentArray(shape: latentShape, values: latents), seed: seed,
            schedulerName: schedulerName, notes: conditioning.notes)
    }

    /// `latents / scaling_factor` → VAE decoder → 8-bit RGB (diffusers `vae.decode` + `postprocess`).
    /// Images are decoded one at a time (every VAE op is per image), which keeps the decoder's peak
    /// memory at one image's worth whatever `imagesPerPrompt` is; with `vaeTiling`, one tile's worth.
    func decode(_ latents: [Float]) throws -> [RGBImage] {
        let vae = models.vae
        return try eachImage(latents, dividedBy: Float(vae.config.scalingFactor), component: vae.component) { index, input in
            let decoded = try backend.download(vae.decode(input, tiling: request.vaeTiling))
            guard Layout.allFinite(decoded) else {
                throw PipelineError.nonFiniteValues(stage: "decoded image \(index + 1) (VAE output)")
            }
            return try ImageProcessing.images(
                fromDecoded: decoded, batch: 1, height: request.size.height, width: request.size.width)
        }
    }

    /// TAESD's decode of `latents` (`latents / scaling_factor` as diffusers' pipeline would with
    /// `AutoencoderTiny` as its VAE) as 8-bit images, one image at a time like `decode` (at 1024² a
    /// TAESDXL decode holds about 1 GiB of fp32 activations per image).
    func preview(_ latents: [Float]) throws -> [RGBImage]? {
        guard let taesd = models.previewDecoder else { return nil }
        return try eachImage(latents, dividedBy: Float(taesd.config.scalingFactor), component: taesd.component) { _, input in
            let output = try taesd.decode(input)
            return try ImageProcessing.images(
                fromDecoded: backend.download(output), batch: 1, height: output.shape[1], width: output.shape[2])
        }
    }

    /// Runs `body` on each image's latents (NCHW `latents` divided by `scale`, uploaded as NHWC
    /// `[1, h, w, C]` in `component`'s activation type), checking cancellation between images.
    private func eachImage(_ latents: [Float], dividedBy scale: Float, component: ModelComponent,
                           _ body: (Int, Tensor) throws -> [RGBImage]) throws -> [RGBImage] {
        let perImage = latentChannels * latentHeight * latentWidth
        var images = [RGBImage]()
        for index in 0..<imageCount {
            try Task.checkCancellation()
            let scaled = latents[(index * perImage)..<((index + 1) * perImage)].map { $0 / scale }
            let input = try backend.upload(
                Layout.nchwToNHWC(scaled, 1, latentChannels, latentHeight, latentWidth),
                shape: [1, latentHeight, latentWidth, latentChannels], as: backend.activationDType(for: component))
            images += try body(index, input)
        }
        return images
    }

    static func seconds(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return Double(s) + Double(atto) * 1e-18
    }
}

/// The LCM guidance embedding (diffusers `get_guidance_scale_embedding`), one row per UNet batch row.
enum GuidanceEmbedding {
    static func embedding(guidanceScale w: Float, dimension: Int, rows: Int) -> [[Float]] {
        let half = dimension / 2
        let scaled = w * 1000
        let step = Float(log(10000.0) / Double(half - 1))
        var row = [Float](repeating: 0, count: dimension)
        for i in 0..<half {
            let freq = Float(exp(Double(Float(i) * -step)))
            let v = scaled * freq
            row[i] = Float(sin(Double(v)))
            row[half + i] = Float(cos(Double(v)))
        }
        return Array(repeating: row, count: rows)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
