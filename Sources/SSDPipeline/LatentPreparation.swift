import SSDModels
import SSDSchedulers
import SSDTensor

/// Inpainting state kept through the loop (diffusers `StableDiffusionXLInpaintPipeline`, 4-channel UNet).
struct InpaintingState {
    /// Clean image latents `[K, 4, h, w]`.
    var imageLatents: [Float]
    /// The noise drawn for the initial latents.
    var noise: [Float]
    /// `[h, w]`, 1 = repaint.
    var mask: [Float]

    /// `latents = (1 − m)·noised(image latents at the next timestep) + m·latents`.
    func blend(_ latents: [Float], stepIndex: Int, stepCount: Int, scheduler: any Scheduler) throws -> [Float] {
        var proper = imageLatents
        if stepIndex < stepCount - 1 {
            proper = try scheduler.addNoise(original: imageLatents, noise: noise, timestepIndex: stepIndex + 1)
        }
        let plane = mask.count
        var out = latents
        for i in 0..<latents.count {
            let m = mask[i % plane]
            out[i] = (1 - m) * proper[i] + m * latents[i]
        }
        return out
    }
}

/// The extra input channels of an inpainting UNet (diffusers `prepare_mask_latents`, `num_channels_unet == 9`):
/// the mask at latent size and the masked image's latents, the same for every image and both guidance halves.
struct MaskInput {
    /// `[h, w]`, 1 = repaint.
    let mask: [Float]
    /// `[C, h, w]`: the VAE posterior sample of `image · (mask < 0.5)`, × scaling factor.
    let maskedImageLatents: [Float]

    /// `cat([latents, mask, masked_image_latents], dim=1)` for NCHW `latents` of `rows` rows.
    func unetInput(_ latents: [Float], rows: Int) -> [Float] {
        let plane = mask.count, perRow = latents.count / rows
        var out = [Float]()
        out.reserveCapacity(rows * (perRow + plane + maskedImageLatents.count))
        for r in 0..<rows {
            out += latents[(r * perRow)..<((r + 1) * perRow)]
            out += mask
            out += maskedImageLatents
        }
        return out
    }
}

/// Initial latents: seeded noise × init sigma (text-to-image), or VAE-encoded image + noise
/// (img2img, inpainting), drawing random numbers in diffusers' order.
struct LatentPreparation {
    let run: GenerationRun

    struct Start {
        var latents: [Float]
        /// 4-channel UNet inpainting: the blend after each step.
        var inpainting: InpaintingState?
        /// Inpainting UNet (9 channels): its extra inputs.
        var maskInput: MaskInput?
    }

    func prepare(timesteps: [Double], generator: inout TorchCPUGenerator) throws -> Start {
        let request = run.request
        let scheduler = run.scheduler
        let count = run.latentCount
        let given = request.initialLatents?.values
        guard let initial = request.initialImage else {
            // img2img from latents (a refiner continuing a base run: `image=latents, denoising_start=…`)
            if request.denoisingStart != nil, let given { return Start(latents: given) }
            // pipeline_stable_diffusion_xl.py prepare_latents
            let noise = given ?? generator.normal(count: count, dtype: run.latentDType)
            let sigma = scheduler.initNoiseSigma
            return Start(latents: noise.map { $0 * sigma })
        }
        let size = request.size
        let image = ImageProcessing.normalizedPixels(try ImageProcessing.prepared(initial.image, to: size, crop: run.maskCrop))
        guard let maskImage = initial.mask else {
            // pipeline_stable_diffusion_xl_img2img.py: given `latents` are the starting latents as they are
            // (no image, no noise); else sample the VAE posterior, then the noise.
            if let given { return Start(latents: given) }
            let imageLatents = repeatImages(try encodeSample(image, generator: &generator))
            // `denoising_start` (`add_noise=False`): the image latents as they are.
            if request.denoisingStart != nil { return Start(latents: imageLatents) }
            let noise = generator.normal(count: count, dtype: run.latentDType)
            return Start(latents: try scheduler.addNoise(original: imageLatents, noise: noise, timestepIndex: 0))
        }
        // pipeline_stable_diffusion_xl_inpaint.py prepare_latents: the image latents (sample #1; a 9-channel
        // UNet needs them only to noise the image, so not at strength 1 or with given latents), the noise
        // (#2; given latents are the noise and start at noise × init sigma), then prepare_mask_latents
        // encodes the masked image (#3; a 4-channel UNet does not use it, but it is drawn so the stream matches).
        let maskPixels = ImageProcessing.binaryMask(try ImageProcessing.prepared(maskImage, to: size, crop: run.maskCrop))
        let strength = initial.strength ?? 0.9999
        let blends = run.unetInputChannels == run.latentChannels
        let imageLatents = blends || (given == nil && strength != 1)
            ? repeatImages(try encodeSample(image, generator: &generator)) : nil
        let noise = given ?? generator.normal(count: count, dtype: run.latentDType)
        let latents: [Float]
        if let imageLatents, given == nil, strength != 1 {
            latents = try scheduler.addNoise(original: imageLatents, noise: noise, timestepIndex: 0)
        } else {
            latents = noise.map { $0 * scheduler.initNoiseSigma }
        }
        let factor = size.height / run.latentHeight
        let mask = ImageProcessing.downsampleMask(maskPixels, height: size.height, width: size.width, factor: factor)
        guard blends else {
            // `init_image * (mask < 0.5)`: repainted pixels become 0 (mid grey).
            var masked = image
            for (i, m) in maskPixels.enumerated() where m >= 0.5 {
                masked[3 * i] *= 0; masked[3 * i + 1] *= 0; masked[3 * i + 2] *= 0
            }
            let maskedLatents = try encodeSample(masked, generator: &generator)
            return Start(latents: latents, maskInput: MaskInput(mask: mask, maskedImageLatents: maskedLatents))
        }
        _ = generator.normal(count: run.latentChannels * run.latentHeight * run.latentWidth, dtype: run.latentDType)
        return Start(
            latents: latents,
            inpainting: InpaintingState(imageLatents: imageLatents ?? [], noise: noise, mask: mask))
    }

    /// VAE encode → `mean + exp(logvar / 2) · randn` → `× scaling_factor` (NCHW, one image).
    private func encodeSample(_ pixels: [Float], generator: inout TorchCPUGenerator) throws -> [Float] {
        let vae = run.models.vae
        let size = run.request.size
        let input = try run.backend.upload(pixels, shape: [1, size.height, size.width, 3], as: run.backend.activationDType(for: vae.component))
        let (meanTensor, logVarTensor) = try vae.encode(input, tiling: run.request.vaeTiling)
        let c = meanTensor.shape[3], h = meanTensor.shape[1], w = meanTensor.shape[2]
        let mean = Layout.nhwcToNCHW(try run.backend.download(meanTensor), 1, c, h, w)
        let logVar = Layout.nhwcToNCHW(try run.backend.download(logVarTensor), 1, c, h, w)
        let sample = generator.normal(count: mean.count, dtype: run.latentDType)
        let scale = Float(vae.config.scalingFactor)
        return (0..<mean.count).map { i in
            let std = Float(exp(Double(0.5 * logVar[i])))
            return scale * (mean[i] + std * sample[i])
        }
    }

    private func repeatImages(_ latents: [Float]) -> [Float] {
        Array([[Float]](repeating: latents, count: run.imageCount).joined())
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
