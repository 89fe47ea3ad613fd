#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SSDTensor
import Testing
@testable import SSDModels

/// LoRA files: key forms, name matching (kohya's SGM numbering is the inverse of the single-file
/// mapping), the fused update, and the errors. Whole generations against diffusers are in
/// `PipelineParityTests` (cases `lora_kohya`, `lora_diffusers`).
@Suite struct LoRATests {
    static let kohya = Fixtures.root + "/pipeline/lora-kohya.safetensors"
    static let diffusersFormat = Fixtures.root + "/pipeline/lora-diffusers.safetensors"

    static func unetConfig() throws -> UNet2DConditionConfig {
        try ConfigFile.load(UNet2DConditionConfig.self, path: Fixtures.tinyPipeline + "/unet/config.json")
    }

    /// The tiny UNet with SDXL's mid block (resnet, attention, resnet) and plain depths.
    static func sdxlConfig() throws -> UNet2DConditionConfig {
        var config = try unetConfig()
        config.midBlockType = "UNetMidBlock2DCrossAttn"
        config.transformerLayersPerBlock = .many([.one(1), .one(1), .one(2)])
        config.reverseTransformerLayersPerBlock = nil
        return config
    }

    /// `sgmUNetName` inverts `unetName` on every parameter of the tiny SSD-1B-shaped UNet and of an
    /// SDXL-shaped one (attention mid block, upsampler at `.2.conv`).
    @Test func sgmNamesRoundTrip() throws {
        for config in [try Self.unetConfig(), try Self.sdxlConfig()] {
            let specs = try UNet2DConditionModel.parameterSpecs(config: config)
            #expect(specs.count > 100)
            for spec in specs {
                let sgm = try #require(SingleFileNames.sgmUNetName(spec.name, config: config), "\(spec.name)")
                #expect(SingleFileNames.unetName(sgm, config: config) == spec.name, "\(spec.name) → \(sgm)")
            }
        }
    }

    @Test func keyFormsAreParsed() throws {
        let cases: [(String, SingleFileNames.Component, String, Bool, LoRANames.Part)] = [
            ("lora_unet_input_blocks_4_1_proj_in.lora_down.weight", .unet, "input_blocks_4_1_proj_in", true, .down),
            ("lora_te2_text_model_encoder_layers_0_mlp_fc1.alpha", .textEncoder2, "text_model_encoder_layers_0_mlp_fc1", true, .alpha),
            ("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", .textEncoder, "text_model_encoder_layers_0_mlp_fc1", true, .up),
            ("unet.down_blocks.1.attentions.0.proj_out.lora_B.weight", .unet, "down_blocks.1.attentions.0.proj_out", false, .up),
            ("text_encoder_2.text_model.encoder.layers.1.self_attn.q_proj.lora_linear_layer.down.weight", .textEncoder2,
             "text_model.encoder.layers.1.self_attn.q_proj", false, .down),
            ("unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight", .unet,
             "mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0", false, .up),
            ("base_model.model.up_blocks.0.attentions.1.proj_in.lora_A.weight", .unet, "up_blocks.0.attentions.1.proj_in", false, .down),
        ]
        for (key, component, module, kohya, part) in cases {
            let parsed = try #require(try LoRANames.parse(key, source: "x"), "\(key)")
            #expect(parsed.id == LoRANames.LayerID(component: component, module: module, kohya: kohya) && parsed.part == part, "\(key)")
        }
        #expect(try LoRANames.parse("some_metadata_tensor", source: "x") == nil)
        for key in ["lora_unet_x.dora_scale", "lora_unet_x.hada_w1_a", "lora_unet_x.lokr_w1", "lora_unet_x.lora_mid.weight",
                    "lora_unet_x.w_norm", "unet.x.lora_B.bias", "unet.x.lora_embedding_A"] {
            #expect(throws: ModelError.self) { try LoRANames.parse(key, source: "x") }
        }
    }

    /// The fixtures' layers all land on a parameter: kohya's in SGM numbering, the diffusers file's in
    /// diffusers names (its text encoder 1 layers with `text_model.`, the folder's file without).
    @Test func everyFixtureLayerMatches() throws {
        let config = try Self.unetConfig()
        let specs = try UNet2DConditionModel.parameterSpecs(config: config)
        let text1 = try ConfigFile.load(CLIPTextConfig.self, path: Fixtures.tinyPipeline + "/text_encoder/config.json")
        let text2 = try ConfigFile.load(CLIPTextConfig.self, path: Fixtures.tinyPipeline + "/text_encoder_2/config.json")
        for (path, unetLayers) in [(Self.kohya, 166), (Self.diffusersFormat, 161)] {  // the second without the 5 convolutions
            let file = try LoRAFile(path: path)
            let (unet, unmatched) = try file.deltas(for: .unet, specs: specs, scale: 1, unet: config)
            #expect(unet.count == unetLayers && unmatched.isEmpty, "\(path): \(unet.count), \(unmatched.prefix(3))")
            let (te1, u1) = try file.deltas(for: .textEncoder, specs: try CLIPTextModel.parameterSpecs(config: text1, withProjection: false),
                                            scale: 1, unet: nil)
            let (te2, u2) = try file.deltas(for: .textEncoder2, specs: try CLIPTextModel.parameterSpecs(config: text2, withProjection: true),
                                            scale: 1, unet: nil)
            #expect(!te1.isEmpty && !te2.isEmpty && u1.isEmpty && u2.isEmpty)
        }
    }

