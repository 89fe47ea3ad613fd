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

    /// The image encoder's output for one adapter's images, as that adapter takes it (`image_embeds`, or
    /// the penultimate hidden states for Plus), and with `negative` the negative (zeros, or the states of an
    /// all-zero input for Plus; diffusers `encode_image`). `encoderCall` numbers the calls for `inspect`.
    func features(_ adapter: IPAdapterModel, images: [RGBImage], negative: Bool, encoderCall: inout Int) throws -> (Tensor, Tensor?) {
        guard let encoder = run.models.imageEncoder else {
            throw PipelineError.invalidArgument(name: "imageEncoder", message: "not loaded")
        }
        let b = run.backend, n = images.count, size = encoder.config.imageSize
        let plus = adapter.kind == .plus
        func encode(_ pixels: [Float], call: inout Int) throws -> Tensor {
            let encoded = try encoder.encode(pixels: pixels, batch: n, hiddenStateIndex: plus ? -2 : nil, projected: !plus)
            guard let features = plus ? encoded.hiddenStates : encoded.imageEmbeds else {
                throw PipelineError.invalidArgument(name: "imageEncoder", message: "gave no \(plus ? "hidden states" : "image_embeds")")
            }
            run.inspect?("encoder_call\(call).\(plus ? "hidden_states_m2" : "image_embeds")", try b.download(features))
            call += 1
            return features
        }
        let pixels = images.flatMap { ImageProcessing.clipPixels($0, size: size) }
        run.inspect?("encoder_call\(encoderCall).pixel_values", Layout.nhwcToNCHW(pixels, n, 3, size, size))
        let positive = try encode(pixels, call: &encoderCall)
        guard negative else {
            if plus { encoderCall += 1 }  // (diffusers encodes the zero input anyway)
            return (positive, nil)
        }
        let zeros = try plus
            ? encode([Float](repeating: 0, count: pixels.count), call: &encoderCall)
            : b.upload([Float](repeating: 0, count: n * adapter.imageEmbeddingWidth), shape: [n, adapter.imageEmbeddingWidth],
                       as: b.activationDType(for: .textEncoder))
        return (positive, zeros)
    }

    /// Given features (`ImagePrompt.embeddings`) checked against the adapter and uploaded.
    func uploaded(_ e: ImageEmbeddings, for adapter: IPAdapterModel, index i: Int) throws -> (Tensor, Tensor?) {
        let b = run.backend, name = "imagePrompts[\(i)].embeddings"
        let plus = adapter.kind == .plus
        guard e.shape.count == (plus ? 3 : 2), e.shape.last == adapter.imageEmbeddingWidth else {
            throw PipelineError.invalidArgument(
                name: name, message: "shape \(e.shape); this \(adapter.kind) adapter takes \(plus ? "[n, tokens, \(adapter.imageEmbeddingWidth)]" : "[n, \(adapter.imageEmbeddingWidth)]")")
        }
        if run.usesGuidance, e.negative == nil {
            throw PipelineError.invalidArgument(name: name, message: "needs the negative features with guidance (diffusers chunks them off)")
        }
        let dtype = b.activationDType(for: .textEncoder)
        return (try b.upload(e.positive, shape: e.shape, as: dtype), try e.negative.map { try b.upload($0, shape: e.shape, as: dtype) })
    }

    /// diffusers `IPAdapterMaskProcessor.preprocess` of a prompt's masks (greyscale, resized to the output size,
    /// binarised at 0.5), nil without masks.
    func masks(_ prompt: ImagePrompt) throws -> IPAdapterMasks? {
        guard !prompt.masks.isEmpty else { return nil }
        let size = run.request.size
        let maps = try prompt.masks.map { ImageProcessing.binaryMask(try ImageProcessing.resized($0, to: size)) }
        return IPAdapterMasks(maps: maps, height: size.height, width: size.width, scales: prompt.imageScales?.map(Float.init),
                              latentHeight: run.latentHeight, latentWidth: run.latentWidth)
    }

    func encode() throws -> [UNet2DConditionModel.IPAdapterImagePrompt] {
        let prompts = run.request.imagePrompts
        guard !prompts.isEmpty else { return [] }
        let b = run.backend
        var encoderCall = 0
        var out = [UNet2DConditionModel.IPAdapterImagePrompt]()
        for (i, (adapter, prompt)) in zip(run.models.ipAdapters, prompts).enumerated() {
            try Task.checkCancellation()
            let masks = try self.masks(prompt)
            // (diffusers skips an adapter whose scales are all 0)
            let off = masks?.scales.map { $0.allSatisfy { $0 == 0 } } ?? (prompt.scale == 0)
            guard !off else {
                if prompt.embeddings == nil { encoderCall += adapter.kind == .plus ? 2 : 1 }  // (diffusers encodes them anyway)
                continue
            }
            let (positive, negative) = try prompt.embeddings.map { try uploaded($0, for: adapter, index: i) }
                ?? features(adapter, images: prompt.images, negative: run.usesGuidance, encoderCall: &encoderCall)
            let n = positive.shape[0]
            var rows = [Tensor](repeating: try adapter.imageTokens(positive, imagesPerRow: n), count: run.imageCount)
            if run.perturbedAttention != nil { rows += rows }  // (PAG: the conditional rows once more, last)
            if run.usesGuidance, let negative {
                rows = [Tensor](repeating: try adapter.imageTokens(negative, imagesPerRow: n), count: run.imageCount) + rows
            }
            let tokens = rows.count == 1 ? rows[0] : try b.concat(rows, axis: 0)
            run.inspect?("projected.\(i)", try b.download(tokens))
            out.append(.init(adapter: adapter, tokens: tokens, scale: Float(prompt.scale), masks: masks))
        }
        return out
    }
}
