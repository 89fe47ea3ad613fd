import Foundation
import Testing

@testable import SSDPipeline

/// `InitialImage.paddingMaskCrop` (diffusers `padding_mask_crop`) on the tiny pipeline: the result has the init
/// image's size and keeps its pixels where the mask is black; bad inputs are typed errors naming the field.
/// (Parity with diffusers: the `*_mask_crop` cases of PipelineParityTests.)
struct PaddingMaskCropTests {
    static let fixtures = PipelineParityTests.fixtures

    static func inputs() throws -> (image: RGBImage, mask: RGBImage) {
        (try RGBImage(pngData: FileIO.readAll(fixtures + "/init_large.png")),
         try RGBImage(pngData: FileIO.readAll(fixtures + "/mask_large.png")))
    }

    @Test func resultIsTheInitImageOutsideTheMask() async throws {
        let pipeline = try await PipelineBehaviourTests.pipeline()
        let (image, mask) = try Self.inputs()
        var request = PipelineBehaviourTests.smallRequest()
        request.steps = 2
        request.imagesPerPrompt = 2
        request.initialImage = InitialImage(image: image, mask: mask, strength: 0.9, paddingMaskCrop: 4)
        let result = try await pipeline.generateResult(request)
        #expect(result.latents.shape == [2, 4, 8, 8])
        let grey = mask.greyscale()
        for output in result.images {
            #expect(output.width == image.width && output.height == image.height)
            let kept = (0..<grey.count).filter { grey[$0] == 0 }
            #expect(kept.allSatisfy { i in (0..<3).allSatisfy { output.pixels[3 * i + $0] == image.pixels[3 * i + $0] } })
            #expect(output.pixels != image.pixels)
        }
    }

    @Test func badInputsAreTypedErrors() async throws {
        let pipeline = try await PipelineBehaviourTests.pipeline()
        let (image, mask) = try Self.inputs()
        let black = try RGBImage(width: image.width, height: image.height, pixels: [UInt8](repeating: 0, count: image.pixels.count))
        var line = [UInt8](repeating: 0, count: 256 * 2 * 3)
        for i in 0..<256 { line[3 * i] = 255; line[3 * i + 1] = 255; line[3 * i + 2] = 255 }
        let wide = try RGBImage(width: 256, height: 2, pixels: line)
        let cases: [(String, InitialImage)] = [
            ("paddingMaskCrop", InitialImage(image: image, mask: mask, paddingMaskCrop: -1)),
            ("paddingMaskCrop", InitialImage(image: image, paddingMaskCrop: 4)),
            ("mask", InitialImage(image: image, mask: try RGBImage(pngData: FileIO.readAll(Self.fixtures + "/mask.png")), paddingMaskCrop: 4)),
            ("mask", InitialImage(image: image, mask: black, paddingMaskCrop: 4)),
            ("paddingMaskCrop", InitialImage(image: wide, mask: wide, paddingMaskCrop: 0)),
        ]
        for (field, initial) in cases {
            var request = PipelineBehaviourTests.smallRequest()
            request.initialImage = initial
            do {
                _ = try await pipeline.generate(request)
                Issue.record("\(field): no error")
            } catch PipelineError.invalidArgument(let name, let message) {
                #expect(name == field, "\(message)")
            }
        }
    }
}
