import SSDModels
import SSDTensor

/// The T2I-Adapters' part of a generation (diffusers `StableDiffusionXLAdapterPipeline.__call__`): each
/// image prepared (`_preprocess_adapter_image`: resized to the output size, `/255`), the feature maps
/// computed once, scaled (`adapter_conditioning_scale`; several adapters summed with their scales as
/// weights, as `MultiAdapter`), repeated for every row of the UNet batch, and handed to the UNet for the
/// first ⌊n · `adapter_conditioning_factor`⌋ steps.
struct AdapterStep {
    /// The summed feature maps, `[rows, h, w, c]` each.
    let features: [Tensor]
    /// Steps `0..<activeSteps` get them.
    let activeSteps: Int

    /// nil when the request has no `adapters`. `stepCount`: diffusers' `num_inference_steps` at the loop
    /// (the requested steps, or the evaluations left by `denoisingEnd`).
    init?(run: GenerationRun, stepCount: Int) throws {
        let inputs = run.request.adapters
        guard !inputs.isEmpty, inputs.count == run.models.t2iAdapters.count else { return nil }
        let backend = run.backend
        let size = run.request.size
        var sum: [Tensor]?
        for (adapter, input) in zip(run.models.t2iAdapters, inputs) {
            // (a one-channel adapter takes the "L" image the caller would make, then resized as diffusers does)
            let channels = adapter.config.inChannels
            let bytes: [UInt8] = channels == 1
                ? ImageProcessing.pilResize(input.image.greyscale(), channels: 1, width: input.image.width, height: input.image.height,
                                            toWidth: size.width, toHeight: size.height, filter: .lanczos)
                : try ImageProcessing.resized(input.image, to: size).pixels
            let pixels = bytes.map { Float($0) / 255 }
            let tensor = try backend.upload(pixels, shape: [1, size.height, size.width, channels],
                                            as: backend.activationDType(for: .unet))
            let scale = Float(input.conditioningScale)
            let scaled = try adapter(tensor).map { try backend.affine($0, scale: scale, shift: 0) }
            if let previous = sum {
                sum = try zip(previous, scaled).map { try backend.binary($0, $1, .add) }
            } else {
                sum = scaled
            }
        }
        let rows = run.unetRows
        features = try (sum ?? []).map { rows == 1 ? $0 : try backend.concat(Array(repeating: $0, count: rows), axis: 0) }
        activeSteps = Int(Double(stepCount) * run.request.adapterConditioningFactor)
        if let inspect = run.inspect {
            inspect("adapter_features", try features.flatMap { t in
                Layout.nhwcToNCHW(try backend.download(t), t.shape[0], t.shape[3], t.shape[1], t.shape[2])
            })
        }
    }

    /// The feature maps for step `index`, or none after the adapters' share of the steps.
    func residuals(stepIndex index: Int) -> [Tensor] {
        index < activeSteps ? features : []
    }

    /// Checks, before any work, that the request has one input per adapter, a size the adapters can take
    /// (a multiple of their downscale factor) and that each adapter's feature maps fit the UNet's down blocks.
    static func validate(_ request: GenerationRequest, models: LoadedModels, latentHeight: Int, latentWidth: Int) throws {
        guard !request.adapters.isEmpty else { return }
        guard request.adapters.count == models.t2iAdapters.count else {
            throw PipelineError.invalidArgument(
                name: "adapters", message: "\(request.adapters.count) inputs for \(models.t2iAdapters.count) T2I-Adapters (PipelineConfiguration.t2iAdapters)")
        }
        let size = request.size
        for (i, adapter) in models.t2iAdapters.enumerated() {
            guard [1, 3].contains(adapter.config.inChannels) else {
                throw PipelineError.invalidArgument(name: "t2iAdapters[\(i)]", message: "takes \(adapter.config.inChannels)-channel images; the pipeline gives RGB (3) or greyscale (1)")
            }
            let factor = adapter.downscaleFactor
            guard size.width % factor == 0, size.height % factor == 0 else {
                throw PipelineError.invalidArgument(name: "size", message: "\(size) must be a multiple of \(factor) for T2I-Adapter \(i) (its downscale_factor)")
            }
            let shapes = adapter.featureShapes(height: size.height, width: size.width)
            do {
                _ = try models.unet.intrablockResidualsUsed(shapes: shapes, latentHeight: latentHeight, latentWidth: latentWidth)
            } catch let ModelError.invalidInput(_, argument, message) {
                throw PipelineError.invalidArgument(name: "t2iAdapters[\(i)]", message: "does not fit this UNet: \(argument) \(message)")
            }
        }
    }
}
