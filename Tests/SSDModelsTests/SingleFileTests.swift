#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SSDTensor
import Testing
@testable import SSDModels

/// Single-file (SGM / LDM) checkpoints: the tiny pipeline written in the original names
/// (`Scripts/fixtures/single_file.py`, checked there against diffusers' `from_single_file`) must give
/// every network exactly the folder's tensors, and broken files must be named in the errors.
@Suite struct SingleFileTests {
    static let checkpointPath = Fixtures.root + "/pipeline/tiny-ssd1b-single-file.safetensors"
    static let folder = Fixtures.tinyPipeline

    static func configs() throws -> (UNet2DConditionConfig, AutoencoderKLConfig) {
        (try ConfigFile.load(UNet2DConditionConfig.self, path: folder + "/unet/config.json"),
         try ConfigFile.load(AutoencoderKLConfig.self, path: folder + "/vae/config.json"))
    }

    /// Every parameter each network expects, read through both files' name mappings, bitwise equal.
    @Test func everyParameterMatchesTheFolder() throws {
        let checkpoint = try SingleFileCheckpoint(path: Self.checkpointPath)
        #expect(checkpoint.components == Set(SingleFileNames.Component.allCases))
        #expect(checkpoint.ignoredKeys == ["alphas_cumprod", "model_ema.decay"])
        let (unetConfig, vaeConfig) = try Self.configs()
        let text1 = try ConfigFile.load(CLIPTextConfig.self, path: Self.folder + "/text_encoder/config.json")
        let text2 = try ConfigFile.load(CLIPTextConfig.self, path: Self.folder + "/text_encoder_2/config.json")
        let cases: [(SingleFileNames.Component, [ParameterSpec], WeightNameMapping.Family, String, String)] = [
            (.unet, try UNet2DConditionModel.parameterSpecs(config: unetConfig), .unet, "unet", "diffusion_pytorch_model"),
            (.vae, try AutoencoderKL.parameterSpecs(config: vaeConfig), .vae, "vae", "diffusion_pytorch_model"),
            (.textEncoder, try CLIPTextModel.parameterSpecs(config: text1, withProjection: false), .clipText, "text_encoder", "model"),
            (.textEncoder2, try CLIPTextModel.parameterSpecs(config: text2, withProjection: true), .clipText, "text_encoder_2", "model"),
        ]
        for (component, specs, family, directory, base) in cases {
            let single = try #require(try checkpoint.weights(for: component, unet: unetConfig, vae: vaeConfig))
            let folder = try WeightFiles.locate(in: Self.folder + "/" + directory, baseNames: [base], variant: nil)
            var compared = 0
            for spec in specs {
                let candidates = WeightNameMapping.candidates(for: spec.name, in: family)
                let a = try #require(candidates.first { single.entry($0) != nil }, "\(component) \(spec.name) not in the single file")
                let b = try #require(candidates.first { folder.entry($0) != nil })
                #expect(single.entry(a)?.shape == spec.shape, "\(spec.name)")
                let (x, y) = (try single.view(a), try folder.view(b))
                #expect(x.count == y.count && (0..<x.count).allSatisfy { x.float(at: $0) == y.float(at: $0) }, "\(component) \(spec.name)")
                compared += 1
            }
            #expect(compared == specs.count && compared > 0)
            // Nothing under the component's prefix is left over (the buffers are skipped, not renamed).
            let used = Set(specs.flatMap { WeightNameMapping.candidates(for: $0.name, in: family) })
            #expect(single.names.filter { !used.contains($0) } == [], "\(component)")
        }
    }

