import Foundation
import SSDModels
import SSDSchedulers
import SSDTensor
import SSDTokenizer
import Testing

@testable import SSDPipeline

/// Cancellation, bad input, streaming and backend swaps on the tiny pipeline folder.
struct PipelineBehaviourTests {
    static let folder = PipelineParityTests.folder

    static func pipeline() async throws -> DiffusionPipeline {
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        return try await DiffusionPipeline(contentsOf: folder, configuration: configuration)
    }

    static func smallRequest() -> GenerationRequest {
        var r = GenerationRequest(prompt: "a cat")
        r.size = ImageSize(width: 64, height: 64)
        r.steps = 3
        r.seed = 0
        return r
    }

    @Test func cancellationStopsWithinOneStepAndThrows() async throws {
        let pipeline = try await Self.pipeline()
        var request = Self.smallRequest()
        request.steps = 50
        let steps = StepCounter()
        let task = Task {
            try await pipeline.generateResult(request) { event in
                guard case .step = event else { return }
                steps.increment()
                // Cancel the generating task itself after its first step (deterministic timing).
                withUnsafeCurrentTask { $0?.cancel() }
            }
        }
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        #expect(steps.value == 1, "ran \(steps.value) steps")
    }

    @Test func cancellingTheStreamConsumerStopsGeneration() async throws {
        let pipeline = try await Self.pipeline()
        var request = Self.smallRequest()
        // Many steps: on a loaded machine the producer may run ahead of the consumer (buffered events) for a while.
        request.steps = 400
        let consumer = Task {
            var seen = 0
            for try await event in pipeline.run(request) {
                if case .step = event { seen += 1 }
                if seen == 1 { withUnsafeCurrentTask { $0?.cancel() } }
            }
            return seen
        }
        let result = await consumer.result
        switch result {
        case .success(let seen): #expect(seen < 400, "stream delivered \(seen) steps")
        case .failure(let error): #expect(error is CancellationError)
        }
    }

    @Test func streamReportsEveryStepThenFinishes() async throws {
        let pipeline = try await Self.pipeline()
        var request = Self.smallRequest()
        request.reportsLatents = true
        var stepNumbers = [Int]()
        var finished: GenerationResult?
        for try await event in pipeline.run(request) {
            switch event {
            case .started(let total, let seed):
                #expect(total == 3)
                #expect(seed == 0)
            case .step(let progress):
                stepNumbers.append(progress.step)
                #expect(progress.latents?.shape == [1, 4, 8, 8])
            case .finished(let result): finished = result
            }
        }
        #expect(stepNumbers == [1, 2, 3])
        #expect(finished?.images.count == 1)
        #expect(finished?.latents.shape == [1, 4, 8, 8])
    }

    @Test func sameSeedSameImageAfterBackendSwap() async throws {
        let pipeline = try await Self.pipeline()
        let first = try await pipeline.generateResult(Self.smallRequest())
        try await pipeline.setBackend(.reference)
        let second = try await pipeline.generateResult(Self.smallRequest())
        #expect(first.images[0].pixels == second.images[0].pixels)
    }

    @Test func releasingTextEncodersKeepsResults() async throws {
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        configuration.releasesTextEncodersAfterEncoding = true
        let pipeline = try await DiffusionPipeline(contentsOf: Self.folder, configuration: configuration)
        let a = try await pipeline.generateResult(Self.smallRequest())
        let b = try await pipeline.generateResult(Self.smallRequest())
        #expect(a.latents == b.latents)
    }

