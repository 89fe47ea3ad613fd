import Foundation
import SSDModels
import SSDTensor
import Testing

@testable import SSDPipeline

/// IP-Adapter behaviour beyond parity: scale 0 and no image prompt leave the generation as without the
/// adapter, bad requests and mismatched files are typed errors naming the field or tensor.
struct IPAdapterBehaviourTests {
    static let fixtures = PipelineParityTests.fixtures
    static let repo = fixtures + "/ip-adapter"

    static func configuration(adapters: [String], encoder: String?) -> PipelineConfiguration {
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        configuration.ipAdapters = adapters.map { repo + "/sdxl_models/" + $0 }
        configuration.imageEncoder = encoder.map { repo + "/" + $0 }
        return configuration
    }

    @Test func scaleZeroAndNoPromptLeaveTheGenerationAlone() async throws {
        let image = try RGBImage(pngData: FileIO.readAll(Self.fixtures + "/ip_image.png"))
        let plain = try await DiffusionPipeline(contentsOf: PipelineParityTests.folder, configuration: Self.configuration(adapters: [], encoder: nil))
        let expected = try await plain.generateResult(PipelineBehaviourTests.smallRequest()).latents.values
        let pipeline = try await DiffusionPipeline(
            contentsOf: PipelineParityTests.folder,
            configuration: Self.configuration(adapters: ["ip-adapter-plus_tiny_vit-h.safetensors"], encoder: "models/image_encoder"))
        #expect(try await pipeline.generateResult(PipelineBehaviourTests.smallRequest()).latents.values == expected)
        var request = PipelineBehaviourTests.smallRequest()
        request.imagePrompts = [ImagePrompt(images: [image], scale: 0)]
        #expect(try await pipeline.generateResult(request).latents.values == expected)
        request.imagePrompts = [ImagePrompt(images: [image, image], scale: 0.8)]
        let steered = try await pipeline.generateResult(request).latents.values
        #expect(PipelineParityTests.relativeError(steered, expected) > 1e-2)

        func expectInvalid(_ name: String, _ change: (inout GenerationRequest) -> Void) async {
            var request = PipelineBehaviourTests.smallRequest()
            change(&request)
            do {
                _ = try await pipeline.generate(request)
                Issue.record("\(name): no error")
            } catch PipelineError.invalidArgument(let field, _) {
                #expect(field == name)
            } catch {
                Issue.record("\(name): unexpected \(error)")
            }
        }
        // Releasing the encoders after encoding (text and image) changes nothing.
        var releasing = Self.configuration(adapters: ["ip-adapter-plus_tiny_vit-h.safetensors"], encoder: "models/image_encoder")
        releasing.releasesTextEncodersAfterEncoding = true
        let released = try await DiffusionPipeline(contentsOf: PipelineParityTests.folder, configuration: releasing)
        #expect(try await released.generateResult(request).latents.values == steered)
        #expect(try await released.generateResult(request).latents.values == steered)
        // Features encoded ahead give the same generation; a wrong shape names the field.
        let features = try await pipeline.encodeImagePrompts(request)
        var fromFeatures = request
        fromFeatures.imagePrompts = [ImagePrompt(embeddings: features[0], scale: 0.8)]
        #expect(try await pipeline.generateResult(fromFeatures).latents.values == steered)
        await expectInvalid("imagePrompts[0].embeddings") {
            var wrong = features[0]
            wrong.shape = [wrong.shape[0], wrong.positive.count / wrong.shape[0]]
            $0.imagePrompts = [ImagePrompt(embeddings: wrong)]
        }
        await expectInvalid("imagePrompts[0].embeddings") {
            var wrong = features[0]
            wrong.negative = nil
            $0.imagePrompts = [ImagePrompt(embeddings: wrong)]
        }
        await expectInvalid("imagePrompts") { $0.imagePrompts = [ImagePrompt(images: [image]), ImagePrompt(images: [image])] }
        await expectInvalid("imagePrompts[0].images") { $0.imagePrompts = [ImagePrompt(images: [])] }
        await expectInvalid("imagePrompts[0].scale") { $0.imagePrompts = [ImagePrompt(images: [image], scale: .nan)] }
        // Masks (diffusers `ip_adapter_masks`): an all-black mask keeps the image out everywhere (bitwise the plain
        // generation), a white one applies it everywhere (each image on its own softmax: not the unmasked result,
        // where both images share one softmax).
        let black = try RGBImage(width: 64, height: 64, pixels: [UInt8](repeating: 0, count: 64 * 64 * 3))
        let white = try RGBImage(width: 64, height: 64, pixels: [UInt8](repeating: 255, count: 64 * 64 * 3))
        var masked = PipelineBehaviourTests.smallRequest()
        masked.imagePrompts = [ImagePrompt(images: [image, image], scale: 0.8)]
        masked.imagePrompts[0].masks = [black, black]
        #expect(try await pipeline.generateResult(masked).latents.values == expected)
        masked.imagePrompts[0].masks = [white, black]
        masked.imagePrompts[0].imageScales = [0.8, 0.3]
        let whiteMasked = try await pipeline.generateResult(masked).latents.values
        #expect(PipelineParityTests.relativeError(whiteMasked, expected) > 1e-2)
        // Two different images under white masks (two softmaxes, added) against the same images unmasked (one).
        let image2 = try RGBImage(pngData: FileIO.readAll(Self.fixtures + "/ip_image2.png"))
        masked.imagePrompts = [ImagePrompt(images: [image, image2], scale: 0.8)]
        let together = try await pipeline.generateResult(masked).latents.values
        masked.imagePrompts[0].masks = [white, white]
        let apart = try await pipeline.generateResult(masked).latents.values
        #expect(PipelineParityTests.relativeError(apart, together) > 1e-3)
        await expectInvalid("imagePrompts[0].masks") {
            $0.imagePrompts = [ImagePrompt(images: [image, image], scale: 0.8)]
            $0.imagePrompts[0].masks = [white]
        }
        await expectInvalid("imagePrompts[0].imageScales") {
            $0.imagePrompts = [ImagePrompt(images: [image], scale: 0.8)]
            $0.imagePrompts[0].imageScales = [0.5]
        }
    }

