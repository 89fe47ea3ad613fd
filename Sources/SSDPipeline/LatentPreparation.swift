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

/// Initial latents: seeded noise × init sigma (text-to-image), or VAE-encoded image + noise
/// (img2img, inpainting), drawing random numbers in diffusers' order.
struct LatentPreparation {
    let run: GenerationRun

    struct Start {
        var latents: [Float]
        var inpainting: InpaintingState?
    }

    func prepare(timesteps: [Double], generator: inout TorchCPUGenerator) throws -> Start {
        let request = run.request
        let scheduler = run.scheduler
        let count = run.latentCount
        guard let initial = request.initialImage else {
            // pipeline_stable_diffusion_xl.py prepare_latents
            let noise = request.initialLatents?.values ?? generator.normal(count: count, dtype: run.latentDType)
            let sigma = scheduler.initNoiseSigma
            return Start(latents: noise.map { $0 * sigma }, inpainting: nil)
        }
        let size = request.size
        let image = ImageProcessing.normalizedPixels(try ImageProcessing.resized(initial.image, to: size))
        guard let maskImage = initial.mask else {
            // pipeline_stable_diffusion_xl_img2img.py prepare_latents: sample the VAE posterior, then the noise.
            let imageLatents = repeatImages(try encodeSample(image, generator: &generator))
            let noise = request.initialLatents?.values ?? generator.normal(count: count, dtype: run.latentDType)
            return Start(latents: try scheduler.addNoise(original: imageLatents, noise: noise, timestepIndex: 0), inpainting: nil)
        }
        // pipeline_stable_diffusion_xl_inpaint.py: image latents (sample #1), noise (#2), then the masked
        // image is encoded and sampled (#3) even though a 4-channel UNet does not use it.
        let maskPixels = ImageProcessing.binaryMask(try ImageProcessing.resized(maskImage, to: size))
        let strength = initial.strength ?? 0.9999
        let imageLatents = repeatImages(try encodeSample(image, generator: &generator))
        let noise = request.initialLatents?.values ?? generator.normal(count: count, dtype: run.latentDType)
        let latents = strength == 1
            ? noise.map { $0 * scheduler.initNoiseSigma }
            : try scheduler.addNoise(original: imageLatents, noise: noise, timestepIndex: 0)
        _ = generator.normal(count: run.latentChannels * run.latentHeight * run.latentWidth, dtype: run.latentDType)
        let factor = size.height / run.latentHeight
        let mask = ImageProcessing.downsampleMask(maskPixels, height: size.height, width: size.width, factor: factor)
        return Start(
            latents: latents,
            inpainting: InpaintingState(imageLatents: imageLatents, noise: noise, mask: mask))
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