    /// A single-file checkpoint without the VAE ("VAE not baked in"): the VAE comes from the folder's
    /// weights, and the result equals the folder's bitwise. Without weights in either, the error says both.
    @Test func singleFileWithoutVAETakesTheFolders() async throws {
        let source = try SafetensorsFile(path: PipelineParityTests.fixtures + "/tiny-ssd1b-single-file.safetensors")
        let views = try source.entries.keys.sorted().filter { !$0.hasPrefix("first_stage_model.") }.map { try source.view($0) }
        let directory = NSTemporaryDirectory() + "ssd-single-file-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try SafetensorsWriter.write(views, to: directory + "/no-vae.safetensors")
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        configuration.singleFileCheckpoint = directory + "/no-vae.safetensors"
        let fromFile = try await DiffusionPipeline(contentsOf: Self.folder, configuration: configuration)
            .generateResult(Self.smallRequest())
        let fromFolder = try await Self.pipeline().generateResult(Self.smallRequest())
        #expect(fromFile.latents == fromFolder.latents)
        #expect(fromFile.images.map(\.pixels) == fromFolder.images.map(\.pixels))

        // A config folder without weight files (configs, tokenizers and scheduler only).
        let configs = directory + "/configs"
        try FileManager.default.copyItem(atPath: Self.folder, toPath: configs)
        for component in ["unet", "vae", "text_encoder", "text_encoder_2"] {
            for file in try FileManager.default.contentsOfDirectory(atPath: configs + "/" + component) where file.hasSuffix(".safetensors") {
                try FileManager.default.removeItem(atPath: configs + "/" + component + "/" + file)
            }
        }
        configuration.singleFileCheckpoint = PipelineParityTests.fixtures + "/tiny-ssd1b-single-file.safetensors"
        let configsOnly = try await DiffusionPipeline(contentsOf: configs, configuration: configuration).generateResult(Self.smallRequest())
        #expect(configsOnly.latents == fromFolder.latents)
        configuration.singleFileCheckpoint = directory + "/no-vae.safetensors"
        await #expect {
            _ = try await DiffusionPipeline(contentsOf: configs, configuration: configuration)
        } throws: { error in
            guard case let ModelError.weightsNotFound(folder, tried) = error else { return false }
            return folder.hasSuffix("configs/vae") && tried.first?.contains("no-vae.safetensors has no vae tensors") == true
        }
    }

    /// `setLoRAs` gives what loading with the LoRAs gives, removing them gives the plain result back
    /// bitwise, and two LoRAs add up (the same one twice at half the scale ≈ once at the full scale).
    @Test func lorasCanBeChangedAndAddUp() async throws {
        let kohya = PipelineParityTests.fixtures + "/lora-kohya.safetensors"
        let pipeline = try await Self.pipeline()
        let plain = try await pipeline.generateResult(Self.smallRequest())
        try await pipeline.setLoRAs([LoRAWeights(path: kohya, scale: 0.7)])
        let swapped = try await pipeline.generateResult(Self.smallRequest())
        #expect(await pipeline.loraReports.first?.layers == [.unet: 166, .textEncoder: 18, .textEncoder2: 18])
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        configuration.loras = [LoRAWeights(path: kohya, scale: 0.35), LoRAWeights(path: kohya, scale: 0.35)]
        let twice = try await DiffusionPipeline(contentsOf: Self.folder, configuration: configuration).generateResult(Self.smallRequest())
        #expect(PipelineParityTests.relativeError(twice.latents.values, swapped.latents.values) < 1e-5)
        #expect(PipelineParityTests.relativeError(plain.latents.values, swapped.latents.values) > 1e-2)
        try await pipeline.setLoRAs([])
        #expect(try await pipeline.generateResult(Self.smallRequest()).latents == plain.latents)
        #expect(await pipeline.loraReports.isEmpty)
        // A failed change keeps the pipeline as it was.
        await #expect(throws: (any Error).self) { try await pipeline.setLoRAs([LoRAWeights(path: "/nonexistent.safetensors")]) }
        #expect(try await pipeline.generateResult(Self.smallRequest()).latents == plain.latents)
    }

    /// TAESD previews every 2 steps and after the last: the last one is TAESD's decode of the final
    /// latents (the decoder itself is checked against diffusers in `AutoencoderTinyTests`).
    @Test func previewsAreTAESDDecodesOfTheStepLatents() async throws {
        let taesdFolder = PipelineParityTests.fixtures + "/../models/taesd"
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        configuration.previewDecoder = taesdFolder
        let pipeline = try await DiffusionPipeline(contentsOf: Self.folder, configuration: configuration)
        var request = Self.smallRequest()
        request.steps = 3
        request.previewInterval = 2
        request.imagesPerPrompt = 2
        final class Previews: @unchecked Sendable { var byStep: [Int: [RGBImage]] = [:] }
        let previews = Previews()
        let result = try await pipeline.generateResult(request) { event in
            if case .step(let p) = event, let images = p.previews { previews.byStep[p.step] = images }
        }
        #expect(previews.byStep.keys.sorted() == [2, 3])
        let backend = ReferenceBackend()
        let taesd = try AutoencoderTiny.load(componentDirectory: taesdFolder, backend: backend)
        let (h, w) = (result.latents.shape[2], result.latents.shape[3])
        let nhwc = Layout.nchwToNHWC(result.latents.values, 2, 4, h, w)
        let decoded = try backend.download(taesd.decode(backend.upload(nhwc, shape: [2, h, w, 4])))
        let expected = try ImageProcessing.images(fromDecoded: decoded, batch: 2, height: 8 * h, width: 8 * w)
        #expect(previews.byStep[3]?.map(\.pixels) == expected.map(\.pixels))
        #expect(previews.byStep[3]?.first?.width == 64)
        // Without a preview decoder, asking for previews is an error before any work.
        await #expect(throws: PipelineError.self) { _ = try await Self.pipeline().generate(request) }
    }

    /// The ControlNet steers the image (its parity with diffusers is in `PipelineParityTests`); scale 0
    /// gives the plain generation bit for bit (diffusers adds zero residuals); bad control input and a
    /// request for control without a ControlNet are typed errors naming the field.
    @Test func controlNetSteersAndScaleZeroRemovesIt() async throws {
        let fixtures = PipelineParityTests.fixtures
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        configuration.controlNets = [fixtures + "/tiny-controlnet"]
        let pipeline = try await DiffusionPipeline(contentsOf: Self.folder, configuration: configuration)
        let image = try RGBImage(pngData: FileIO.readAll(fixtures + "/control.png"))
        let plain = try await pipeline.generateResult(Self.smallRequest())
        var request = Self.smallRequest()
        request.controls = [ControlInput(image: image, conditioningScale: 0)]
        let zero = try await pipeline.generateResult(request)
        #expect(zero.latents.values == plain.latents.values)
        request.controls = [ControlInput(image: image, conditioningScale: 0.5)]
        let steered = try await pipeline.generateResult(request)
        #expect(PipelineParityTests.relativeError(steered.latents.values, plain.latents.values) > 1e-2)
        // The tiny ControlNets fit the tiny UNet; a control image of another size is resized.
        let unet = try UNet2DConditionModel.load(componentDirectory: Self.folder + "/unet", backend: ReferenceBackend())
        for name in ["tiny-controlnet", "tiny-controlnet-2"] {
            let net = try ControlNetModel.load(componentDirectory: fixtures + "/" + name, backend: ReferenceBackend())
            #expect(net.mismatch(with: unet) == nil)
        }
        request.size = ImageSize(width: 96, height: 64)
        let resized = try await pipeline.generateResult(request)
        #expect(resized.latents.shape == [1, 4, 8, 12])

        func expectInvalid(_ name: String, on p: DiffusionPipeline, _ change: (inout GenerationRequest) throws -> Void) async throws {
            var request = Self.smallRequest()
            request.controls = [ControlInput(image: image)]
            try change(&request)
            do {
                _ = try await p.generate(request)
                Issue.record("\(name): no error")
            } catch PipelineError.invalidArgument(let field, _) {
                #expect(field == name)
            }
        }
        try await expectInvalid("controls", on: try await Self.pipeline()) { _ in }
        try await expectInvalid("controls", on: pipeline) { $0.controls.append($0.controls[0]) }
        try await expectInvalid("controls[0].guidanceStart", on: pipeline) { $0.controls[0].guidanceStart = 0.8; $0.controls[0].guidanceEnd = 0.5 }
        try await expectInvalid("controls[0].conditioningScale", on: pipeline) { $0.controls[0].conditioningScale = .infinity }
        try await expectInvalid("controls[1].guessMode", on: pipeline) {
            var second = $0.controls[0]
            second.guessMode = true
            $0.controls.append(second)
        }
        // ControlNet inpainting has no negative micro-conditioning (diffusers' pipeline takes none).
        try await expectInvalid("negativeOriginalSize", on: pipeline) {
            let image = try RGBImage(pngData: FileIO.readAll(fixtures + "/init.png"))
            $0.initialImage = InitialImage(image: image, mask: image)
            $0.negativeOriginalSize = ImageSize(width: 32, height: 32)
        }
    }

    /// An inpainting UNet (9 input channels) needs an image and a mask: text-to-image and img2img are
    /// typed errors naming `initialImage`, before any work; with a mask it runs (parity: `inpaint9*` cases).
    @Test func inpaintingUNetNeedsAMask() async throws {
        let fixtures = PipelineParityTests.fixtures
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        let pipeline = try await DiffusionPipeline(contentsOf: fixtures + "/tiny-ssd1b-inpaint", configuration: configuration)
        let image = try RGBImage(pngData: FileIO.readAll(fixtures + "/init.png"))
        let mask = try RGBImage(pngData: FileIO.readAll(fixtures + "/mask.png"))
        for initial in [nil, InitialImage(image: image)] {
            var request = Self.smallRequest()
            request.initialImage = initial
            do {
                _ = try await pipeline.generate(request)
                Issue.record("no error")
            } catch PipelineError.invalidArgument(let field, let message) {
                #expect(field == "initialImage")
                #expect(message.contains("9 input channels"))
            }
        }
        var request = Self.smallRequest()
        request.initialImage = InitialImage(image: image, mask: mask)
        request.steps = 2
        let result = try await pipeline.generateResult(request)
        #expect(result.latents.shape == [1, 4, 8, 8])
        // Encoding a prompt needs no image.
        #expect(try await pipeline.encodePrompt(Self.smallRequest()).prompt.tokens == 77)
    }

    @Test func badRequestsGiveTypedErrors() async throws {
        let pipeline = try await Self.pipeline()
        func expectInvalid(_ name: String, _ change: (inout GenerationRequest) -> Void) async {
            var request = Self.smallRequest()
            change(&request)
            do {
                _ = try await pipeline.generate(request)
                Issue.record("\(name): no error")
            } catch let error as PipelineError {
                guard case .invalidArgument(let field, _) = error else { Issue.record("\(name): \(error)"); return }
                #expect(field == name)
            } catch {
                Issue.record("\(name): unexpected \(error)")
            }
        }
        await expectInvalid("size") { $0.size = ImageSize(width: 60, height: 64) }
        await expectInvalid("size") { $0.size = ImageSize(width: 0, height: 64) }
        await expectInvalid("steps") { $0.steps = 0 }
        await expectInvalid("imagesPerPrompt") { $0.imagesPerPrompt = 0 }
        await expectInvalid("guidanceScale") { $0.guidanceScale = .nan }
        await expectInvalid("guidanceRescale") { $0.guidanceRescale = 2 }
        await expectInvalid("initialLatents") {
            $0.initialLatents = LatentArray(shape: [1, 4, 8, 8], values: [Float](repeating: .nan, count: 256))
        }
        await expectInvalid("initialLatents") {
            $0.initialLatents = LatentArray(shape: [1, 4, 4, 8], values: [Float](repeating: 0, count: 128))
        }
        // The channel count is the UNet's, not whatever the latents have.
        await expectInvalid("initialLatents") {
            $0.initialLatents = LatentArray(shape: [1, 8, 8, 8], values: [Float](repeating: 0, count: 512))
        }
        await expectInvalid("strength") { request in
            let image = try? RGBImage(width: 64, height: 64, pixels: [UInt8](repeating: 9, count: 64 * 64 * 3))
            request.initialImage = image.map { InitialImage(image: $0, strength: 1.5) }
        }
        // Sizes whose products would overflow or not be allocatable are refused, not trapped on.
        await expectInvalid("size") { $0.size = ImageSize(width: 1 << 62, height: 64) }
        await expectInvalid("size") { $0.size = ImageSize(width: 64, height: 16392) }
        await expectInvalid("imagesPerPrompt") { $0.size = ImageSize(width: 16384, height: 16384); $0.imagesPerPrompt = 8 }
        await expectInvalid("imagesPerPrompt") { $0.imagesPerPrompt = Int.max }
        await expectInvalid("steps") { $0.steps = Int.max }
        // clip_skip beyond the text encoders' layers (the tiny ones have few), and one that would overflow.
        await expectInvalid("clipSkip") { $0.clipSkip = 99 }
        await expectInvalid("clipSkip") { $0.clipSkip = Int.max }
        await expectInvalid("clipSkip") { $0.clipSkip = -1 }
        // VAE tiles whose kept parts would not line up with their strides (diffusers would return a
        // wrongly sized image) are refused before any work.
        await expectInvalid("vaeTiling") { $0.vaeTiling = VAETiling(tileSampleSize: 20) }
        await expectInvalid("vaeTiling") { $0.vaeTiling = VAETiling(overlapFactor: -0.5) }
        var unknown = Self.smallRequest()
        unknown.scheduler = .named("bogus")
        await #expect(throws: SchedulerError.self) { _ = try await pipeline.generate(unknown) }
        // denoising_end / denoising_start: ranges, order, what they need and what they do not combine with.
        let latents = LatentArray(shape: [1, 4, 8, 8], values: [Float](repeating: 0.1, count: 256))
        await expectInvalid("denoisingEnd") { $0.denoisingEnd = 1 }
        await expectInvalid("denoisingEnd") { $0.denoisingEnd = .nan }
        await expectInvalid("denoisingStart") { $0.denoisingStart = 0.5 }
        await expectInvalid("denoisingStart") { $0.denoisingStart = 0; $0.initialLatents = latents }
        await expectInvalid("denoisingEnd") { $0.denoisingStart = 0.6; $0.denoisingEnd = 0.4; $0.initialLatents = latents }
        await expectInvalid("aestheticScore") { $0.aestheticScore = .infinity }
    }

    /// `encodePrompt` gives what a generation encodes: generating from its embeddings equals generating
    /// from the text bitwise; embeddings that do not fit the UNet are typed errors.
    @Test func encodedPromptsGiveTheSameGeneration() async throws {
        let pipeline = try await Self.pipeline()
        var request = Self.smallRequest()
        request.negativePrompt = "blurry"
        request.clipSkip = 1
        let fromText = try await pipeline.generateResult(request)
        let (prompt, negative) = try await pipeline.encodePrompt(request)
        #expect(prompt.tokens == 77 && prompt.width == 64 && prompt.pooled.count == 32)
        var given = request
        given.prompt = ""
        given.negativePrompt = "something else"
        given.promptEmbeddings = prompt
        given.negativePromptEmbeddings = negative
        #expect(try await pipeline.generateResult(given).latents == fromText.latents)
        func expectInvalid(_ name: String, _ change: (inout GenerationRequest) -> Void) async {
            var bad = given
            change(&bad)
            do {
                _ = try await pipeline.generate(bad)
                Issue.record("\(name): no error")
            } catch PipelineError.invalidArgument(let field, _) {
                #expect(field == name)
            } catch {
                Issue.record("\(name): unexpected \(error)")
            }
        }
        await expectInvalid("promptEmbeddings") {
            $0.promptEmbeddings = PromptEmbeddings(tokens: 77, width: 32, hiddenStates: [Float](repeating: 0, count: 77 * 32), pooled: prompt.pooled)
            $0.negativePromptEmbeddings = nil
        }
        await expectInvalid("promptEmbeddings") { $0.promptEmbeddings?.hiddenStates.removeLast() }
        await expectInvalid("negativePromptEmbeddings") { $0.negativePromptEmbeddings?.pooled.append(1) }
        await expectInvalid("promptEmbeddings") {
            $0.promptEmbeddings?.pooled.removeLast()
            $0.negativePromptEmbeddings?.pooled.removeLast()
        }
        await expectInvalid("negativePromptEmbeddings") { $0.negativePromptEmbeddings?.hiddenStates[0] = .nan }
    }

    /// Textual inversion tokens change the prompt's encoding (parity: the `textual_inversion` case); a
    /// token the tokenizer knows, or a file without `clip_g`, is refused at load.
    @Test func textualInversionsAreCheckedAtLoad() async throws {
        let fixtures = PipelineParityTests.fixtures
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        configuration.textualInversions = [TextualInversion(path: fixtures + "/ti-toy.safetensors", token: "<cat-toy>")]
        let pipeline = try await DiffusionPipeline(contentsOf: Self.folder, configuration: configuration)
        var request = Self.smallRequest()
        request.prompt = "a <cat-toy>"
        let (withToken, _) = try await pipeline.encodePrompt(request)
        let (plain, _) = try await Self.pipeline().encodePrompt(request)
        #expect(withToken.hiddenStates != plain.hiddenStates)
        configuration.textualInversions = [TextualInversion(path: fixtures + "/ti-toy.safetensors", token: "<|endoftext|>")]
        await #expect(throws: PipelineError.self) {
            _ = try await DiffusionPipeline(contentsOf: Self.folder, configuration: configuration)
        }
        configuration.textualInversions = [TextualInversion(path: fixtures + "/control.png", token: "<x>")]
        await #expect(throws: (any Error).self) {
            _ = try await DiffusionPipeline(contentsOf: Self.folder, configuration: configuration)
        }
        configuration.textualInversions = [TextualInversion(path: fixtures + "/lora-kohya.safetensors", token: "<x>")]
        do {
            _ = try await DiffusionPipeline(contentsOf: Self.folder, configuration: configuration)
            Issue.record("no error")
        } catch PipelineError.invalidArgument(let field, let message) {
            #expect(field == "textualInversions" && message.contains("clip_g"))
        }
    }

    /// FreeU changes the generation (parity: the `euler_freeu`, `freeu_nonsquare` cases); as in diffusers, a
    /// zero factor turns it off entirely.
    @Test func freeUChangesTheResultAndZeroTurnsItOff() async throws {
        let pipeline = try await Self.pipeline()
        let plain = try await pipeline.generateResult(Self.smallRequest()).latents.values
        var request = Self.smallRequest()
        request.freeU = .sdxl
        let filtered = try await pipeline.generateResult(request).latents.values
        #expect(PipelineParityTests.relativeError(filtered, plain) > 1e-3)
        request.freeU = FreeU(s1: 0.6, s2: 0.4, b1: 1.1, b2: 0)
        #expect(try await pipeline.generateResult(request).latents.values == plain)
    }

    /// A refiner folder (text_encoder_2 only, `requires_aesthetics_score`) runs image-to-image only, and a
    /// base run cut at `denoisingEnd` hands its latents to the refiner's `denoisingStart` (parity: the
    /// `base_denoising_end` and `refiner_denoising_start` cases); steps past the end are not run.
    @Test func refinerContinuesABaseRun() async throws {
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        let refiner = try await DiffusionPipeline(contentsOf: PipelineParityTests.fixtures + "/tiny-ssd1b-refiner", configuration: configuration)
        do {
            _ = try await refiner.generate(Self.smallRequest())
            Issue.record("no error")
        } catch PipelineError.invalidArgument(let field, _) {
            #expect(field == "initialImage")
        }
        var request = Self.smallRequest()
        request.steps = 10
        request.denoisingEnd = 0.7
        let counter = StepCounter()
        let base = try await Self.pipeline().generateResult(request, progress: { event in
            if case .step = event { counter.increment() }
        })
        #expect(counter.value == 7)
        var second = Self.smallRequest()
        second.steps = 10
        second.initialLatents = base.latents
        second.denoisingStart = 0.7
        let refined = try await refiner.generateResult(second, progress: { event in
            if case .step = event { counter.increment() }
        })
        #expect(counter.value == 10)
        #expect(refined.latents.shape == base.latents.shape)
    }

    @Test func nanLatentsAreReportedNotReturned() async throws {
        let pipeline = try await Self.pipeline()
        var request = Self.smallRequest()
        request.initialLatents = LatentArray(shape: [1, 4, 8, 8], values: [Float](repeating: 3e38, count: 256))
        await #expect(throws: PipelineError.self) { _ = try await pipeline.generate(request) }
    }

    /// A VAE whose output is not finite (a NaN bias here) gives a typed error naming the decoded
    /// image, never a trap converting NaN to a pixel nor an image of garbage.
    @Test func nonFiniteVAEOutputIsReported() async throws {
        let copy = NSTemporaryDirectory() + "ssd-nan-vae-\(getpid())-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: copy) }
        try FileManager.default.copyItem(atPath: Self.folder, toPath: copy)
        let file = copy + "/vae/diffusion_pytorch_model.safetensors"
        let original = try SafetensorsFile(path: file)
        var buffers: [HostBuffer] = []
        let views = try original.views().map { view -> HostTensorView in
            var values = [Float](repeating: 0, count: view.count)
            values.withUnsafeMutableBufferPointer { view.convertToFloat(into: $0.baseAddress!) }
            if view.name == "decoder.conv_out.bias" { values = values.map { _ in .nan } }
            let buffer = HostBuffer(floats: values)
            buffers.append(buffer)
            return buffer.view(name: view.name, shape: view.shape, dtype: .f32)
        }
        try FileManager.default.removeItem(atPath: file)
        try SafetensorsWriter.write(views, to: file)
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        let pipeline = try await DiffusionPipeline(contentsOf: copy, configuration: configuration)
        do {
            _ = try await pipeline.generate(Self.smallRequest())
            Issue.record("no error")
        } catch let error as PipelineError {
            guard case .nonFiniteValues(let stage) = error else { Issue.record("\(error)"); return }
            #expect(stage.contains("VAE output"), "\(stage)")
        }
        withExtendedLifetime(buffers) {}
    }

    /// A prompt longer than CLIP's 77 tokens is cut (as diffusers does) and the result says so, as
    /// diffusers' warning does; a short one gives no note.
    @Test func truncatedPromptsAreNoted() async throws {
        let pipeline = try await Self.pipeline()
        var request = Self.smallRequest()
        request.steps = 1
        request.prompt = Array(repeating: "cat", count: 80).joined(separator: " ")
        let long = try await pipeline.generateResult(request)
        // (the tiny fixture's vocabulary splits "cat" in two tokens: 160 in all, 75 fit)
        #expect(long.notes == ["prompt: 85 of its 160 tokens are beyond CLIP's 77-token limit and were dropped"], "\(long.notes)")
        request.prompt = "a cat"
        #expect(try await pipeline.generateResult(request).notes.isEmpty)
    }

    /// An automatic backend choice says why faster backends were passed over (here: CUDA, without a GPU).
    @Test func automaticChoiceReportsWhatWasPassedOver() async throws {
        let pipeline = try await DiffusionPipeline(contentsOf: Self.folder, configuration: PipelineConfiguration())
        let report = await pipeline.backendReport
        if await pipeline.backendName != "cuda" {
            #expect(report.contains("passed over: ") && report.contains("cuda"), "\(report)")
        }
        if await pipeline.backendName == "cpu" { #expect(report.hasPrefix("cpu: ") && report.contains("micro-kernels"), "\(report)") }
        var explicit = PipelineConfiguration()
        explicit.backend = .reference
        #expect(try await !DiffusionPipeline(contentsOf: Self.folder, configuration: explicit).backendReport.contains("passed over"))
    }

    /// Loading stops at the next tensor once its task is cancelled, with `CancellationError`.
    @Test func loadingIsCancellable() async throws {
        let task = Task {
            var configuration = PipelineConfiguration()
            configuration.backend = .reference
            return try await DiffusionPipeline(contentsOf: Self.folder, configuration: configuration)
        }
        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
    }

    @Test func missingFolderAndComponentsAreNamed() async throws {
        var configuration = PipelineConfiguration()
        configuration.backend = .reference
        await #expect(throws: (any Error).self) {
            _ = try await DiffusionPipeline(contentsOf: "/nonexistent/ssd1b", configuration: configuration)
        }
        let copy = NSTemporaryDirectory() + "ssd1b-missing-\(getpid())"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: Self.folder, toPath: copy)
        defer { try? FileManager.default.removeItem(atPath: copy) }
        try FileManager.default.removeItem(atPath: copy + "/unet")
        do {
            _ = try await DiffusionPipeline(contentsOf: copy, configuration: configuration)
            Issue.record("no error for a folder without unet/")
        } catch {
            #expect("\(error)".contains("unet"), "\(error)")
        }
    }

}

final class StepCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
    func increment() { lock.lock(); count += 1; lock.unlock() }
}
