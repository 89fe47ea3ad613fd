import Foundation
import SSDModels
import SSDTensor
import Testing

@testable import SSDPipeline

/// T2I-Adapters against diffusers 0.42.1 (`Scripts/fixtures/t2i_adapter.py`): each adapter type's feature maps
/// (`full_adapter_xl`, `full_adapter`, `light_adapter`, one and three input channels), and
/// `StableDiffusionXLAdapterPipeline` generations on the tiny pipeline (one adapter, a greyscale one with
/// `adapter_conditioning_factor`, two summed as `MultiAdapter` with an image of another size, Heun, `denoising_end`):
/// the scaled feature maps the UNet gets, the first noise prediction and the final latents within 1e-4
/// (reference backend) or 1e-3 (CPU).
struct T2IAdapterParityTests {
    static let fixtures = PipelineParityTests.fixtures

    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        var name: String
        /// Folders under `t2i-adapter/`, one per adapter.
        var adapters: [String]
        var images: [String]
        var scales: [Double]
        var factor: Double?
        var scheduler: String?
        var denoising_end: Double?
        var prompt: String
        var negative_prompt: String?
        var steps: Int
        var guidance: Double
        var seed: UInt64
        var images_per_prompt: Int?
        var testDescription: String { name }
    }

    static let cases: [Case] = {
        guard let data = FileManager.default.contents(atPath: fixtures + "/t2i_cases.json"),
              let cases = try? JSONDecoder().decode([Case].self, from: data) else { return [] }
        return cases
    }()

    static let adapterNames = ["xl", "xl-gray", "full", "light"]

    @Test(arguments: adapterNames)
    func featureMapsMatchDiffusers(_ name: String) throws {
        let reference = try SafetensorsFile(path: Self.fixtures + "/t2i_models.safetensors")
        for backend in [ReferenceBackend() as any ComputeBackend, try BackendFactory.make(.cpu, precision: .fp32)] {
            let adapter = try T2IAdapterModel.load(componentDirectory: Self.fixtures + "/t2i-adapter/" + name, backend: backend)
            let input = try reference.view("input.\(name)")
            let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
            let image = try backend.upload(Layout.nchwToNHWC(input.floats(), n, c, h, w), shape: [n, h, w, c])
            let features = try adapter(image)
            let expectedShapes = adapter.featureShapes(height: h, width: w)
            #expect(features.count == expectedShapes.count)
            for (i, feature) in features.enumerated() {
                #expect(Array(feature.shape.dropFirst()) == expectedShapes[i])
                let expected = try reference.view("features.\(name).\(i)").floats()
                let ours = Layout.nhwcToNCHW(try backend.download(feature), n, feature.shape[3], feature.shape[1], feature.shape[2])
                let error = PipelineParityTests.relativeError(ours, expected)
                #expect(error <= 1e-5, "\(name) feature \(i) on \(type(of: backend)): relative error \(error)")
            }
        }
    }

    static func configuration(_ c: Case, backend: BackendChoice) -> PipelineConfiguration {
        var configuration = PipelineConfiguration()
        configuration.backend = backend
        configuration.t2iAdapters = c.adapters.map { fixtures + "/t2i-adapter/" + $0 }
        return configuration
    }

    static func request(_ c: Case) throws -> GenerationRequest {
        var r = GenerationRequest(prompt: c.prompt)
        r.negativePrompt = c.negative_prompt
        r.size = ImageSize(width: 64, height: 64)
        r.steps = c.steps
        r.guidanceScale = c.guidance
        r.seed = c.seed
        r.imagesPerPrompt = c.images_per_prompt ?? 1
        if let name = c.scheduler { r.scheduler = .named(name) }
        r.denoisingEnd = c.denoising_end
        r.adapters = try zip(c.images, c.scales).map { name, scale in
            AdapterInput(image: try RGBImage(pngData: FileIO.readAll(fixtures + "/" + name)), conditioningScale: scale)
        }
        r.adapterConditioningFactor = c.factor ?? 1
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
        for name in ["prompt_embeds", "add_text_embeds", "add_time_ids", "first_unet_input", "adapter_features", "first_noise_pred"] {
            let error = PipelineParityTests.relativeError(recorder.values[name] ?? [], try reference.view(name).floats())
            #expect(error <= tolerance, "\(c.name) \(name): relative error \(error)")
        }
        try PipelineParityTests.expectFinalOutputs(result, reference: reference, name: c.name, tolerance: tolerance)
    }
}
