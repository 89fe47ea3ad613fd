import SSDModels
import SSDTensor

/// The IP-Adapters' image tokens for one generation (diffusers `prepare_ip_adapter_image_embeds`,
/// `encode_image`, then the UNet's `encoder_hid_proj`), made once per generation since they depend only
/// on the images: per adapter, its images through `CLIPImageProcessor` and the image encoder
/// (`image_embeds` for `ImageProjection`, the penultimate hidden states for Plus), projected to tokens,
/// with guidance a negative (zero `image_embeds`, or the encoder's states of an all-zero input for Plus),
/// laid out `[negative × K, positive × K]` as the text rows.
struct ImagePromptEncoding {
    let run: GenerationRun

    /// Checks, before any work, that the request has one image prompt per IP-Adapter.
    static func validate(_ request: GenerationRequest, models: LoadedModels) throws {
        guard !request.imagePrompts.isEmpty, request.imagePrompts.count != models.ipAdapters.count else { return }
        throw PipelineError.invalidArgument(
            name: "imagePrompts", message: "\(request.imagePrompts.count) image prompts for \(models.ipAdapters.count) IP-Adapters (PipelineConfiguration.ipAdapters)")
    }

    func encode() throws -> [UNet2DConditionModel.IPAdapterImagePrompt] {
        let prompts = run.request.imagePrompts
        guard !prompts.isEmpty, let encoder = run.models.imageEncoder else { return [] }
        let b = run.backend
        let size = encoder.config.imageSize
        var encoderCall = 0
        var out = [UNet2DConditionModel.IPAdapterImagePrompt]()
        for (i, (adapter, prompt)) in zip(run.models.ipAdapters, prompts).enumerated() {
            try Task.checkCancellation()
            let n = prompt.images.count
            let plus = adapter.kind == .plus
            // (`encoderCall` numbers the encoder calls as diffusers makes them, for `inspect`: Plus adapters
            // also encode the zero input without guidance.)
            guard prompt.scale != 0 else {
                encoderCall += plus ? 2 : 1  // (diffusers encodes them anyway; a scale of 0 adds nothing)
                continue
            }
            func features(_ pixels: [Float]) throws -> Tensor {
                let encoded = try encoder.encode(pixels: pixels, batch: n, hiddenStateIndex: plus ? -2 : nil, projected: !plus)
                guard let features = plus ? encoded.hiddenStates : encoded.imageEmbeds else {
                    throw PipelineError.invalidArgument(name: "imageEncoder", message: "gave no \(plus ? "hidden states" : "image_embeds")")
                }
                run.inspect?("encoder_call\(encoderCall).\(plus ? "hidden_states_m2" : "image_embeds")", try b.download(features))
                encoderCall += 1
                return features
            }
            let pixels = prompt.images.flatMap { ImageProcessing.clipPixels($0, size: size) }
            run.inspect?("encoder_call\(encoderCall).pixel_values", Layout.nhwcToNCHW(pixels, n, 3, size, size))
            let positive = try adapter.imageTokens(features(pixels), imagesPerRow: n)
            var rows = [Tensor](repeating: positive, count: run.imageCount)
            if run.usesGuidance {
                let zeros = try plus
                    ? features([Float](repeating: 0, count: pixels.count))
                    : b.upload([Float](repeating: 0, count: n * adapter.imageEmbeddingWidth), shape: [n, adapter.imageEmbeddingWidth],
                               as: b.activationDType(for: .textEncoder))
                rows = [Tensor](repeating: try adapter.imageTokens(zeros, imagesPerRow: n), count: run.imageCount) + rows
            } else if plus {
                encoderCall += 1
            }
            let tokens = rows.count == 1 ? rows[0] : try b.concat(rows, axis: 0)
            run.inspect?("projected.\(i)", try b.download(tokens))
            out.append(.init(adapter: adapter, tokens: tokens, scale: Float(prompt.scale)))
        }
        return out
    }
}
