import Foundation
import SSDModels
import SSDTensor
import Testing

@testable import SSDPipeline

/// IP-Adapters (h94 file format: ImageProjection and Plus, one or two adapters, with and without guidance,
/// with ControlNet inpainting, with `ip_adapter_masks` and per-image scales) on the tiny pipeline against diffusers 0.42.1 (`Scripts/fixtures/ip_adapter.py`): CLIPImageProcessor's
/// pixels bit for bit (PIL bicubic resize and crop), the image encoder's outputs, the projected image
/// tokens, the first noise prediction and the final latents within 1e-4 (reference backend) or 1e-3 (CPU).
struct IPAdapterParityTests {
    static let fixtures = PipelineParityTests.fixtures

    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        var name: String
        /// (subfolder, weight file, image encoder folder) per adapter, as `load_ip_adapter` takes them.
        var adapters: [[String]]
        /// One image per adapter, or a list (several images of one adapter).
        var images: [OneOrMany<String>]
        /// Per adapter: its images' masks (diffusers `ip_adapter_masks`), or null.
        var masks: [[String]?]?
        /// Per adapter: one scale per image (with masks; `set_ip_adapter_scale([[…]])`).
        var image_scales: [[Double]]?
        var width: Int?
        var height: Int?
        var prompt: String
        var negative_prompt: String?
        var steps: Int
        var guidance: Double
        var seed: UInt64
        var scale: OneOrMany<Double>?
        var images_per_prompt: Int?
        /// With these: ControlNet inpainting (the pipeline fixtures' tiny ControlNet).
        var init_image: String?
        var mask: String?
        var strength: Double?
        var control_image: String?
        var controlnet_scale: Double?
        /// diffusers got `ip_adapter_image_embeds` (stored as `given_embeds.i`, `[2, n, …]`: negative, positive).
        var given_embeds: Bool?
        var testDescription: String { name }
    }

    static let cases: [Case] = {
        guard let data = FileManager.default.contents(atPath: fixtures + "/ipa_cases.json"),
              let cases = try? JSONDecoder().decode([Case].self, from: data) else { return [] }
        return cases
    }()

    static func configuration(_ c: Case, backend: BackendChoice) -> PipelineConfiguration {
        var configuration = PipelineConfiguration()
        configuration.backend = backend
        let repo = fixtures + "/ip-adapter"
        configuration.ipAdapters = c.adapters.map { repo + "/" + $0[0] + "/" + $0[1] }
        // diffusers: an encoder folder without "/" is inside the subfolder, else relative to the repository.
        let first = c.adapters[0]
        configuration.imageEncoder = repo + "/" + (first[2].contains("/") ? first[2] : first[0] + "/" + first[2])
        if c.control_image != nil { configuration.controlNets = [fixtures + "/tiny-controlnet"] }
        return configuration
    }

    static func request(_ c: Case) throws -> GenerationRequest {
        var r = GenerationRequest(prompt: c.prompt)
        r.negativePrompt = c.negative_prompt
        r.size = ImageSize(width: c.width ?? 64, height: c.height ?? 64)
        r.steps = c.steps
        r.guidanceScale = c.guidance
        r.seed = c.seed
        r.imagesPerPrompt = c.images_per_prompt ?? 1
        let scales = c.scale?.expanded(c.adapters.count) ?? c.scale?.expanded(1).map { Array(repeating: $0[0], count: c.adapters.count) }
        r.imagePrompts = try c.images.enumerated().map { i, names in
            let files: [String]
            switch names { case let .one(name): files = [name]; case let .many(list): files = list }
            var prompt = ImagePrompt(images: try files.map { try RGBImage(pngData: FileIO.readAll(fixtures + "/" + $0)) }, scale: scales?[i] ?? 1)
            if let masks = c.masks?[i] { prompt.masks = try masks.map { try RGBImage(pngData: FileIO.readAll(fixtures + "/" + $0)) } }
            prompt.imageScales = c.image_scales?[i]
            return prompt
        }
        if c.given_embeds == true {
            let file = try SafetensorsFile(path: fixtures + "/\(c.name).safetensors")
            r.imagePrompts = try r.imagePrompts.enumerated().map { i, prompt in
                let view = try file.view("given_embeds.\(i)")
                let values = view.floats(), half = values.count / 2
                let embeddings = ImageEmbeddings(shape: Array(view.shape.dropFirst()), positive: Array(values[half...]),
                                                 negative: Array(values[..<half]))
                return ImagePrompt(embeddings: embeddings, scale: prompt.scale)
            }
        }
        func png(_ name: String) throws -> RGBImage { try RGBImage(pngData: FileIO.readAll(fixtures + "/" + name)) }
        if let initImage = c.init_image {
            r.initialImage = InitialImage(image: try png(initImage), mask: try c.mask.map(png), strength: c.strength)
        }
        if let control = c.control_image {
            r.controls = [ControlInput(image: try png(control), conditioningScale: c.controlnet_scale ?? 1)]
        }
        return r
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
        let pipeline = try await DiffusionPipeline(contentsOf: PipelineParityTests.folder, configuration: Self.configuration(c, backend: backend))
        let recorder = PipelineParityTests.Recorder()
        let result = try await pipeline.generateResult(try Self.request(c), progress: nil) { name, values in
            recorder.values[name] = values
        }
        let reference = try SafetensorsFile(path: Self.fixtures + "/\(c.name).safetensors")
        // diffusers' encoder calls give both outputs (we compute the one the adapter takes) and encode
        // Plus adapters' zero input also without guidance (we do not: it is dropped).
        let encoderOutputs = reference.names.filter { $0.hasPrefix("encoder_call") && recorder.values[$0] != nil }
        if c.given_embeds != true {
            #expect(encoderOutputs.filter { !$0.hasSuffix("pixel_values") }.count >= c.adapters.count)
        }
        let compared = ["prompt_embeds", "add_text_embeds", "add_time_ids", "first_noise_pred"] + encoderOutputs
            + reference.names.filter { $0.hasPrefix("projected.") }
        for name in compared {
            let expected = try reference.view(name).floats()
            let error = PipelineParityTests.relativeError(recorder.values[name] ?? [], expected)
            // The preprocessing is exact (PIL's fixed-point bicubic).
            let allowed = name.hasSuffix("pixel_values") ? 0 : tolerance
            #expect(error <= allowed, "\(c.name) \(name): relative error \(error)")
        }
        try PipelineParityTests.expectFinalOutputs(result, reference: reference, name: c.name, tolerance: tolerance)
    }
}
