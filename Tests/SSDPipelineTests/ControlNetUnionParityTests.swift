import Foundation
import SSDModels
import SSDTensor
import Testing

@testable import SSDPipeline

/// ControlNet Union against diffusers 0.42.1 (`Scripts/fixtures/controlnet_union.py`: ControlNetUnionModel in
/// StableDiffusionXLControlNetUnionPipeline and its img2img / inpainting variants): the first ControlNet call's residuals, the first UNet input and noise
/// prediction, final latents and pixels within 1e-4 (reference backend) or 1e-3 (CPU), for one condition, two with a
/// guidance window (scales on the features), two images per prompt (the attention block mixes the batch rows), img2img
/// and inpainting.
struct ControlNetUnionParityTests {
    static let fixtures = PipelineParityTests.fixtures

    struct Control: Decodable, Sendable {
        var image: String
        var mode: Int
        var scale: Double
        var start: Double?
        var end: Double?
    }

    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        var name: String
        var prompt: String
        var negative_prompt: String?
        var steps: Int
        var guidance: Double
        var seed: UInt64
        var images: Int?
        var init_image: String?
        var mask: String?
        var strength: Double?
        var guess_mode: Bool?
        var controls: [Control]
        var testDescription: String { name }
    }

    struct File: Decodable { var cases: [Case] }

    static let cases: [Case] = {
        guard let data = FileManager.default.contents(atPath: fixtures + "/union_cases.json") else { return [] }
        return (try? JSONDecoder().decode(File.self, from: data))?.cases ?? []
    }()

    static func request(_ c: Case) throws -> GenerationRequest {
        func png(_ name: String) throws -> RGBImage { try RGBImage(pngData: FileIO.readAll(fixtures + "/" + name)) }
        var r = GenerationRequest(prompt: c.prompt)
        r.negativePrompt = c.negative_prompt
        r.size = ImageSize(width: 64, height: 64)
        r.steps = c.steps
        r.guidanceScale = c.guidance
        r.seed = c.seed
        r.imagesPerPrompt = c.images ?? 1
        if let initImage = c.init_image {
            r.initialImage = InitialImage(image: try png(initImage), mask: try c.mask.map(png), strength: c.strength)
        }
        r.controls = try c.controls.map {
            ControlInput(image: try png($0.image), conditioningScale: $0.scale, guidanceStart: $0.start ?? 0,
                         guidanceEnd: $0.end ?? 1, guessMode: c.guess_mode ?? false, controlMode: $0.mode)
        }
        return r
    }

    static func configuration(backend: BackendChoice) -> PipelineConfiguration {
        var configuration = PipelineConfiguration()
        configuration.backend = backend
        configuration.controlNets = [fixtures + "/tiny-controlnet-union"]
        return configuration
    }

    @Test func casesArePresent() { #expect(Self.cases.count == 7) }

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
            configuration: Self.configuration(backend: backend), request: try Self.request(c), fixture: c.name,
            compared: ["prompt_embeds", "add_text_embeds", "add_time_ids", "controlnet_down", "controlnet_mid",
                       "first_unet_input", "first_noise_pred"], tolerance: tolerance)
    }

    /// Typed errors: a union input without its condition type (or one out of range), a condition type for a plain
    /// ControlNet, guess mode with guidance, `paddingMaskCrop`, inpainting with a 9-channel UNet.
    @Test func unionInputsAreChecked() async throws {
        let pipeline = try await DiffusionPipeline(contentsOf: PipelineParityTests.folder, configuration: Self.configuration(backend: .reference))
        let image = try RGBImage(pngData: FileIO.readAll(Self.fixtures + "/control.png"))
        var request = PipelineBehaviourTests.smallRequest()
        func expectInvalid(_ name: String, _ change: (inout GenerationRequest) -> Void) async {
            var r = request
            change(&r)
            do {
                _ = try await pipeline.generate(r)
                Issue.record("no error for \(name)")
            } catch let PipelineError.invalidArgument(argument, _) {
                #expect(argument == name)
            } catch {
                Issue.record("\(error)")
            }
        }
        request.controls = [ControlInput(image: image)]
        await expectInvalid("controls[0].controlMode") { _ in }
        await expectInvalid("controls[0].controlMode") { $0.controls[0].controlMode = 6 }
        await expectInvalid("controls[0].guessMode") {  // (with guidance: diffusers' union pipelines fail)
            $0.controls[0].controlMode = 1
            $0.controls[0].guessMode = true
            $0.guidanceScale = 7
        }
        await expectInvalid("paddingMaskCrop") {
            $0.controls[0].controlMode = 1
            $0.initialImage = InitialImage(image: image, mask: image, strength: 0.5, paddingMaskCrop: 8)
        }
        // Union inpainting with a 9-channel UNet: diffusers' union inpainting pipeline raises.
        let inpaintFolder = try await DiffusionPipeline(contentsOf: Self.fixtures + "/tiny-ssd1b-inpaint", configuration: Self.configuration(backend: .reference))
        var inpaint = request
        inpaint.controls = [ControlInput(image: image, controlMode: 1)]
        inpaint.initialImage = InitialImage(image: image, mask: image, strength: 0.5)
        do {
            _ = try await inpaintFolder.generate(inpaint)
            Issue.record("no error")
        } catch let PipelineError.invalidArgument(argument, _) {
            #expect(argument == "initialImage")
        }
        var plain = PipelineConfiguration()
        plain.backend = .reference
        plain.controlNets = [Self.fixtures + "/tiny-controlnet"]
        let other = try await DiffusionPipeline(contentsOf: PipelineParityTests.folder, configuration: plain)
        var r = request
        r.controls = [ControlInput(image: image, controlMode: 2)]
        do {
            _ = try await other.generate(r)
            Issue.record("no error")
        } catch let PipelineError.invalidArgument(argument, _) {
            #expect(argument == "controls[0].controlMode")
        }
    }
}
