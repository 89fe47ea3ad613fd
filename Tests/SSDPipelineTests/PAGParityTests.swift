import Foundation
import SSDModels
import SSDTensor
import Testing

@testable import SSDPipeline

/// Perturbed-attention guidance against diffusers 0.42.1 (`Scripts/fixtures/pag.py`: StableDiffusionXLPAGPipeline,
/// its img2img and inpainting variants, with an IP-Adapter, StableDiffusionXLControlNetPAGPipeline and its img2img variant): the three-part conditioning rows, the first UNet
/// input and noise prediction (all three parts), final latents and pixels within 1e-4 (reference backend) or
/// 1e-3 (CPU); diffusers' default layer "mid" refused on a UNet whose mid block has no attention, as diffusers does.
struct PAGParityTests {
    static let fixtures = PipelineParityTests.fixtures

    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        var name: String
        var folder: String?
        var layers: [String]
        var pag_scale: Double
        var pag_adaptive_scale: Double?
        var prompt: String
        var negative_prompt: String?
        var steps: Int
        var guidance: Double
        var seed: UInt64
        var images: Int?
        var guidance_rescale: Double?
        var negative_original_size: [Int]?
        var negative_target_size: [Int]?
        var init_image: String?
        var mask: String?
        var strength: Double?
        var ip_adapter: String?
        var ip_image: String?
        var ip_scale: Double?
        var control_image: String?
        var controlnet_scale: Double?
        var control_guidance_end: Double?
        var width: Int?
        var height: Int?
        var testDescription: String { name }
    }

    struct File: Decodable {
        var mid_raises: String?
        var cases: [Case]
    }

    static let file: File? = {
        guard let data = FileManager.default.contents(atPath: fixtures + "/pag_cases.json") else { return nil }
        return try? JSONDecoder().decode(File.self, from: data)
    }()
    static let cases: [Case] = file?.cases ?? []

    static func request(_ c: Case) throws -> GenerationRequest {
        func png(_ name: String) throws -> RGBImage { try RGBImage(pngData: FileIO.readAll(fixtures + "/" + name)) }
        var r = GenerationRequest(prompt: c.prompt)
        r.negativePrompt = c.negative_prompt
        r.size = ImageSize(width: c.width ?? 64, height: c.height ?? 64)
        r.steps = c.steps
        r.guidanceScale = c.guidance
        r.guidanceRescale = c.guidance_rescale ?? 0
        r.seed = c.seed
        r.imagesPerPrompt = c.images ?? 1
        r.negativeOriginalSize = c.negative_original_size.map { ImageSize(width: $0[0], height: $0[1]) }
        r.negativeTargetSize = c.negative_target_size.map { ImageSize(width: $0[0], height: $0[1]) }
        if let initImage = c.init_image {
            r.initialImage = InitialImage(image: try png(initImage), mask: try c.mask.map(png), strength: c.strength)
        }
        if let control = c.control_image {
            r.controls = [ControlInput(image: try png(control), conditioningScale: c.controlnet_scale ?? 1, guidanceEnd: c.control_guidance_end ?? 1)]
        }
        if let image = c.ip_image { r.imagePrompts = [ImagePrompt(images: [try png(image)], scale: c.ip_scale ?? 1)] }
        r.perturbedAttentionGuidance = PerturbedAttentionGuidance(scale: c.pag_scale, adaptiveScale: c.pag_adaptive_scale ?? 0,
                                                                  layers: c.layers)
        return r
    }

    static func configuration(_ c: Case, backend: BackendChoice) -> PipelineConfiguration {
        var configuration = PipelineConfiguration()
        configuration.backend = backend
        if c.control_image != nil { configuration.controlNets = [fixtures + "/tiny-controlnet"] }
        if let adapter = c.ip_adapter {
            configuration.ipAdapters = [fixtures + "/ip-adapter/sdxl_models/" + adapter]
            configuration.imageEncoder = fixtures + "/ip-adapter/models/image_encoder"
        }
        return configuration
    }

    @Test(arguments: cases)
    func referenceBackendMatchesDiffusers(_ c: Case) async throws {
        try await check(c, backend: .reference, tolerance: 1e-4)
    }

    @Test(arguments: cases)
    func cpuBackendMatchesDiffusers(_ c: Case) async throws {
        try await check(c, backend: .cpu, tolerance: 1e-3)
    }

    func check(_ c: Case, backend: BackendChoice, tolerance: Double) async throws {
        try await PipelineParityTests.expectGeneration(
            folder: c.folder.map { Self.fixtures + "/" + $0 } ?? PipelineParityTests.folder, configuration: Self.configuration(c, backend: backend),
            request: try Self.request(c), fixture: c.name,
            compared: ["prompt_embeds", "add_text_embeds", "add_time_ids", "first_unet_input", "first_noise_pred"], tolerance: tolerance)
    }

    /// diffusers' default layer "mid" on a UNet whose mid block is one resnet (SSD-1B's shape): diffusers raises
    /// (its message is in the fixture), we throw `invalidArgument` naming the field; scale 0 is off (bitwise the
    /// plain generation), as diffusers' `do_perturbed_attention_guidance`.
    @Test func midOnSSD1BShapedUNetIsRefusedAndScaleZeroIsOff() async throws {
        #expect(Self.file?.mid_raises?.contains("Cannot find PAG layer") == true)
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        let pipeline = try await DiffusionPipeline(contentsOf: PipelineParityTests.folder, configuration: configuration)
        var request = PipelineBehaviourTests.smallRequest()
        let plain = try await pipeline.generateResult(request).latents.values
        request.perturbedAttentionGuidance = PerturbedAttentionGuidance()
        do {
            _ = try await pipeline.generate(request)
            Issue.record("no error")
        } catch PipelineError.invalidArgument(let name, let message) {
            #expect(name == "perturbedAttentionGuidance.layers" && message.contains("\"mid\"") && message.contains("down_blocks.2"), "\(message)")
        }
        request.perturbedAttentionGuidance = PerturbedAttentionGuidance(scale: 0, layers: ["down_blocks.2"])
        #expect(try await pipeline.generateResult(request).latents.values == plain)
        request.perturbedAttentionGuidance = PerturbedAttentionGuidance(scale: 3, layers: ["down_blocks.(2"])
        await #expect(throws: PipelineError.self) { _ = try await pipeline.generate(request) }
        request.perturbedAttentionGuidance = PerturbedAttentionGuidance(scale: 3, adaptiveScale: -1, layers: ["down_blocks.2"])
        await #expect(throws: PipelineError.self) { _ = try await pipeline.generate(request) }
    }
}
