#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SSDTensor
import Testing
@testable import SSDModels

/// The SDXL 1.0 base UNet config as shipped (spec §1.1).
let sdxlUNetJSON = """
{ "_class_name": "UNet2DConditionModel",
  "act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
  "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
  "center_input_sample": false, "class_embed_type": null, "class_embeddings_concat": false,
  "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": 2048, "cross_attention_norm": null,
  "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  "downsample_padding": 1, "dual_cross_attention": false, "encoder_hid_dim": null, "encoder_hid_dim_type": null,
  "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
  "mid_block_only_cross_attention": null, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
  "norm_eps": 1e-05, "norm_num_groups": 32, "num_attention_heads": null, "num_class_embeds": null,
  "only_cross_attention": false, "out_channels": 4, "projection_class_embeddings_input_dim": 2816,
  "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": false, "resnet_time_scale_shift": "default",
  "sample_size": 128, "time_cond_proj_dim": null, "time_embedding_act_fn": null, "time_embedding_dim": null,
  "time_embedding_type": "positional", "timestep_post_act": null, "transformer_layers_per_block": [1, 2, 10],
  "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  "upcast_attention": false, "use_linear_projection": true }
"""

func decodeUNet(_ json: String, _ edits: [String: String] = [:]) throws -> UNet2DConditionConfig {
    var text = json
    for (key, value) in edits {
        let pattern = "\"\(key)\": "
        if let start = text.firstRange(of: pattern) {
            // Replace up to the next top-level `, "` or closing brace.
            var depth = 0
            var end = start.upperBound
            while end < text.endIndex {
                let c = text[end]
                if c == "[" { depth += 1 }
                if c == "]" { depth -= 1 }
                if depth == 0 && (c == "," || c == "}") { break }
                end = text.index(after: end)
            }
            text.replaceSubrange(start.upperBound..<end, with: value)
        } else {
            text = String(text.dropLast()) + ", \"\(key)\": \(value) }"
        }
    }
    return try ConfigFile.decode(UNet2DConditionConfig.self, from: Data(text.utf8), path: "test/config.json")
}

/// SSD-1B's UNet config: SDXL with the distilled depths (spec §1.2).
func ssd1bUNetConfig(nested: Bool = true) throws -> UNet2DConditionConfig {
    try decodeUNet(sdxlUNetJSON, [
        "mid_block_type": "\"UNetMidBlock2D\"",
        "transformer_layers_per_block": nested ? "[[1, 1], [2, 2], [4, 4]]" : "[1, 2, 4]",
        "reverse_transformer_layers_per_block": "[[4, 4, 10], [2, 1, 1], 1]",
    ])
}

func count(_ specs: [ParameterSpec]) -> Int { specs.reduce(0) { $0 + $1.count } }

@Suite struct ConfigTests {
    @Test func fullSizeParameterCountsMatchDiffusers() throws {
        let sdxl = try decodeUNet(sdxlUNetJSON)
        #expect(count(try UNet2DConditionModel.parameterSpecs(config: sdxl)) == 2_567_463_684)
        #expect(try UNet2DConditionModel.parameterSpecs(config: sdxl).count == 1_680)
        let ssd1b = try ssd1bUNetConfig()
        let specs = try UNet2DConditionModel.parameterSpecs(config: ssd1b)
        #expect(count(specs) == 1_331_334_404)
        #expect(specs.count == 944)
        #expect(count(try CLIPTextModel.parameterSpecs(config: .sdxlCLIPL, withProjection: false)) == 123_060_480)
        #expect(count(try CLIPTextModel.parameterSpecs(config: .sdxlBigG, withProjection: true)) == 694_659_840)
        #expect(count(try AutoencoderKL.parameterSpecs(config: .sdxl)) == 83_653_863)
    }

    @Test func flatAndNestedDepthsBuildTheSameNetwork() throws {
        let nested = try UNet2DConditionModel.parameterSpecs(config: ssd1bUNetConfig(nested: true))
        let flat = try UNet2DConditionModel.parameterSpecs(config: ssd1bUNetConfig(nested: false))
        #expect(nested == flat)
        // SSD-1B's surviving transformer blocks (spec §6.2).
        #expect(nested.contains { $0.name.hasPrefix("up_blocks.0.attentions.2.transformer_blocks.9.") })
        #expect(!nested.contains { $0.name.hasPrefix("up_blocks.0.attentions.1.transformer_blocks.4.") })
        #expect(!nested.contains { $0.name.hasPrefix("up_blocks.1.attentions.1.transformer_blocks.1.") })
        #expect(!nested.contains { $0.name.hasPrefix("mid_block.attentions") || $0.name.hasPrefix("mid_block.resnets.1") })
    }

    @Test func decodesFieldVariants() throws {
        let config = try ssd1bUNetConfig()
        #expect(config.midBlockType == "UNetMidBlock2D")
        #expect(config.attentionHeadDim == .many([5, 10, 20]))
        #expect(config.transformerLayersPerBlock == .many([.many([1, 1]), .many([2, 2]), .many([4, 4])]))
        #expect(config.reverseTransformerLayersPerBlock == .many([.many([4, 4, 10]), .many([2, 1, 1]), .one(1)]))
        let noMid = try decodeUNet(sdxlUNetJSON, ["mid_block_type": "null"])
        #expect(noMid.midBlockType == nil)
        let defaults = try ConfigFile.decode(UNet2DConditionConfig.self, from: Data("{}".utf8), path: "x")
        #expect(defaults.midBlockType == "UNetMidBlock2DCrossAttn")
        #expect(defaults.attentionHeadDim == .one(8))
        // Round trip through Codable keeps explicit nulls.
        let encoded = try JSONEncoder().encode(noMid)
        #expect(try ConfigFile.decode(UNet2DConditionConfig.self, from: encoded, path: "x") == noMid)
        let lcm = try decodeUNet(sdxlUNetJSON, ["time_cond_proj_dim": "256"])
        let lcmSpecs = try UNet2DConditionModel.parameterSpecs(config: lcm)
        #expect(lcmSpecs.contains { $0.name == "time_embedding.cond_proj.weight" && $0.shape == [320, 256] })
    }

