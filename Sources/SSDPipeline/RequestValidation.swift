/// Checks a request before any work starts; every failure names the field.
enum RequestValidation {
    static func validate(_ request: GenerationRequest, vaeScaleFactor factor: Int) throws {
        func fail(_ name: String, _ message: String) -> PipelineError {
            .invalidArgument(name: name, message: message)
        }
        let size = request.size
        guard size.width > 0, size.height > 0 else { throw fail("size", "\(size) must be positive") }
        guard size.width % factor == 0, size.height % factor == 0 else {
            throw fail("size", "\(size) must be a multiple of \(factor) in both dimensions")
        }
        guard request.steps >= 1 else { throw fail("steps", "\(request.steps) must be at least 1") }
        guard request.imagesPerPrompt >= 1 else {
            throw fail("imagesPerPrompt", "\(request.imagesPerPrompt) must be at least 1")
        }
        guard request.guidanceScale.isFinite else { throw fail("guidanceScale", "\(request.guidanceScale) is not finite") }
        guard request.guidanceRescale.isFinite, request.guidanceRescale >= 0, request.guidanceRescale <= 1 else {
            throw fail("guidanceRescale", "\(request.guidanceRescale) must be in [0, 1]")
        }
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
        }
        if let latents = request.initialLatents {
            let expected = [request.imagesPerPrompt, latents.shape.count == 4 ? latents.shape[1] : 4,
                            size.height / factor, size.width / factor]
            guard latents.shape == expected, latents.values.count == expected.reduce(1, *) else {
                throw fail("initialLatents", "shape \(latents.shape) does not match \(expected)")
            }
            guard latents.values.allSatisfy({ $0.isFinite }) else { throw fail("initialLatents", "contain NaN or infinity") }
        }
    }
}
