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
        var width: Int?
        var height: Int?
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
        r.size = ImageSize(width: c.width ?? 64, height: c.height ?? 64)
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
        let (recorded, reference, _) = try await PipelineParityTests.expectGeneration(
            configuration: Self.configuration(c, backend: backend), request: try Self.request(c), fixture: c.name,
            compared: ["prompt_embeds", "add_text_embeds", "add_time_ids", "first_unet_input", "adapter_features", "first_noise_pred"],
            tolerance: tolerance)
        #expect(recorded["adapter_calls"] == (try reference.view("adapter_calls").floats()), "\(c.name) adapter_calls")
    }
}

/// T2I-Adapter behaviour beyond parity: scale 0, factor 0 and no input leave the generation as without the
/// adapter; bad requests and adapters that do not fit are typed errors naming the field.
struct T2IAdapterBehaviourTests {
    static let root = PipelineParityTests.fixtures + "/t2i-adapter/"

    static func pipeline(_ adapters: [String]) async throws -> DiffusionPipeline {
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        configuration.t2iAdapters = adapters.map { root + $0 }
        return try await DiffusionPipeline(contentsOf: PipelineParityTests.folder, configuration: configuration)
    }

    @Test func neutralSettingsLeaveTheGenerationAloneAndBadRequestsAreNamed() async throws {
        let sketch = try RGBImage(pngData: FileIO.readAll(PipelineParityTests.fixtures + "/t2i_sketch.png"))
        let expected = try await Self.pipeline([]).generateResult(PipelineBehaviourTests.smallRequest()).latents.values
        let pipeline = try await Self.pipeline(["xl"])
        #expect(try await pipeline.generateResult(PipelineBehaviourTests.smallRequest()).latents.values == expected)
        var request = PipelineBehaviourTests.smallRequest()
        request.adapters = [AdapterInput(image: sketch, conditioningScale: 0)]
        #expect(try await pipeline.generateResult(request).latents.values == expected)
        request.adapters = [AdapterInput(image: sketch)]
        request.adapterConditioningFactor = 0
        #expect(try await pipeline.generateResult(request).latents.values == expected)
        request.adapterConditioningFactor = 1
        #expect(PipelineParityTests.relativeError(try await pipeline.generateResult(request).latents.values, expected) > 1e-2)

        func expectInvalid(_ name: String, on target: DiffusionPipeline? = nil, _ change: (inout GenerationRequest) -> Void) async {
            var request = PipelineBehaviourTests.smallRequest()
            request.adapters = [AdapterInput(image: sketch)]
            change(&request)
            do {
                _ = try await (target ?? pipeline).generate(request)
                Issue.record("\(name): no error")
            } catch PipelineError.invalidArgument(let field, _) {
                #expect(field == name)
            } catch {
                Issue.record("\(name): unexpected \(error)")
            }
        }
        await expectInvalid("adapters") { $0.adapters.append(AdapterInput(image: sketch)) }
        await expectInvalid("adapters[0].conditioningScale") { $0.adapters[0].conditioningScale = .nan }
        await expectInvalid("adapterConditioningFactor") { $0.adapterConditioningFactor = 1.5 }
        await expectInvalid("initialImage") { $0.initialImage = InitialImage(image: sketch, strength: 0.5) }
        // An SD 1.x layout (features at 1/8, 1/16, …) does not fit the SDXL-shaped UNet (first slot at 1/16).
        await expectInvalid("t2iAdapters[0]", on: try await Self.pipeline(["full"])) { _ in }
    }

    @Test func adaptersThatDownscaleDifferentlyAreRefusedAtLoad() async throws {
        do {
            _ = try await Self.pipeline(["xl", "full"])
            Issue.record("no error")
        } catch PipelineError.invalidArgument(let field, _) {
            #expect(field == "t2iAdapters[1]")
        }
        do {
            _ = try await Self.pipeline(["missing-folder"])
            Issue.record("no error")
        } catch {
            #expect("\(error)".contains("missing-folder"), "\(error)")
        }
    }
}