    /// The names of SDXL's own layout (int `layers_per_block`, the attention mid block, the
    /// upsampler after an attention at `.2.conv`) and of the VAE, spelled out.
    @Test func sdxlNamesMapAsDiffusersMapsThem() throws {
        var config = UNet2DConditionConfig()
        config.downBlockTypes = ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
        config.upBlockTypes = ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
        config.layersPerBlock = .one(2)
        config.additionEmbedType = "text_time"
        let expected = [
            "input_blocks.0.0.weight": "conv_in.weight",
            "input_blocks.2.0.in_layers.0.weight": "down_blocks.0.resnets.1.norm1.weight",
            "input_blocks.3.0.op.bias": "down_blocks.0.downsamplers.0.conv.bias",
            "input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight": "down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k.weight",
            "input_blocks.4.0.skip_connection.weight": "down_blocks.1.resnets.0.conv_shortcut.weight",
            "middle_block.0.emb_layers.1.weight": "mid_block.resnets.0.time_emb_proj.weight",
            "middle_block.1.proj_in.weight": "mid_block.attentions.0.proj_in.weight",
            "middle_block.2.out_layers.3.bias": "mid_block.resnets.1.conv2.bias",
            "output_blocks.2.2.conv.weight": "up_blocks.0.upsamplers.0.conv.weight",
            "output_blocks.2.1.norm.weight": "up_blocks.0.attentions.2.norm.weight",
            "output_blocks.5.0.out_layers.0.bias": "up_blocks.1.resnets.2.norm2.bias",
            "output_blocks.8.0.in_layers.2.weight": "up_blocks.2.resnets.2.conv1.weight",
            "label_emb.0.2.weight": "add_embedding.linear_2.weight",
            "time_embed.0.bias": "time_embedding.linear_1.bias",
            "out.2.weight": "conv_out.weight",
        ]
        for (sgm, diffusers) in expected {
            #expect(SingleFileNames.unetName(sgm, config: config) == diffusers, "\(sgm)")
        }
        #expect(SingleFileNames.unetName("input_blocks.9.0.in_layers.0.weight", config: config) == nil)  // past the last block
        let vae = [
            "decoder.up.3.block.0.nin_shortcut.weight": ("decoder.up_blocks.0.resnets.0.conv_shortcut.weight", WeightTransform.identity),
            "decoder.up.0.upsample.conv.bias": ("decoder.up_blocks.3.upsamplers.0.conv.bias", .identity),
            "encoder.down.2.downsample.conv.weight": ("encoder.down_blocks.2.downsamplers.0.conv.weight", .identity),
            "encoder.mid.attn_1.q.weight": ("encoder.mid_block.attentions.0.to_q.weight", .squeezeToMatrix),
            "decoder.mid.attn_1.proj_out.bias": ("decoder.mid_block.attentions.0.to_out.0.bias", .squeezeToMatrix),
            "decoder.mid.attn_1.norm.weight": ("decoder.mid_block.attentions.0.group_norm.weight", .identity),
            "decoder.mid.block_2.conv1.weight": ("decoder.mid_block.resnets.1.conv1.weight", .identity),
            "encoder.norm_out.bias": ("encoder.conv_norm_out.bias", .identity),
        ]
        for (sgm, (name, transform)) in vae {
            let mapped = try #require(SingleFileNames.vaeName(sgm, upBlocks: 4)?.first, "\(sgm)")
            #expect(mapped.0 == name && mapped.1 == transform, "\(sgm) → \(mapped)")
        }
        let qkv = try #require(SingleFileNames.openCLIPNames("transformer.resblocks.31.attn.in_proj_weight", storedShape: [3840, 1280]))
        #expect(qkv.map(\.0) == ["q", "k", "v"].map { "text_model.encoder.layers.31.self_attn.\($0)_proj.weight" })
        #expect(qkv.map(\.1) == [.rows(0..<1280), .rows(1280..<2560), .rows(2560..<3840)])
        #expect(SingleFileNames.openCLIPNames("text_projection", storedShape: [1280, 1280])?.first?.1 == .transpose)
        #expect(SingleFileNames.openCLIPNames("logit_scale", storedShape: [])?.isEmpty == true)
    }

    /// A file without UNet tensors is not taken for a checkpoint (the folder's weights would load
    /// silently), and two keys holding one tensor (`first_stage_model.*` and `vae.*`) are refused.
    @Test func foreignAndAmbiguousFilesAreRefused() throws {
        let file = try SafetensorsFile(path: Self.checkpointPath)
        let directory = try Fixtures.temporaryDirectory("single-file-foreign")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let noUNet = try file.entries.keys.sorted().filter { !$0.hasPrefix("model.diffusion_model.") }.map { try file.view($0) }
        try SafetensorsWriter.write(noUNet, to: directory + "/no-unet.safetensors")
        #expect {
            _ = try SingleFileCheckpoint(path: directory + "/no-unet.safetensors")
        } throws: { error in
            guard case let ModelError.invalidInput(_, argument, message) = error else { return false }
            return argument.hasSuffix("no-unet.safetensors") && message.contains("no UNet tensors")
        }
        var both = try file.entries.keys.sorted().map { try file.view($0) }
        let conv = try file.view("first_stage_model.decoder.conv_in.weight")
        both.append(HostTensorView(name: "vae.decoder.conv_in.weight", shape: conv.shape, dtype: conv.dtype, pointer: conv.pointer, owner: conv.owner))
        try SafetensorsWriter.write(both, to: directory + "/both.safetensors")
        let (unetConfig, vaeConfig) = try Self.configs()
        #expect {
            _ = try SingleFileCheckpoint(path: directory + "/both.safetensors").weights(for: .vae, unet: unetConfig, vae: vaeConfig)
        } throws: { error in
            guard case let ModelError.invalidInput(_, _, message) = error else { return false }
            return message.contains("both hold vae decoder.conv_in.weight")
        }
    }

    /// A checkpoint with one tensor renamed to an unknown key and one removed: the load fails naming
    /// both (diffusers would load with `strict=False` and leave the missing tensor random).
    @Test func unknownAndMissingTensorsAreNamed() throws {
        let file = try SafetensorsFile(path: Self.checkpointPath)
        let removed = "model.diffusion_model.out.2.bias"
        var views: [HostTensorView] = []
        for name in file.entries.keys.sorted() where name != removed {
            let view = try file.view(name)
            let renamed = name == "model.diffusion_model.out.0.weight" ? "model.diffusion_model.out.9.weight" : name
            views.append(HostTensorView(name: renamed, shape: view.shape, dtype: view.dtype, pointer: view.pointer, owner: view.owner))
        }
        let directory = try Fixtures.temporaryDirectory("single-file")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/broken.safetensors"
        try SafetensorsWriter.write(views, to: path)
        let (unetConfig, _) = try Self.configs()
        let weights = try #require(try SingleFileCheckpoint(path: path).weights(for: .unet, unet: unetConfig))
        #expect {
            _ = try UNet2DConditionModel(config: unetConfig, weights: weights, backend: ReferenceBackend())
        } throws: { error in
            guard case let ModelError.weightMismatch(_, source, missing, unexpected, _) = error else { return false }
            return source.contains("broken.safetensors (unet)") && missing == ["conv_norm_out.weight", "conv_out.bias"]
                && unexpected == ["model.diffusion_model.out.9.weight"]
        }
    }
}
