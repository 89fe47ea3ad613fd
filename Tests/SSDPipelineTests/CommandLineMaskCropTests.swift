#if canImport(Glibc)
import Foundation
import SSDPipeline
import Testing

/// `ssd1b generate --padding-mask-crop` and the img2img output size (the init image's, rounded down to multiples
/// of 8, as diffusers' img2img pipeline), run as a child process on the tiny pipeline (skipped when the executable
/// is not built).
@Suite struct CommandLineMaskCropTests {
    static let fixtures = CommandLineTests.root + "/Tests/Fixtures/pipeline"

    @Test(arguments: [
        (["--init-image", fixtures + "/init_large.png", "--padding-mask-crop", "4"], "--padding-mask-crop needs --mask"),
        (["--init-image", fixtures + "/init_large.png", "--mask", fixtures + "/mask_large.png", "--padding-mask-crop", "-2"],
         "--padding-mask-crop: -2 must not be negative"),
        (["--padding-mask-crop", "4"], "--mask, --strength and --padding-mask-crop need --init-image"),
        (["--init-image", fixtures + "/init_large.png", "--mask", fixtures + "/mask_large.png", "--padding-mask-crop", "x"],
         "--padding-mask-crop: x is not an integer"),
    ])
    func badArgumentsAreRefused(_ c: ([String], String)) throws {
        guard let (status, output) = try CommandLineTests.generate(c.0) else { return }
        #expect(status == 2, "\(output)")
        #expect(output.contains(c.1), "\(output)")
    }

    /// The result is pasted back into the 128×96 init image; a mask of another size is the pipeline's typed error.
    @Test func paddingMaskCropWritesTheInitImageSize() throws {
        let folder = try CommandLineTests.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let inputs = ["--init-image", Self.fixtures + "/init_large.png", "--padding-mask-crop", "6", "--strength", "0.9"]
        guard let (status, output) = try CommandLineTests.generate(
            inputs + ["--mask", Self.fixtures + "/mask_large.png", "--output", folder + "/crop.png"]) else { return }
        #expect(status == 0, "\(output)")
        let image = try RGBImage(pngData: FileIO.readAll(folder + "/crop.png"))
        #expect(image.width == 128 && image.height == 96)
        guard let (failed, message) = try CommandLineTests.generate(
            inputs + ["--mask", Self.fixtures + "/mask.png", "--output", folder + "/x.png"]) else { return }
        #expect(failed != 0 && message.contains("invalid mask"), "\(message)")
    }

    /// Without --width / --height, img2img's output takes the init image's size rounded down to multiples of 8.
    @Test func img2imgTakesTheInitImageSize() throws {
        guard let executable = CommandLineTests.executable else { return }
        let folder = try CommandLineTests.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["generate", "--model", CommandLineTests.model, "--prompt", "a cat", "--steps", "2", "--seed", "1",
                             "--backend", "reference", "--quiet", "--init-image", Self.fixtures + "/init_odd.png",
                             "--strength", "0.6", "--output", folder + "/odd.png"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let log = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(log)")
        let image = try RGBImage(pngData: FileIO.readAll(folder + "/odd.png"))
        #expect(image.width == 96 && image.height == 64)
    }
}
#endif
