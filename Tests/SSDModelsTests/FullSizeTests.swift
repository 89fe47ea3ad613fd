#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SSDTensor
import Testing
@testable import SSDModels

/// The folder written by `Scripts/make_fixtures.py full-size --out DIR --check-unet`, opted in with
/// `SSD1B_FULLSIZE_DIR=DIR swift test -c release -Xswiftc -enable-testing --filter FullSizeTests`.
let fullSizeDirectory: String? = getenv("SSD1B_FULLSIZE_DIR").map { String(cString: $0) }

/// Full-size checks (a recorded check, not CI): parameter counts equal diffusers', and one UNet
/// forward at a 32×32 latent matches diffusers within 1e-3.
@Suite(.enabled(if: fullSizeDirectory != nil, "set SSD1B_FULLSIZE_DIR to a full-size folder"))
struct FullSizeTests {
    @Test func parameterCountsMatchDiffusers() throws {
        let folder = try PipelineFolder(path: fullSizeDirectory ?? "")
        let info = Dictionary(uniqueKeysWithValues: try folder.inspect().map { ($0.name, $0) })
        let unetConfig = try ConfigFile.load(UNet2DConditionConfig.self, path: folder.componentDirectory("unet") + "/config.json")
        let expectedUNet = unetConfig.midBlockType == "UNetMidBlock2D" ? 1_331_334_404 : 2_567_463_684
        #expect(info["unet"]?.parameters == expectedUNet)
        #expect(info["text_encoder"]?.parameters == 123_060_480)
        #expect(info["text_encoder_2"]?.parameters == 694_659_840)
        #expect(info["vae"]?.parameters == 83_653_863)
        for (name, c) in info.sorted(by: { $0.key < $1.key }) where c.dtype != nil {
            print("full-size \(name): \(c.parameters) parameters, \(c.dtype ?? ""), \(c.bytes) bytes")
        }
    }

    @Test func unetForwardMatchesDiffusers() throws {
        let directory = fullSizeDirectory ?? ""
        let io = try SafetensorsFile(path: directory + "/unet_check.safetensors")
        let backend = ReferenceBackend()
        let unet = try UNet2DConditionModel.load(componentDirectory: directory + "/unet", backend: backend)
        let output = try unet(sample: io.upload("sample", to: backend), timesteps: io.floats("timesteps"),
                              encoderHiddenStates: io.upload("encoder_hidden_states", to: backend),
                              textEmbeds: io.upload("text_embeds", to: backend), timeIDs: io.floats("time_ids"))
        let error = relativeError(try backend.download(output), try io.floats("output"))
        print("full-size UNet forward (32×32 latent) relative error vs diffusers: \(error)")
        #expect(error <= 1e-3)
    }
}

extension FullSizeTests {
    @Test func textEncodersAndVAEMatchReference() throws {
        let directory = fullSizeDirectory ?? ""
        let io = try SafetensorsFile(path: directory + "/components_check.safetensors")
        let backend = ReferenceBackend()
        for folder in ["text_encoder", "text_encoder_2"] {
            let model = try CLIPTextModel.load(componentDirectory: directory + "/" + folder, backend: backend)
            let flat = try io.floats(folder + ".input_ids").map { Int32($0) }
            let ids = stride(from: 0, to: flat.count, by: 77).map { Array(flat[$0..<($0 + 77)]) }
            let (hidden, pooled) = try model.encode(inputIDs: ids, hiddenStateIndex: -2, pooled: true)
            let hiddenError = relativeError(try backend.download(hidden), try io.floats(folder + ".hidden_states_m2"))
            let pooledError = relativeError(try backend.download(#require(pooled)), try io.floats(folder + ".pooled"))
            print("full-size \(folder) relative error: hidden_states[-2] \(hiddenError), pooled \(pooledError)")
            #expect(hiddenError <= 1e-3 && pooledError <= 1e-3)
        }
        let vae = try AutoencoderKL.load(componentDirectory: directory + "/vae", backend: backend)
        let image = try vae.decode(io.upload("vae.latents", to: backend))
        let error = relativeError(try backend.download(image), try io.floats("vae.image"))
        print("full-size VAE decode (16×16 latent) relative error: \(error)")
        #expect(error <= 1e-3)
    }
}
