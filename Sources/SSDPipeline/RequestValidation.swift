/// Checks a request before any work starts; every failure names the field.
enum RequestValidation {
    /// The largest width or height accepted (diffusers has no limit; this keeps every size
    /// computation exact and turns absurd requests into an error instead of an allocation failure).
    static let maximumSide = 16384
    /// The most pixels of all images of one request together (64 images at 4096², 1024 at 1024²).
    static let maximumPixels = 1 << 30
    /// The most denoising steps accepted.
    static let maximumSteps = 100_000

    static func validate(_ request: GenerationRequest, vaeScaleFactor factor: Int, latentChannels: Int) throws {
        func fail(_ name: String, _ message: String) -> PipelineError {
            .invalidArgument(name: name, message: message)
        }
        let size = request.size
        guard size.width > 0, size.height > 0 else { throw fail("size", "\(size) must be positive") }
        guard size.width % factor == 0, size.height % factor == 0 else {
            throw fail("size", "\(size) must be a multiple of \(factor) in both dimensions")
        }
        guard size.width <= maximumSide, size.height <= maximumSide else {
            throw fail("size", "\(size) must be at most \(maximumSide) pixels per side")
        }
        guard request.steps >= 1 else { throw fail("steps", "\(request.steps) must be at least 1") }
        guard request.steps <= maximumSteps else { throw fail("steps", "\(request.steps) must be at most \(maximumSteps)") }
        guard request.imagesPerPrompt >= 1 else {
            throw fail("imagesPerPrompt", "\(request.imagesPerPrompt) must be at least 1")
        }
        // Every buffer's size is computed from these: keep the products far from overflowing.
        let (pixels, overflow) = size.width.multipliedReportingOverflow(by: size.height)
        let (total, overflow2) = pixels.multipliedReportingOverflow(by: request.imagesPerPrompt)
        guard !overflow, !overflow2, total <= maximumPixels else {
            throw fail("imagesPerPrompt", "\(request.imagesPerPrompt) images of \(size) are more than \(maximumPixels) pixels in all")
        }
        guard request.guidanceScale.isFinite else { throw fail("guidanceScale", "\(request.guidanceScale) is not finite") }
        guard request.eta.isFinite, request.eta >= 0 else { throw fail("eta", "\(request.eta) must be a finite number ≥ 0") }
        guard request.guidanceRescale.isFinite, request.guidanceRescale >= 0, request.guidanceRescale <= 1 else {
            throw fail("guidanceRescale", "\(request.guidanceRescale) must be in [0, 1]")
        }
        // (its upper bound, the text encoders' layer count, is checked where they are known: PromptEncoding)
        if let clipSkip = request.clipSkip, clipSkip < 0 {
            throw fail("clipSkip", "\(clipSkip) must not be negative")
        }
        for (name, value) in [("originalSize", request.originalSize), ("targetSize", request.targetSize),
                              ("negativeOriginalSize", request.negativeOriginalSize),
                              ("negativeTargetSize", request.negativeTargetSize)] {
            if let value, value.width <= 0 || value.height <= 0 { throw fail(name, "\(value) must be positive") }
        }
        if let initial = request.initialImage {
            if let strength = initial.strength, !(strength >= 0 && strength <= 1) {
                throw fail("strength", "\(strength) must be in [0, 1]")
            }
            guard initial.image.width > 0, initial.image.height > 0 else { throw fail("initialImage", "is empty") }
            if let mask = initial.mask, mask.width == 0 || mask.height == 0 { throw fail("mask", "is empty") }
            try validatePaddingMaskCrop(initial, size: size)
        }
        for (i, control) in request.controls.enumerated() {
            let name = "controls[\(i)]"
            guard control.image.width > 0, control.image.height > 0 else { throw fail(name + ".image", "is empty") }
            guard control.conditioningScale.isFinite else { throw fail(name + ".conditioningScale", "\(control.conditioningScale) is not finite") }
            guard control.guidanceStart >= 0, control.guidanceStart < control.guidanceEnd, control.guidanceEnd <= 1 else {
                throw fail(name + ".guidanceStart", "\(control.guidanceStart) … \(control.guidanceEnd) must satisfy 0 ≤ start < end ≤ 1")
            }
            guard control.guessMode == request.controls[0].guessMode else {
                throw fail(name + ".guessMode", "every ControlNet input needs the same guess mode (diffusers' guess_mode is one flag)")
            }
        }
        if !request.controls.isEmpty, request.initialImage?.mask != nil {
            // StableDiffusionXLControlNetInpaintPipeline has no negative micro-conditioning.
            for (name, value) in [("negativeOriginalSize", request.negativeOriginalSize), ("negativeTargetSize", request.negativeTargetSize)]
            where value != nil {
                throw fail(name, "is not used by ControlNet inpainting (diffusers' pipeline takes no negative sizes)")
            }
        }
        for (i, prompt) in request.imagePrompts.enumerated() {
            if let e = prompt.embeddings {
                let count = e.shape.reduce(1, *)
                guard e.shape.count >= 2, e.shape.allSatisfy({ $0 > 0 }), e.positive.count == count,
                      e.negative.map({ $0.count == count }) ?? true else {
                    throw fail("imagePrompts[\(i)].embeddings", "shape \(e.shape) does not match \(e.positive.count) values (negative \(e.negative?.count ?? 0))")
                }
                guard e.positive.allSatisfy(\.isFinite), e.negative?.allSatisfy(\.isFinite) ?? true else {
                    throw fail("imagePrompts[\(i)].embeddings", "contain NaN or infinity")
                }
                guard prompt.images.isEmpty else { throw fail("imagePrompts[\(i)].images", "give images or embeddings, not both (diffusers refuses both too)") }
            } else {
                guard !prompt.images.isEmpty, prompt.images.allSatisfy({ $0.width > 0 && $0.height > 0 }) else {
                    throw fail("imagePrompts[\(i)].images", "needs at least one non-empty image")
                }
            }
            guard prompt.scale.isFinite else { throw fail("imagePrompts[\(i)].scale", "\(prompt.scale) is not finite") }
            let imageCount = prompt.embeddings.map { $0.shape.first ?? 0 } ?? prompt.images.count
            if !prompt.masks.isEmpty {
                guard prompt.masks.count == imageCount else {
                    throw fail("imagePrompts[\(i)].masks", "\(prompt.masks.count) masks for \(imageCount) images (one each, as diffusers' ip_adapter_masks)")
                }
                guard prompt.masks.allSatisfy({ $0.width > 0 && $0.height > 0 }) else { throw fail("imagePrompts[\(i)].masks", "contain an empty image") }
            }
            if let scales = prompt.imageScales {
                guard !prompt.masks.isEmpty else { throw fail("imagePrompts[\(i)].imageScales", "need masks (diffusers takes per-image scales with masks only)") }
                guard scales.count == imageCount, scales.allSatisfy(\.isFinite) else {
                    throw fail("imagePrompts[\(i)].imageScales", "\(scales) must be \(imageCount) finite numbers, one per image")
                }
            }
        }
        for (i, adapter) in request.adapters.enumerated() {
            let name = "adapters[\(i)]"
            guard adapter.image.width > 0, adapter.image.height > 0 else { throw fail(name + ".image", "is empty") }
            guard adapter.conditioningScale.isFinite else { throw fail(name + ".conditioningScale", "\(adapter.conditioningScale) is not finite") }
        }
        guard request.adapterConditioningFactor >= 0, request.adapterConditioningFactor <= 1 else {
            throw fail("adapterConditioningFactor", "\(request.adapterConditioningFactor) must be in [0, 1]")
        }
        if !request.adapters.isEmpty {
            // (diffusers' adapter pipeline is text-to-image only)
            if request.initialImage != nil { throw fail("initialImage", "is not supported with T2I-Adapters (text-to-image only, as diffusers' StableDiffusionXLAdapterPipeline)") }
            if request.initialLatents != nil, request.denoisingStart != nil { throw fail("denoisingStart", "is not supported with T2I-Adapters") }
            if !request.controls.isEmpty { throw fail("controls", "ControlNets and T2I-Adapters are not combined (diffusers has no such pipeline)") }
        }
        if let pag = request.perturbedAttentionGuidance {
            let name = "perturbedAttentionGuidance"
            guard pag.scale.isFinite else { throw fail(name + ".scale", "\(pag.scale) is not finite") }
            guard pag.adaptiveScale.isFinite, pag.adaptiveScale >= 0 else {
                throw fail(name + ".adaptiveScale", "\(pag.adaptiveScale) must be finite and not negative")
            }
            if pag.scale > 0, !pag.layers.isEmpty {
                // (diffusers' PAG ControlNet pipelines: text-to-image and img2img, no guess mode; none with T2I-Adapters)
                if !request.controls.isEmpty, request.initialImage?.mask != nil {
                    throw fail("controls", "ControlNet inpainting is not combined with perturbed-attention guidance (diffusers has no such SDXL pipeline)")
                }
                if request.controls.contains(where: \.guessMode) {
                    throw fail("controls[0].guessMode", "is not used with perturbed-attention guidance (diffusers' PAG ControlNet pipelines run without it)")
                }
                if !request.adapters.isEmpty { throw fail("adapters", "T2I-Adapters are not combined with perturbed-attention guidance (diffusers has no such pipeline)") }
            }
        }
        if let custom = request.customSchedule {
            do { try custom.validate(trainTimesteps: Int.max) } catch { throw fail("customSchedule", "\(error)") }
            if !request.controls.isEmpty, request.initialImage != nil {
                // (diffusers' ControlNet img2img / inpainting pipelines take no timesteps= or sigmas=)
                throw fail("customSchedule", "is not used by ControlNet img2img or inpainting (diffusers' pipelines take none)")
            }
        }
        for (name, value) in [("denoisingEnd", request.denoisingEnd), ("denoisingStart", request.denoisingStart)] {
            if let value, !(value > 0 && value < 1) { throw fail(name, "\(value) must lie strictly between 0 and 1") }
        }
        if let start = request.denoisingStart {
            if let end = request.denoisingEnd, end <= start {
                throw fail("denoisingEnd", "\(end) must be greater than denoisingStart \(start)")
            }
            guard request.initialImage != nil || request.initialLatents != nil else {
                throw fail("denoisingStart", "needs initialLatents (a base run's latents) or initialImage (image-to-image)")
            }
            if request.initialImage?.mask != nil { throw fail("denoisingStart", "is not supported with inpainting") }
        }
        if !request.controls.isEmpty, request.denoisingStart != nil || request.denoisingEnd != nil {
            throw fail(request.denoisingStart != nil ? "denoisingStart" : "denoisingEnd", "is not supported with ControlNets")
        }
        for (name, value) in [("aestheticScore", request.aestheticScore), ("negativeAestheticScore", request.negativeAestheticScore)]
        where !value.isFinite {
            throw fail(name, "\(value) is not finite")
        }
        for (name, embeddings) in [("promptEmbeddings", request.promptEmbeddings), ("negativePromptEmbeddings", request.negativePromptEmbeddings)] {
            guard let e = embeddings else { continue }
            guard e.tokens > 0, e.width > 0, e.hiddenStates.count == e.tokens * e.width, !e.pooled.isEmpty else {
                throw fail(name, "needs tokens × width = \(e.tokens) × \(e.width) hidden states (got \(e.hiddenStates.count)) and a pooled vector")
            }
            guard e.hiddenStates.allSatisfy(\.isFinite), e.pooled.allSatisfy(\.isFinite) else { throw fail(name, "contain NaN or infinity") }
        }
        if let positive = request.promptEmbeddings, let negative = request.negativePromptEmbeddings,
           positive.tokens != negative.tokens || positive.width != negative.width || positive.pooled.count != negative.pooled.count {
            throw fail("negativePromptEmbeddings", "shape \(negative.tokens) × \(negative.width) + \(negative.pooled.count) differs from promptEmbeddings' \(positive.tokens) × \(positive.width) + \(positive.pooled.count)")
        }
        if let freeU = request.freeU, ![freeU.s1, freeU.s2, freeU.b1, freeU.b2].allSatisfy(\.isFinite) {
            throw fail("freeU", "\(freeU) must be finite")
        }
        if let latents = request.initialLatents {
            let expected = [request.imagesPerPrompt, latentChannels, size.height / factor, size.width / factor]
            guard latents.shape == expected, latents.values.count == expected.reduce(1, *) else {
                throw fail("initialLatents", "shape \(latents.shape) does not match \(expected)")
            }
            guard latents.values.allSatisfy({ $0.isFinite }) else { throw fail("initialLatents", "contain NaN or infinity") }
        }
    }
}
