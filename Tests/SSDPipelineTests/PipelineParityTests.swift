import Foundation
import SSDModels
import SSDTensor
import Testing

@testable import SSDPipeline

/// The tiny SSD-1B-shaped pipeline against diffusers 0.42.1 (Scripts/fixtures/pipeline.py):
/// every intermediate and the final latents within 1e-4 relative, pixels within 1.0 mean absolute difference.
struct PipelineParityTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/pipeline").path
    static let folder = fixtures + "/tiny-ssd1b"

    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        var name: String
        var prompt: String
        var prompt_2: String?
        var negative_prompt: String?
        var negative_prompt_2: String?
        var width: Int
        var height: Int
        var steps: Int
        var guidance: Double
        var seed: UInt64
        var images: Int?
        var guidance_rescale: Double?
        var scheduler: String?
        var eta: Double?
        var clip_skip: Int?
        var original_size: [Int]?
        var crop_top_left: [Int]?
        var target_size: [Int]?
        var negative_original_size: [Int]?
        var negative_crop_top_left: [Int]?
        var negative_target_size: [Int]?
        var init_image: String?
        var mask: String?
        var strength: Double?
        /// diffusers `padding_mask_crop` (the reference `image` is then the overlay, at the init image's size).
        var padding_mask_crop: Int?
        var vae_tiling: Bool?
        var lora: String?
        var lora_scale: Double?
        var control_image: String?
        var controlnet_scale: Double?
        var guess_mode: Bool?
        var control_guidance_start: Double?
        var control_guidance_end: Double?
        /// A second ControlNet (MultiControlNetModel): folder, image, scale, window.
        var controlnet_2: String?
        var control_image_2: String?
        var controlnet_scale_2: Double?
        var control_guidance_start_2: Double?
        var control_guidance_end_2: Double?
        /// Another pipeline folder of the fixtures (tiny-ssd1b-inpaint: the 9-channel inpainting UNet).
        var folder: String?
        /// diffusers got `latents=` (stored as `given_latents` in the case's file; with `latents_from`, the
        /// latents of that case given as the img2img `image`).
        var given_latents: Bool?
        var latents_from: String?
        var denoising_start: Double?
        var denoising_end: Double?
        var aesthetic_score: Double?
        var negative_aesthetic_score: Double?
        /// diffusers `enable_freeu(s1, s2, b1, b2)`.
        var freeu: [Double]?
        /// "both" or "positive": diffusers got `prompt_embeds` / `pooled_prompt_embeds` (and the negatives),
        /// stored as `given_*` in the case's file.
        var given_embeddings: String?
        /// (file, token) pairs of textual inversion embeddings.
        var textual_inversions: [[String]]?
        /// diffusers got `timesteps=` / `sigmas=` (a custom schedule; `steps` ignored).
        var custom_timesteps: [Double]?
        var custom_sigmas: [Double]?
        var testDescription: String { name }
    }

    static let cases: [Case] = {
        guard let data = FileManager.default.contents(atPath: fixtures + "/cases.json"),
              let cases = try? JSONDecoder().decode([Case].self, from: data) else { return [] }
        return cases
    }()

    static func request(_ c: Case) throws -> GenerationRequest {
        func size(_ v: [Int]?) -> ImageSize? { v.map { ImageSize(width: $0[0], height: $0[1]) } }
        func crop(_ v: [Int]?) -> CropOffset { v.map { CropOffset(x: $0[0], y: $0[1]) } ?? .zero }
        var r = GenerationRequest(prompt: c.prompt)
        r.prompt2 = c.prompt_2
        r.negativePrompt = c.negative_prompt
        r.negativePrompt2 = c.negative_prompt_2
        r.size = ImageSize(width: c.width, height: c.height)
        r.steps = c.steps
        r.guidanceScale = c.guidance
        r.seed = c.seed
        r.imagesPerPrompt = c.images ?? 1
        r.guidanceRescale = c.guidance_rescale ?? 0
        if let name = c.scheduler { r.scheduler = .named(name) }
        r.eta = c.eta ?? 0
        r.clipSkip = c.clip_skip
        r.originalSize = size(c.original_size)
        r.cropTopLeft = crop(c.crop_top_left)
        r.targetSize = size(c.target_size)
        r.negativeOriginalSize = size(c.negative_original_size)
        r.negativeCropTopLeft = crop(c.negative_crop_top_left)
        r.negativeTargetSize = size(c.negative_target_size)
        if c.vae_tiling == true { r.vaeTiling = VAETiling() }
        if let controlImage = c.control_image {
            r.controls = [ControlInput(image: try RGBImage(pngData: FileIO.readAll(fixtures + "/" + controlImage)),
                                       conditioningScale: c.controlnet_scale ?? 1, guidanceStart: c.control_guidance_start ?? 0,
                                       guidanceEnd: c.control_guidance_end ?? 1, guessMode: c.guess_mode ?? false)]
        }
        if let controlImage = c.control_image_2 {
            r.controls.append(ControlInput(image: try RGBImage(pngData: FileIO.readAll(fixtures + "/" + controlImage)),
                                           conditioningScale: c.controlnet_scale_2 ?? 1, guidanceStart: c.control_guidance_start_2 ?? 0,
                                           guidanceEnd: c.control_guidance_end_2 ?? 1, guessMode: c.guess_mode ?? false))
        }
        if let initImage = c.init_image {
            let image = try RGBImage(pngData: FileIO.readAll(fixtures + "/" + initImage))
            let mask = try c.mask.map { try RGBImage(pngData: FileIO.readAll(fixtures + "/" + $0)) }
            r.initialImage = InitialImage(image: image, mask: mask, strength: c.strength, paddingMaskCrop: c.padding_mask_crop)
        }
        if let f = c.freeu { r.freeU = FreeU(s1: f[0], s2: f[1], b1: f[2], b2: f[3]) }
        r.customSchedule = c.custom_timesteps.map { .timesteps($0) } ?? c.custom_sigmas.map { .sigmas($0) }
        r.denoisingStart = c.denoising_start
        r.denoisingEnd = c.denoising_end
        if let score = c.aesthetic_score { r.aestheticScore = score }
        if let score = c.negative_aesthetic_score { r.negativeAestheticScore = score }
        if c.given_embeddings != nil {
            let file = try SafetensorsFile(path: fixtures + "/\(c.name).safetensors")
            func embeddings(_ prefix: String) throws -> PromptEmbeddings? {
                guard file.contains("given_\(prefix)prompt_embeds") else { return nil }
                let hidden = try file.view("given_\(prefix)prompt_embeds")
                return PromptEmbeddings(tokens: hidden.shape[0], width: hidden.shape[1], hiddenStates: hidden.floats(),
                                        pooled: try file.view("given_\(prefix)pooled_prompt_embeds").floats())
            }
            r.promptEmbeddings = try embeddings("")
            r.negativePromptEmbeddings = try embeddings("negative_")
        }
        if c.given_latents == true {
            let given = try SafetensorsFile(path: fixtures + "/\(c.name).safetensors").view("given_latents")
            r.initialLatents = LatentArray(shape: given.shape, values: given.floats())
        }
        return r
    }

    static func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        guard a.count == b.count else { return .infinity }
        var num = 0.0, den = 0.0
        for i in 0..<a.count {
            let d = Double(a[i]) - Double(b[i])
            num += d * d
            den += Double(b[i]) * Double(b[i])
        }
        return den == 0 ? num.squareRoot() : (num / den).squareRoot()
    }

    final class Recorder: @unchecked Sendable {
        var values: [String: [Float]] = [:]
    }

    /// One generation of `request` on the pipeline in `folder`, compared with the fixture `<name>.safetensors`:
    /// each of `compared` (intermediates the run hands to `inspect`) and the final outputs within `tolerance`.
    /// Returns what was recorded, the fixture and the result, for further checks.
    @discardableResult
    static func expectGeneration(
        folder: String = PipelineParityTests.folder, configuration: PipelineConfiguration, request: GenerationRequest,
        fixture name: String, compared: [String], tolerance: Double
    ) async throws -> (recorded: [String: [Float]], reference: SafetensorsFile, result: GenerationResult) {
        let pipeline = try await DiffusionPipeline(contentsOf: folder, configuration: configuration)
        let recorder = Recorder()
        let result = try await pipeline.generateResult(request, progress: nil) { name, values in
            recorder.values[name] = values
        }
        let reference = try SafetensorsFile(path: fixtures + "/\(name).safetensors")
        for entry in compared {
            let error = relativeError(recorder.values[entry] ?? [], try reference.view(entry).floats())
            #expect(error <= tolerance, "\(name) \(entry): relative error \(error)")
        }
        try expectFinalOutputs(result, reference: reference, name: name, tolerance: tolerance)
        return (recorder.values, reference, result)
    }

    @Test(arguments: cases)
    func referenceBackendMatchesDiffusers(_ c: Case) async throws {
        try await check(c, backend: .reference, tolerance: 1e-4)
    }

    /// The CPU backend's fp32 path, whole generations within 1e-3 (DESIGN.md §7).
    @Test(arguments: cases)
    func cpuBackendMatchesDiffusers(_ c: Case) async throws {
        try await check(c, backend: .cpu, tolerance: 1e-3)
    }

    /// The CPU backend with fp32 matmul precision "high" (bf16×3 linears on AMX; plain fp32 elsewhere),
    /// within the same 1e-3.
    @Test(arguments: cases)
    func cpuHighPrecisionMatchesDiffusers(_ c: Case) async throws {
        try await check(c, backend: .cpu, precision: .fp32High, tolerance: 1e-3)
    }

    /// The same generations with the weights from the single-file (SGM / LDM) checkpoint of the tiny
    /// pipeline (`Scripts/fixtures/single_file.py`; diffusers' `from_single_file` rebuilds the folder's
    /// networks from it exactly): diffusers' intermediates within 1e-4, and latents bitwise equal to
    /// the folder's (the same weights). Text-to-image and img2img (the VAE encoder too).
    @Test(arguments: cases.filter { ["euler_negative", "img2img"].contains($0.name) })
    func singleFileCheckpointMatchesDiffusers(_ c: Case) async throws {
        let checkpoint = Self.fixtures + "/tiny-ssd1b-single-file.safetensors"
        let fromFile = try await check(c, backend: .reference, tolerance: 1e-4, singleFileCheckpoint: checkpoint)
        let fromFolder = try await check(c, backend: .reference, tolerance: 1e-4)
        #expect(fromFile.latents == fromFolder.latents)
        #expect(fromFile.images.map(\.pixels) == fromFolder.images.map(\.pixels))
    }

    @discardableResult
    func check(_ c: Case, backend: BackendChoice, precision: Precision = .fp32, tolerance: Double,
               singleFileCheckpoint: String? = nil) async throws -> GenerationResult {
        var configuration = PipelineConfiguration()
        configuration.backend = backend
        configuration.precision = precision
        configuration.singleFileCheckpoint = singleFileCheckpoint
        if c.control_image != nil { configuration.controlNets = [Self.fixtures + "/tiny-controlnet"] }
        if let second = c.controlnet_2 { configuration.controlNets.append(Self.fixtures + "/" + second) }
        configuration.textualInversions = (c.textual_inversions ?? []).map { TextualInversion(path: Self.fixtures + "/" + $0[0], token: $0[1]) }
        if let lora = c.lora { configuration.loras = [LoRAWeights(path: Self.fixtures + "/" + lora, scale: c.lora_scale ?? 1)] }
        let pipeline = try await DiffusionPipeline(contentsOf: c.folder.map { Self.fixtures + "/" + $0 } ?? Self.folder,
                                                   configuration: configuration)
        let recorder = Recorder()
        let result = try await pipeline.generateResult(try Self.request(c), progress: nil) { name, values in
            recorder.values[name] = values
        }
        let reference = try SafetensorsFile(path: Self.fixtures + "/\(c.name).safetensors")
        for (ours, theirs) in [("prompt_embeds", "prompt_embeds"), ("add_text_embeds", "add_text_embeds"),
                               ("add_time_ids", "add_time_ids"), ("first_unet_input", "first_unet_input"),
                               ("first_noise_pred", "first_noise_pred")] {
            let expected = try reference.view(theirs).floats()
            let error = Self.relativeError(recorder.values[ours] ?? [], expected)
            #expect(error <= tolerance, "\(c.name) \(ours): relative error \(error)")
        }
        for name in ["controlnet_down", "controlnet_mid"] where reference.names.contains(name) {
            let error = Self.relativeError(recorder.values[name] ?? [], try reference.view(name).floats())
            #expect(error <= tolerance, "\(c.name) \(name): relative error \(error)")
        }
        try Self.expectFinalOutputs(result, reference: reference, name: c.name, tolerance: tolerance)
        return result
    }

    /// The final latents within `tolerance` and the pixels within 1.0 mean absolute difference of the
    /// reference's `latents` and `image`.
    static func expectFinalOutputs(_ result: GenerationResult, reference: SafetensorsFile, name: String, tolerance: Double) throws {
        let latentError = relativeError(result.latents.values, try reference.view("latents").floats())
        #expect(latentError <= tolerance, "\(name) latents: relative error \(latentError)")
        let expectedPixels = try reference.view("image").floats()
        let ours = result.images.flatMap { $0.pixels.map(Float.init) }
        #expect(ours.count == expectedPixels.count)
        if ours.count == expectedPixels.count {
            let mad = zip(ours, expectedPixels).map { Double(abs($0 - $1)) }.reduce(0, +) / Double(ours.count)
            #expect(mad <= 1.0, "\(name) pixels: mean absolute difference \(mad)")
        }
    }
}