    /// `W + scale · alpha / rank · up · down`, for a linear and a 3×3 (LoCon) layer, against a direct sum.
    @Test func fusedUpdateIsTheLowRankProduct() throws {
        let config = try Self.unetConfig()
        let file = try LoRAFile(path: Self.kohya)
        let (deltas, _) = try file.deltas(for: .unet, specs: try UNet2DConditionModel.parameterSpecs(config: config),
                                          scale: 0.5, unet: config)
        let weights = try WeightFiles.locate(in: Fixtures.tinyPipeline + "/unet", baseNames: ["diffusion_pytorch_model"], variant: nil)
        let updated = weights.addingLoRA(deltas.mapValues { [$0] })
        for name in ["down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight", "down_blocks.0.resnets.0.conv1.weight"] {
            let delta = try #require(deltas[name])
            let (w, fused) = (try weights.view(name), try updated.view(name))
            let rank = delta.down.shape[0], rows = w.shape[0], columns = w.count / rows
            #expect(delta.factor == Float(0.5 * 2.0 / Double(rank)))  // the fixture's alpha is 2
            var worst = 0.0
            for o in 0..<rows {
                for j in 0..<columns {
                    var sum = Double(w.float(at: o * columns + j))
                    for r in 0..<rank {
                        sum += Double(delta.factor) * Double(delta.up.float(at: o * rank + r)) * Double(delta.down.float(at: r * columns + j))
                    }
                    worst = max(worst, abs(sum - Double(fused.float(at: o * columns + j))))
                }
            }
            #expect(worst < 1e-5, "\(name): \(worst)")
            #expect(fused.shape == w.shape)
        }
    }

    /// A layer for a block the network lacks is reported and skipped; a missing matrix, a LoRA that
    /// changes nothing, or matrices of the wrong size are errors naming the file.
    @Test func mismatchesAreReportedOrRefused() throws {
        let source = try SafetensorsFile(path: Self.kohya)
        let directory = try Fixtures.temporaryDirectory("lora")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func write(_ name: String, _ change: (inout [HostTensorView]) -> Void) throws -> String {
            var views = try source.entries.keys.sorted().map { try source.view($0) }
            change(&views)
            let path = directory + "/" + name
            try SafetensorsWriter.write(views, to: path)
            return path
        }
        func renamed(_ v: HostTensorView, _ name: String) -> HostTensorView {
            HostTensorView(name: name, shape: v.shape, dtype: v.dtype, pointer: v.pointer, owner: v.owner)
        }
        let config = try Self.unetConfig()
        let specs = try UNet2DConditionModel.parameterSpecs(config: config)

        // An SDXL block SSD-1B does not have: skipped and listed.
        let extra = try write("extra.safetensors") { views in
            let down = views.first { $0.name.hasSuffix("input_blocks_4_1_proj_in.lora_down.weight") }!
            let up = views.first { $0.name.hasSuffix("input_blocks_4_1_proj_in.lora_up.weight") }!
            views += [renamed(down, "lora_unet_input_blocks_4_1_transformer_blocks_7_attn1_to_q.lora_down.weight"),
                      renamed(up, "lora_unet_input_blocks_4_1_transformer_blocks_7_attn1_to_q.lora_up.weight")]
        }
        let (deltas, unmatched) = try LoRAFile(path: extra).deltas(for: .unet, specs: specs, scale: 1, unet: config)
        #expect(deltas.count == 166 && unmatched == ["input_blocks_4_1_transformer_blocks_7_attn1_to_q"])

        let noUp = try write("no-up.safetensors") { views in views.removeAll { $0.name == "lora_unet_out_2.lora_up.weight" || $0.name.hasSuffix("proj_in.lora_up.weight") } }
        #expect(throws: ModelError.self) { try LoRAFile(path: noUp) }

        let wrongSize = try write("wrong.safetensors") { views in
            let i = views.firstIndex { $0.name.hasSuffix("input_blocks_4_1_proj_in.lora_down.weight") }!
            let other = views.first { $0.name.hasSuffix("lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight") }!
            views[i] = renamed(other, views[i].name)
        }
        #expect {
            _ = try LoRAFile(path: wrongSize).deltas(for: .unet, specs: specs, scale: 1, unet: config)
        } throws: { error in
            guard case let ModelError.invalidInput(_, argument, message) = error else { return false }
            return argument == wrongSize && message.contains("do not fit down_blocks.1.attentions.0.proj_in.weight")
        }

        // A LoRA for another model: nothing matches.
        let foreign = try write("foreign.safetensors") { views in
            views = views.filter { $0.name.hasPrefix("lora_unet_") }.map { renamed($0, "lora_unet_double_" + $0.name.dropFirst("lora_unet_".count)) }
        }
        let set = try LoRASet([LoRAWeights(path: foreign)])
        let weights = try WeightFiles.locate(in: Fixtures.tinyPipeline + "/unet", baseNames: ["diffusion_pytorch_model"], variant: nil)
        let (_, reports) = try set.apply(to: weights, component: .unet, specs: specs, unet: config)
        #expect(reports.first?.layers == [.unet: 0] && reports.first?.unmatched[.unet]?.count == 166)
        #expect {
            try LoRASet.checkEveryLoRAApplies(reports)
        } throws: { error in
            guard case let ModelError.invalidInput(_, argument, message) = error else { return false }
            return argument == foreign && message.contains("none of its")
        }
        #expect(throws: ModelError.self) { try LoRASet([LoRAWeights(path: Self.kohya, scale: .infinity)]) }
    }
}
