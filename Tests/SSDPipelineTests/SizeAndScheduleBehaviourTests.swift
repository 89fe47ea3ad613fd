import Foundation
import SSDModels
import SSDSchedulers
import SSDTensor
import Testing

@testable import SSDPipeline

/// Sizes that are not multiples of 32 pixels and custom schedules, beyond the parity cases: FreeU off (a zero
/// factor) changes nothing at any size, FreeU on changes the result; custom schedules where diffusers has no such
/// argument, or no step is left, are typed errors naming the field.
struct SizeAndScheduleBehaviourTests {
    func expectInvalid(_ name: String, _ pipeline: DiffusionPipeline, _ request: GenerationRequest) async {
        do {
            _ = try await pipeline.generate(request)
            Issue.record("\(name): no error")
        } catch PipelineError.invalidArgument(let field, _) {
            #expect(field == name)
        } catch {
            Issue.record("\(name): unexpected \(error)")
        }
    }

    @Test func oddSizesWithFreeUAndCustomSchedulesAreHandled() async throws {
        let pipeline = try await PipelineBehaviourTests.pipeline()
        var request = PipelineBehaviourTests.smallRequest()
        request.size = ImageSize(width: 56, height: 72)
        let plain = try await pipeline.generateResult(request).latents.values
        request.freeU = FreeU(s1: 0, s2: 0.4, b1: 1.1, b2: 1.2)  // (off: diffusers' is_freeu_enabled)
        #expect(try await pipeline.generateResult(request).latents.values == plain)
        request.freeU = .sdxl  // (on: runs at any size since the fifteenth session, parity case freeu_odd_size)
        #expect(try await pipeline.generateResult(request).latents.values != plain)

        let image = try RGBImage(pngData: FileIO.readAll(PipelineParityTests.fixtures + "/init.png"))
        var img2img = PipelineBehaviourTests.smallRequest()
        img2img.initialImage = InitialImage(image: image, strength: 0.3)
        img2img.scheduler = .named("heun")
        img2img.customSchedule = .alignYourStepsSDXLTimesteps
        await expectInvalid("strength", pipeline, img2img)  // (Heun: 19 timesteps count as steps; none left at 0.3)
        img2img.scheduler = .named("euler-a")
        await expectInvalid("customSchedule", pipeline, img2img)
        img2img.scheduler = .named("euler")
        img2img.controls = [ControlInput(image: image)]  // (diffusers' ControlNet img2img takes no timesteps=)
        await expectInvalid("customSchedule", pipeline, img2img)
    }
}
