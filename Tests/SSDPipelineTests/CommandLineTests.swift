#if canImport(Glibc)
import Foundation
import SSDPipeline
import Testing

/// `ssd1b generate`'s argument and output checks, run as a child process on the tiny pipeline: bad
/// arguments are refused before the model loads, with the flag named (exit status 2), and the output
/// files are all written or none. Skipped when the executable is not built (`swift build` first).
@Suite struct CommandLineTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let model = root + "/Tests/Fixtures/pipeline/tiny-ssd1b"

    static var executable: String? {
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [runner.path, runner.deletingLastPathComponent().path, root + "/.build/debug", root + "/.build/release"]
        return candidates.map { $0 + "/ssd1b" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs `ssd1b generate` on the tiny model with `arguments`: (status, stderr + stdout).
    static func generate(_ arguments: [String]) throws -> (Int32, String)? {
        guard let executable else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["generate", "--model", model, "--prompt", "a cat", "--width", "64", "--height", "64", "--steps", "2",
                             "--seed", "1", "--backend", "reference", "--quiet"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func folder() throws -> String {
        let path = NSTemporaryDirectory() + "ssd1b-cli-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test(arguments: [
        (["--output", "/nonexistent-folder/x.png"], "--output: /nonexistent-folder/x.png: folder /nonexistent-folder"),
        (["--output", "/tmp/ssd1b-same.png", "--save-latents", "/tmp/ssd1b-same.png"], "a path is used twice"),
        (["--save-latents", "/nonexistent-folder/l.safetensors", "--output", "/tmp/ssd1b-unused.png"], "--save-latents: "),
        (["--guidance-rescale", "5"], "--guidance-rescale: 5.0 must be between 0 and 1"),
        (["--images", "1000000000"], "--images: 1000000000 must be at most 10000"),
        (["--guidance", "inf"], "--guidance: inf must be a finite number"),
        (["--clip-skip", "-1"], "--clip-skip: -1 must not be negative"),
        (["--init-image", "/etc/hostname"], "--init-image /etc/hostname: "),
        (["--init-image", "/nonexistent.png"], "--init-image: /nonexistent.png: "),
        (["--init-image", "/etc/hostname", "--strength", "2"], "--strength: 2.0 must be between 0 and 1"),
        (["--vae-tile-size", "0"], "--vae-tile-size: 0 must be positive"),
        (["--lora", "x.safetensors:inf"], "--lora x.safetensors:inf: the scale must be a finite number"),
        (["--preview-every", "2"], "--preview-every needs --preview-decoder and --preview"),
        (["--preview-decoder", "/tmp"], "--preview-decoder and --preview go together"),
        (["--controlnet", "/tmp"], "--controlnet, --control-scale, --control-start, --control-end, --control-mode and --guess-mode need --control-image"),
        (["--control-image", "/tmp/x.png"], "--control-image: 1 images for 0 --controlnet folders (one each)"),
        (["--controlnet", "a", "--control-image", "/tmp/x.png", "--control-scale", "1", "--control-scale", "2"],
         "--control-scale: give it once or once per --control-image (1)"),
    ])
    func badArgumentsAreRefusedNamingTheFlag(_ c: ([String], String)) throws {
        guard let (status, output) = try Self.generate(c.0) else { return }
        #expect(status == 2, "\(output)")
        #expect(output.contains(c.1), "\(output)")
    }

    /// `FileIO.writeAllAtomically`: a file that cannot be written (its folder missing) or renamed (a
    /// folder in its place) leaves every path as it was and no temporary file behind.
    @Test func writeAllAtomicallyChangesNothingWhenOneFileFails() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileIO.writeAtomically([1, 2, 3], to: folder + "/a")
        try FileManager.default.createDirectory(atPath: folder + "/c", withIntermediateDirectories: true)
        for bad in [folder + "/missing/b", folder + "/c"] {
            #expect(throws: FileError.self) { try FileIO.writeAllAtomically([(path: folder + "/a", bytes: [9]), (path: bad, bytes: [9])]) }
            #expect(try FileIO.readAll(folder + "/a") == [1, 2, 3])
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder).sorted() == ["a", "c"])
        }
        try FileIO.writeAllAtomically([(path: folder + "/a", bytes: [7]), (path: folder + "/b", bytes: [8])])
        #expect(try FileIO.readAll(folder + "/a") == [7] && FileIO.readAll(folder + "/b") == [8])
    }

    /// Two images and the latents: all three written (and named on stdout); with a folder in one
    /// file's place the run is refused before it starts, and nothing is written.
    /// A ControlNet generation from the command line (also with a control image of another size, which
    /// is resized), and the pipeline's typed error for a request whose inputs do not match its ControlNets.
    @Test func controlNetFromTheCommandLine() throws {
        let fixtures = Self.root + "/Tests/Fixtures/pipeline"
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let control = ["--controlnet", fixtures + "/tiny-controlnet", "--control-image", fixtures + "/control.png",
                       "--control-scale", "0.7", "--control-end", "0.5"]
        guard let (status, output) = try Self.generate(control + ["--output", folder + "/c.png"]) else { return }
        #expect(status == 0, "\(output)")
        #expect(FileManager.default.fileExists(atPath: folder + "/c.png"))
        guard let (resized, log) = try Self.generate(control + ["--width", "96", "--output", folder + "/w.png"]) else { return }
        #expect(resized == 0, "\(log)")
        let twoNets = ["--controlnet", fixtures + "/tiny-controlnet", "--controlnet", fixtures + "/tiny-controlnet-2",
                       "--control-image", fixtures + "/control.png", "--control-image", fixtures + "/init.png",
                       "--control-scale", "0.5", "--control-start", "0", "--control-start", "0.5", "--output", folder + "/m.png"]
        guard let (multi, multiLog) = try Self.generate(twoNets) else { return }
        #expect(multi == 0 && FileManager.default.fileExists(atPath: folder + "/m.png"), "\(multiLog)")
    }

    @Test func ipAdapterFromTheCommandLine() throws {
        let fixtures = Self.root + "/Tests/Fixtures/pipeline"
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let adapter = ["--ip-adapter", fixtures + "/ip-adapter/sdxl_models/ip-adapter-plus_tiny_vit-h.safetensors",
                       "--image-encoder", fixtures + "/ip-adapter/models/image_encoder",
                       "--ip-image", fixtures + "/ip_image.png," + fixtures + "/ip_image2.png", "--ip-scale", "0.6"]
        guard let (status, output) = try Self.generate(adapter + ["--output", folder + "/ip.png"]) else { return }
        #expect(status == 0, "\(output)")
        #expect(FileManager.default.fileExists(atPath: folder + "/ip.png"))
        guard let (missing, message) = try Self.generate(Array(adapter.dropLast(4)) + ["--output", folder + "/x.png"]) else { return }
        #expect(missing == 2 && message.contains("--ip-adapter, --ip-scale and --ip-mask need --ip-image"), "\(message)")
        let masks = ["--ip-mask", fixtures + "/ip_mask_left.png," + fixtures + "/ip_mask_right.png"]
        guard let (maskedStatus, maskedLog) = try Self.generate(adapter + masks + ["--output", folder + "/ipm.png"]) else { return }
        #expect(maskedStatus == 0 && FileManager.default.fileExists(atPath: folder + "/ipm.png"), "\(maskedLog)")
        guard let (scaled, scaledLog) = try Self.generate(adapter + masks + ["--ip-mask-scale", "0.7,0.5", "--output", folder + "/ips.png"]) else { return }
        #expect(scaled == 0 && FileManager.default.fileExists(atPath: folder + "/ips.png"), "\(scaledLog)")
        guard let (badScale, badScaleLog) = try Self.generate(adapter + masks + ["--ip-mask-scale", "0.7", "--output", folder + "/z.png"]) else { return }
        #expect(badScale == 2 && badScaleLog.contains("--ip-mask-scale: 0.7 must be 2 numbers"), "\(badScaleLog)")
        guard let (badMasks, badLog) = try Self.generate(adapter + ["--ip-mask", fixtures + "/ip_mask_left.png", "--output", folder + "/y.png"]) else { return }
        #expect(badMasks == 2 && badLog.contains("--ip-mask: 1 masks for the 2 images"), "\(badLog)")
    }

    @Test func t2iAdapterFromTheCommandLine() throws {
        let fixtures = Self.root + "/Tests/Fixtures/pipeline"
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let adapters = ["--t2i-adapter", fixtures + "/t2i-adapter/xl", "--t2i-adapter", fixtures + "/t2i-adapter/xl-gray",
                        "--adapter-image", fixtures + "/t2i_sketch.png", "--adapter-image", fixtures + "/t2i_sketch_wide.png",
                        "--adapter-scale", "0.8", "--adapter-scale", "0.5", "--adapter-factor", "0.5"]
        guard let (status, output) = try Self.generate(adapters + ["--output", folder + "/t2i.png"]) else { return }
        #expect(status == 0 && FileManager.default.fileExists(atPath: folder + "/t2i.png"), "\(output)")
        for (arguments, message) in [
            (Array(adapters.prefix(4)) + ["--adapter-factor", "0.5"], "--t2i-adapter, --adapter-scale and --adapter-factor need --adapter-image"),
            (Array(adapters.prefix(6)), "--adapter-image: 1 given for 2 --t2i-adapter folders"),
            (Array(adapters.prefix(8)) + ["--adapter-factor", "2"], "--adapter-factor: 2.0 must be between 0 and 1"),
        ] {
            guard let (bad, log) = try Self.generate(arguments + ["--output", folder + "/x.png"]) else { return }
            #expect(bad == 2 && log.contains(message), "\(log)")
        }
    }

    @Test func perturbedAttentionGuidanceFromTheCommandLine() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        guard let (status, output) = try Self.generate(["--pag-scale", "2", "--pag-layer", "down_blocks.2", "--pag-layer", "up_blocks.0",
                                                        "--pag-adaptive-scale", "0.01", "--output", folder + "/pag.png"]) else { return }
        #expect(status == 0 && FileManager.default.fileExists(atPath: folder + "/pag.png"), "\(output)")
        // diffusers' default layer "mid": the tiny UNet's mid block has no attention (as SSD-1B's): a typed error.
        guard let (mid, log) = try Self.generate(["--pag-scale", "3", "--output", folder + "/mid.png"]) else { return }
        #expect(mid != 0 && log.contains("perturbedAttentionGuidance.layers") && !FileManager.default.fileExists(atPath: folder + "/mid.png"), "\(log)")
        guard let (bad, message) = try Self.generate(["--pag-layer", "up", "--output", folder + "/x.png"]) else { return }
        #expect(bad == 2 && message.contains("--pag-layer and --pag-adaptive-scale need --pag-scale"), "\(message)")
    }

    @Test func customScheduleFromTheCommandLine() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        guard let (status, output) = try Self.generate(["--sigmas", "ays", "--output", folder + "/ays.png"]) else { return }
        #expect(status == 0 && FileManager.default.fileExists(atPath: folder + "/ays.png"), "\(output)")
        guard let (dpm, dpmLog) = try Self.generate(["--scheduler", "dpm++2m", "--timesteps", "900,500,100", "--output", folder + "/t.png"]) else { return }
        #expect(dpm == 0, "\(dpmLog)")
        // A scheduler that takes no timesteps (diffusers' Euler ancestral): the pipeline's typed error.
        guard let (refused, log) = try Self.generate(["--scheduler", "euler-a", "--timesteps", "ays", "--output", folder + "/x.png"]) else { return }
        #expect(refused != 0 && log.contains("customSchedule"), "\(log)")
        guard let (bad, message) = try Self.generate(["--sigmas", "3,x", "--output", folder + "/y.png"]) else { return }
        #expect(bad == 2 && message.contains("--sigmas: 3,x must be comma-separated numbers or ays"), "\(message)")
    }

    @Test func textualInversionFromTheCommandLine() throws {
        let fixtures = Self.root + "/Tests/Fixtures/pipeline"
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        guard let (status, output) = try Self.generate(["--textual-inversion", fixtures + "/ti-neg.safetensors:<neg>",
                                                        "--negative-prompt", "<neg>", "--output", folder + "/ti.png"]) else { return }
        #expect(status == 0 && FileManager.default.fileExists(atPath: folder + "/ti.png"), "\(output)")
        guard let (bad, message) = try Self.generate(["--textual-inversion", "no-token", "--output", folder + "/x.png"]) else { return }
        #expect(bad == 2 && message.contains("FILE:TOKEN"), "\(message)")
    }

    /// A base run cut at --denoising-end hands its saved latents to the refiner's --denoising-start.
    @Test func refinerFromTheCommandLine() throws {
        let fixtures = Self.root + "/Tests/Fixtures/pipeline"
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        guard let (status, output) = try Self.generate(["--steps", "5", "--denoising-end", "0.6", "--output", folder + "/base.png",
                                                        "--save-latents", folder + "/base.safetensors"]) else { return }
        #expect(status == 0, "\(output)")
        guard let (refined, log) = try Self.generate(["--model", fixtures + "/tiny-ssd1b-refiner", "--steps", "5",
                                                      "--init-latents", folder + "/base.safetensors", "--denoising-start", "0.6",
                                                      "--aesthetic-score", "7", "--output", folder + "/refined.png"]) else { return }
        #expect(refined == 0 && FileManager.default.fileExists(atPath: folder + "/refined.png"), "\(log)")
    }

    @Test func outputsAreAllWrittenOrNone() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        guard let (status, output) = try Self.generate(["--images", "2", "--output", folder + "/img.png",
                                                        "--save-latents", folder + "/latents.safetensors"]) else { return }
        #expect(status == 0, "\(output)")
        let written = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        #expect(written == ["img-1.png", "img-2.png", "latents.safetensors"], "\(written)")

        let second = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: second) }
        try FileManager.default.createDirectory(atPath: second + "/img-2.png", withIntermediateDirectories: true)
        guard let (failed, message) = try Self.generate(["--images", "2", "--output", second + "/img.png",
                                                         "--save-latents", second + "/latents.safetensors"]) else { return }
        #expect(failed == 2 && message.contains("--output: \(second)/img-2.png: is a folder"), "\(message)")
        let left = try FileManager.default.contentsOfDirectory(atPath: second).sorted()
        #expect(left == ["img-2.png"], "\(left)")
    }
}
#endif