    @Test func mismatchedFilesAreRefusedAtLoad() async throws {
        func expectInvalid(_ name: String, _ configuration: PipelineConfiguration) async {
            do {
                _ = try await DiffusionPipeline(contentsOf: PipelineParityTests.folder, configuration: configuration)
                Issue.record("\(name): no error")
            } catch PipelineError.invalidArgument(let field, _) {
                #expect(field == name)
            } catch {
                Issue.record("\(name): unexpected \(error)")
            }
        }
        // No encoder; an encoder of the wrong width for the adapter (ViT-H adapter, "bigG" encoder).
        await expectInvalid("imageEncoder", Self.configuration(adapters: ["ip-adapter_tiny.safetensors"], encoder: nil))
        await expectInvalid("ipAdapters[0]", Self.configuration(adapters: ["ip-adapter_tiny_vit-h.safetensors"], encoder: "sdxl_models/image_encoder"))

        // A layer of another width (an adapter numbered for another UNet, as SDXL's on SSD-1B) is a
        // weight mismatch naming the tensor; layers the UNet does not have are ignored, as diffusers does.
        let original = try SafetensorsFile(path: Self.repo + "/sdxl_models/ip-adapter_tiny_vit-h.safetensors")
        var views = try original.views().map { view -> HostTensorView in
            guard view.name == "ip_adapter.3.to_k_ip.weight" else { return view }
            return HostTensorView(name: view.name, shape: [view.shape[0] / 2, view.shape[1]], dtype: view.dtype, pointer: view.pointer, owner: view.owner)
        }
        let extra = try original.view("ip_adapter.1.to_v_ip.weight")
        views.append(HostTensorView(name: "ip_adapter.999.to_v_ip.weight", shape: extra.shape, dtype: extra.dtype, pointer: extra.pointer, owner: extra.owner))
        let path = NSTemporaryDirectory() + "ssd-ip-adapter-\(getpid())-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try SafetensorsWriter.write(views, to: path)
        var configuration = Self.configuration(adapters: [], encoder: "models/image_encoder")
        configuration.ipAdapters = [path]
        do {
            _ = try await DiffusionPipeline(contentsOf: PipelineParityTests.folder, configuration: configuration)
            Issue.record("no error")
        } catch let ModelError.weightMismatch(model, _, missing, unexpected, wrongShape) {
            #expect(model == "IPAdapter")
            #expect(missing.isEmpty && unexpected.isEmpty)
            #expect(wrongShape.map(\.tensor) == ["ip_adapter.3.to_k_ip.weight"])
        }
    }
}
