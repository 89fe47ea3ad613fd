import SSDModels
import SSDSchedulers
import SSDTensor
import SSDTokenizer

/// Text-to-image, img2img and inpainting with SSD-1B / SDXL diffusers folders
/// (diffusers `StableDiffusionXLPipeline`, `StableDiffusionXLImg2ImgPipeline`,
/// `StableDiffusionXLInpaintPipeline` for 4- and 9-channel UNets; diffusers
/// `pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl{,_img2img,_inpaint}.py`), with
/// ControlNets (`pipelines/controlnet/pipeline_controlnet{,_img2img,_inpaint}_sd_xl.py`).
///
/// ```swift
/// let pipeline = try await DiffusionPipeline(contentsOf: "/models/SSD-1B")
/// var request = GenerationRequest(prompt: "an astronaut riding a horse")
/// request.negativePrompt = "ugly, blurry, poor quality"
/// let images = try await pipeline.generate(request)
/// ```
/// One request runs at a time on one backend; `setBackend` re-materialises the weights.
public actor DiffusionPipeline {
    /// The model folder.
    public nonisolated let path: String
    /// Load-time options.
    public private(set) var configuration: PipelineConfiguration
    private let folder: PipelineFolder
    private let tokenizers: PromptTokenizers
    private let schedulerConfiguration: SchedulerConfiguration
    private var backend: any ComputeBackend
    private var models: LoadedModels
    /// Why `.automatic` passed over faster backends (empty for an explicit choice).
    private var passedOver: [String]

    /// Loads a diffusers pipeline folder (`model_index.json`, `unet/`, `vae/`, `text_encoder*/`,
    /// `tokenizer*/`, `scheduler/`) onto the configured backend.
    public init(contentsOf path: String, configuration: PipelineConfiguration = .init()) async throws {
        self.path = path
        self.configuration = configuration
        folder = try PipelineFolder(path: path)
        tokenizers = try PromptTokenizers(folder: folder, textualInversions: configuration.textualInversions)
        schedulerConfiguration = try SchedulerConfiguration(contentsOf: folder.componentDirectory("scheduler") + "/scheduler_config.json")
        (backend, passedOver) = try BackendFactory.makeReporting(configuration.backend, precision: configuration.precision)
        models = try LoadedModels(folder: folder, backend: backend, configuration: configuration)
        // Textual inversion tokens get ids past the tokenizer's; the encoders' new rows must sit there.
        if !configuration.textualInversions.isEmpty {
            for (tokenizer, encoder, name) in [(tokenizers.first, models.textEncoder, "text_encoder"), (tokenizers.second, models.textEncoder2, "text_encoder_2")] {
                if let tokenizer, let encoder, Int(tokenizer.count) != encoder.tokenCount {
                    throw PipelineError.invalidArgument(
                        name: "textualInversions", message: "\(name) embeds \(encoder.tokenCount) tokens, its tokenizer knows \(tokenizer.count)")
                }
            }
        }
    }

    /// The backend in use.
    public var backendName: String { backend.name }

    /// The backend's `statusReport` (device, kernel and tuning choices, recorded regions), then for an
    /// automatic choice why faster backends were passed over.
    public var backendReport: String {
        ([backend.statusReport] + passedOver.map { "passed over: \($0)" }).joined(separator: "\n")
    }

    /// Bytes the backend holds now and at its peak (weights plus activations).
    public func memoryStatistics() -> BackendMemoryStatistics { backend.memoryStatistics() }

    /// Starts a new peak-memory measurement.
    public func resetPeakMemory() { backend.resetPeakMemory() }

    /// Moves the pipeline to another backend: the weights are prepared again from the mapped files.
    public func setBackend(_ choice: BackendChoice, precision: Precision? = nil) throws {
        var newConfiguration = configuration
        newConfiguration.backend = choice
        if let precision { newConfiguration.precision = precision }
        let (newBackend, newPassedOver) = try BackendFactory.makeReporting(choice, precision: newConfiguration.precision)
        let newModels = try LoadedModels(folder: folder, backend: newBackend, configuration: newConfiguration)
        backend = newBackend
        models = newModels
        passedOver = newPassedOver
        configuration = newConfiguration
    }

    /// What each LoRA of `configuration.loras` changed: layers per network, and its layers that name
    /// no layer of these networks (skipped, as diffusers skips them).
    public var loraReports: [LoRAReport] { models.loraReports }

    /// Replaces the LoRAs (an empty list removes them): the networks are loaded again from the mapped
    /// files with the new updates fused in (diffusers `unfuse_lora` / `load_lora_weights` / `fuse_lora`).
    public func setLoRAs(_ loras: [LoRAWeights]) throws {
        var newConfiguration = configuration
        newConfiguration.loras = loras
        let newModels = try LoadedModels(folder: folder, backend: backend, configuration: newConfiguration)
        models = newModels
        configuration = newConfiguration
    }

    /// diffusers `encode_prompt`: the request's text conditioning for one image (`prompt`, `prompt2`,
    /// `clipSkip`; with guidance also the negative: zeros when `negativePrompt` is nil and the folder has
    /// `force_zeros_for_empty_prompt`), for `GenerationRequest.promptEmbeddings` and
    /// `negativePromptEmbeddings` (to cache them, or change them before generating).
    public func encodePrompt(_ request: GenerationRequest) throws -> (prompt: PromptEmbeddings, negative: PromptEmbeddings?) {
        try models.reloadTextEncodersIfNeeded(folder: folder, backend: backend, configuration: configuration)
        defer { if configuration.releasesTextEncodersAfterEncoding { models.releaseTextEncoders() } }
        var textOnly = request
        textOnly.promptEmbeddings = nil
        textOnly.negativePromptEmbeddings = nil
        let run = try GenerationRun(
            request: textOnly, models: models, backend: backend, tokenizers: tokenizers, modelIndex: folder.modelIndex,
            schedulerConfiguration: schedulerConfiguration, progress: nil, textOnly: true)
        let (positive, negative, _) = try PromptEncoding(run: run).embeddings()
        func embeddings(_ e: PromptEncoding.Encoded) -> PromptEmbeddings {
            PromptEmbeddings(tokens: e.sequence, width: e.width, hiddenStates: e.hidden, pooled: e.pooled)
        }
        return (embeddings(positive), negative.map(embeddings))
    }

    /// diffusers `prepare_ip_adapter_image_embeds` without the batch layout: for each of the request's
    /// `imagePrompts` (one per IP-Adapter), the image encoder's features of its images and their negative,
    /// for `ImagePrompt(embeddings:)` (to cache the encoder's work across generations).
    public func encodeImagePrompts(_ request: GenerationRequest) throws -> [ImageEmbeddings] {
        try models.reloadImageEncoderIfNeeded(backend: backend, configuration: configuration)
        defer { if configuration.releasesTextEncodersAfterEncoding { models.releaseTextEncoders() } }
        try ImagePromptEncoding.validate(request, models: models)
        let run = try GenerationRun(
            request: request, models: models, backend: backend, tokenizers: tokenizers, modelIndex: folder.modelIndex,
            schedulerConfiguration: schedulerConfiguration, progress: nil, textOnly: true)
        let encoding = ImagePromptEncoding(run: run)
        var call = 0
        return try zip(models.ipAdapters, request.imagePrompts).map { adapter, prompt in
            if let given = prompt.embeddings { return given }
            let (positive, negative) = try encoding.features(adapter, images: prompt.images, negative: true, encoderCall: &call)
            return ImageEmbeddings(shape: positive.shape, positive: try backend.download(positive),
                                   negative: try negative.map { try backend.download($0) })
        }
    }

    /// Generates the request's images. Cancelling the task stops within one step and throws `CancellationError`.
    public func generate(_ request: GenerationRequest) async throws -> [RGBImage] {
        try await generateResult(request).images
    }

    /// Generates and returns the images with their final latents and seed.
    public func generateResult(_ request: GenerationRequest, progress: (@Sendable (GenerationEvent) -> Void)? = nil) async throws -> GenerationResult {
        try generateResult(request, progress: progress, inspect: nil)
    }

    /// `generateResult` handing named intermediates to `inspect` (tests compare them with diffusers').
    func generateResult(
        _ request: GenerationRequest, progress: (@Sendable (GenerationEvent) -> Void)?, inspect: ((String, [Float]) -> Void)?
    ) throws -> GenerationResult {
        try models.reloadTextEncodersIfNeeded(folder: folder, backend: backend, configuration: configuration)
        try models.reloadImageEncoderIfNeeded(backend: backend, configuration: configuration)
        var run = try GenerationRun(
            request: request, models: models, backend: backend, tokenizers: tokenizers,
            modelIndex: folder.modelIndex,
            schedulerConfiguration: schedulerConfiguration, progress: progress)
        run.inspect = inspect
        let result = try run.execute(afterEncoding: { [configuration] in
            if configuration.releasesTextEncodersAfterEncoding { self.models.releaseTextEncoders() }
        })
        return result
    }

    /// The generation as a stream of events: `.started`, one `.step` per denoising step, `.finished`.
    /// Ending the iteration early cancels the generation.
    public nonisolated func run(_ request: GenerationRequest) -> AsyncThrowingStream<GenerationEvent, Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    let result = try await self.generateResult(request) { event in continuation.yield(event) }
                    continuation.yield(.finished(result))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