    @Test func modelIndexDecodes() throws {
        let json = """
        {"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.42.1", "feature_extractor": [null, null],
         "force_zeros_for_empty_prompt": false, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
         "unet": ["diffusers", "UNet2DConditionModel"], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]}
        """
        let index = try ConfigFile.decode(ModelIndex.self, from: Data(json.utf8), path: "model_index.json")
        #expect(index.className == "StableDiffusionXLPipeline")
        #expect(!index.forceZerosForEmptyPrompt)
        #expect(index.components.keys.sorted() == ["scheduler", "text_encoder_2", "unet"])
        #expect(index.components["text_encoder_2"]?.className == "CLIPTextModelWithProjection")
        #expect(try ConfigFile.decode(ModelIndex.self, from: JSONEncoder().encode(index), path: "x") == index)
        let defaults = try ConfigFile.decode(ModelIndex.self, from: Data("{}".utf8), path: "model_index.json")
        #expect(defaults.forceZerosForEmptyPrompt)
    }

    @Test(arguments: [
        ("mid_block_type", "\"UNetMidBlock2DSimpleCrossAttn\""),
        ("class_embed_type", "\"timestep\""),
        ("num_attention_heads", "[5, 10, 20]"),
        ("addition_embed_type", "\"text\""),
        ("down_block_types", "[\"DownBlock2D\", \"SimpleCrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\"]"),
        ("only_cross_attention", "true"),
        ("resnet_time_scale_shift", "\"scale_shift\""),
        ("time_embedding_type", "\"fourier\""),
        ("encoder_hid_dim", "1024"),
        ("attention_head_dim", "[5, 10]"),
        ("act_fn", "\"mish\""),
    ])
    func unsupportedUNetValuesNameTheField(_ field: String, _ value: String) throws {
        let config = try decodeUNet(sdxlUNetJSON, [field: value])
        #expect {
            _ = try UNet2DConditionModel.parameterSpecs(config: config)
        } throws: { error in
            guard case let ModelError.unsupportedConfig(model, name, _) = error else { return false }
            return model == "UNet2DConditionModel" && name == field
        }
    }

    @Test func nestedDepthsNeedReverseDepths() throws {
        let config = try decodeUNet(sdxlUNetJSON, ["transformer_layers_per_block": "[[1, 1], [2, 2], [4, 4]]"])
        #expect(throws: ModelError.unsupportedConfig(model: "UNet2DConditionModel", field: "reverse_transformer_layers_per_block",
                                                      value: "null (required when transformer_layers_per_block is nested)")) {
            _ = try UNet2DConditionModel.parameterSpecs(config: config)
        }
    }

    @Test func unsupportedCLIPAndVAEValuesNameTheField() throws {
        var clip = CLIPTextConfig.sdxlCLIPL
        clip.hiddenAct = "gelu_new"
        #expect(throws: ModelError.unsupportedConfig(model: "CLIPTextModel", field: "hidden_act", value: "\"gelu_new\"")) {
            _ = try CLIPTextModel.parameterSpecs(config: clip, withProjection: false)
        }
        var vae = AutoencoderKLConfig.sdxl
        vae.upBlockTypes[1] = "AttnUpDecoderBlock2D"
        #expect(throws: ModelError.unsupportedConfig(model: "AutoencoderKL", field: "up_block_types", value: "\"AttnUpDecoderBlock2D\"")) {
            _ = try AutoencoderKL.parameterSpecs(config: vae)
        }
    }

    @Test func malformedConfigNamesFileAndField() throws {
        let bad = Data(#"{"block_out_channels": "wide", "in_channels": 4}"#.utf8)
        #expect {
            _ = try ConfigFile.decode(UNet2DConditionConfig.self, from: bad, path: "unet/config.json")
        } throws: { error in
            guard case let ModelError.invalidConfig(path, field, _) = error else { return false }
            return path == "unet/config.json" && field == "block_out_channels"
        }
        #expect {
            _ = try ConfigFile.decode(CLIPTextConfig.self, from: Data("{not json".utf8), path: "te/config.json")
        } throws: { error in
            guard case let ModelError.invalidConfig(path, _, _) = error else { return false }
            // No empty field name in the message ("field ''") when the file is not JSON at all.
            return path == "te/config.json" && !"\(error)".contains("field ''")
        }
    }

    /// A component entry of `model_index.json` that is not a two-element list is an error naming it
    /// (not a component silently missing); other keys (pipeline flags) may hold anything.
    @Test func malformedModelIndexEntryIsNamed() throws {
        #expect {
            _ = try ConfigFile.decode(ModelIndex.self, from: Data(#"{"unet": 5, "vae": ["diffusers", "AutoencoderKL"]}"#.utf8),
                                      path: "model_index.json")
        } throws: { error in
            guard case let ModelError.invalidConfig(path, field, _) = error else { return false }
            return path == "model_index.json" && field == "unet"
        }
        let flags = try ConfigFile.decode(ModelIndex.self, from: Data(#"{"requires_aesthetics_score": false, "vae": ["diffusers", "AutoencoderKL"]}"#.utf8),
                                          path: "model_index.json")
        #expect(flags.components.keys.sorted() == ["vae"])
    }
}
