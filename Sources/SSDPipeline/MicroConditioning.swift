/// SDXL micro-conditioning: the six `add_time_ids` numbers per UNet batch row
/// (diffusers `StableDiffusionXLPipeline._get_add_time_ids` and its img2img/inpaint variants).
enum MicroConditioning {
    /// `original (h, w) + crop (top, left) + target (h, w)`.
    static func timeIDs(original: ImageSize, crop: CropOffset, target: ImageSize) -> [Float] {
        [original.height, original.width, crop.y, crop.x, target.height, target.width].map(Float.init)
    }

    /// Rows of `time_ids` in the order the UNet batch is laid out (`[uncond × n, cond × n]` with guidance).
    ///
    /// Text-to-image (`StableDiffusionXLPipeline`): the negative row equals the positive one unless both
    /// negative sizes are given; diffusers then `cat([neg, pos])` and `repeat(n, 1)`, which interleaves
    /// the rows (`neg, pos, neg, pos, …`) while the embeddings are `[neg × n, pos × n]`. With n > 1 and
    /// distinct negative sizes the rows are paired with the wrong embeddings; we keep diffusers' order so
    /// that seeds give the same images.
    /// img2img / inpainting (`StableDiffusionXLImg2ImgPipeline`, also from latents with `denoisingStart`):
    /// negative sizes default to the positive
    /// ones, the negative crop is ignored (the positive crop is used), rows are `[neg × n, pos × n]`.
    /// ControlNet inpainting (`StableDiffusionXLControlNetInpaintPipeline`): negative rows equal the positive.
    /// The refiner (`requires_aesthetics_score`, img2img): `original + crop + aesthetic score`, the negative
    /// row with the negative original size (default: the positive), negative crop and negative score.
    /// With perturbed-attention guidance (`perturbed`) the conditional rows follow once more (`[neg × n, pos × n,
    /// pos × n]`), except that text-to-image with guidance repeats `neg, pos, pos` n times (diffusers'
    /// `_prepare_perturbed_attention_guidance` before the `repeat`).
    static func rows(for request: GenerationRequest, rowsPerBranch n: Int, guidance: Bool, aestheticScore: Bool = false,
                     perturbed: Bool = false) -> [Float] {
        let base = rows(for: request, rowsPerBranch: n, guidance: guidance, aestheticScore: aestheticScore)
        guard perturbed else { return base }
        let perRow = base.count / (guidance ? 2 * n : n)
        let textToImage = !aestheticScore && request.initialImage == nil && request.denoisingStart == nil
        if textToImage && guidance {
            // (`base` is `neg, pos` repeated n times)
            let negative = Array(base[0..<perRow]), positive = Array(base[perRow..<(2 * perRow)])
            return Array(repeating: negative + positive + positive, count: n).flatMap { $0 }
        }
        return base + base.suffix(n * perRow)
    }

    private static func rows(for request: GenerationRequest, rowsPerBranch n: Int, guidance: Bool, aestheticScore: Bool) -> [Float] {
        let size = request.size
        let original = request.originalSize ?? size
        let target = request.targetSize ?? size
        let controlNetInpainting = request.initialImage?.mask != nil && !request.controls.isEmpty
        if aestheticScore {
            func row(_ o: ImageSize, _ crop: CropOffset, _ score: Double) -> [Float] {
                [Float(o.height), Float(o.width), Float(crop.y), Float(crop.x), Float(score)]
            }
            let pos = Array(repeating: row(original, request.cropTopLeft, request.aestheticScore), count: n).flatMap { $0 }
            guard guidance else { return pos }
            // (ControlNet inpainting's negative row takes the positive size and crop)
            let negative = controlNetInpainting
                ? row(original, request.cropTopLeft, request.negativeAestheticScore)
                : row(request.negativeOriginalSize ?? original, request.negativeCropTopLeft, request.negativeAestheticScore)
            return Array(repeating: negative, count: n).flatMap { $0 } + pos
        }
        let positive = timeIDs(original: original, crop: request.cropTopLeft, target: target)
        if controlNetInpainting {
            return Array(repeating: positive, count: guidance ? 2 * n : n).flatMap { $0 }
        }
        // img2img: an image, or latents with `denoisingStart` (diffusers' img2img pipeline given `image=latents`)
        if request.initialImage != nil || request.denoisingStart != nil {
            let negative = timeIDs(
                original: request.negativeOriginalSize ?? original, crop: request.cropTopLeft,
                target: request.negativeTargetSize ?? target)
            let pos = Array(repeating: positive, count: n).flatMap { $0 }
            guard guidance else { return pos }
            return Array(repeating: negative, count: n).flatMap { $0 } + pos
        }
        var negative = positive
        if let negOriginal = request.negativeOriginalSize, let negTarget = request.negativeTargetSize {
            negative = timeIDs(original: negOriginal, crop: request.negativeCropTopLeft, target: negTarget)
        }
        guard guidance else { return Array(repeating: positive, count: n).flatMap { $0 } }
        return Array(repeating: negative + positive, count: n).flatMap { $0 }
    }
}
