/// All weight-name mapping in one place (DESIGN.md §4).
///
/// Networks name their parameters with the diffusers / transformers module paths (the
/// canonical names, as `state_dict()` prints them). This file says which spellings of a canonical
/// name a weight file may use instead, and which file entries are not parameters at all.
/// Single-file (SGM / LDM) checkpoints are mapped by `SingleFileNames` below.
enum WeightNameMapping {
    /// The naming family of a component's weight file.
    enum Family: Sendable {
        case unet
        case vae
        case clipText
        /// transformers `CLIPVisionModelWithProjection` (IP-Adapter image encoders).
        case clipVision
        /// IP-Adapter files in the h94 format (`image_proj.*`, `ip_adapter.N.*`).
        case ipAdapter
    }

    /// File names to try for `canonical`, best first.
    static func candidates(for canonical: String, in family: Family) -> [String] {
        switch family {
        case .unet, .ipAdapter:
            return [canonical]
        case .clipText:
            // transformers 5 saves `CLIPTextModel` without the `text_model.` prefix (spec §6.3).
            let prefix = "text_model."
            if canonical.hasPrefix(prefix) { return [canonical, String(canonical.dropFirst(prefix.count))] }
            return [canonical]
        case .clipVision:
            // `CLIPVisionModel` files name the tower without the `vision_model.` prefix.
            let prefix = "vision_model."
            if canonical.hasPrefix(prefix) { return [canonical, String(canonical.dropFirst(prefix.count))] }
            return [canonical]
        case .vae:
            // VAE files written before diffusers 0.14 name the mid-block attention
            // `query/key/value/proj_attn` (diffusers `_convert_deprecated_attention_blocks`).
            for (new, old) in deprecatedVAEAttentionNames {
                if let range = canonical.firstRange(of: ".attentions.0." + new + ".") {
                    var renamed = canonical
                    renamed.replaceSubrange(range, with: ".attentions.0." + old + ".")
                    return [canonical, renamed]
                }
            }
            return [canonical]
        }
    }

    /// File entries that are buffers, not parameters, and are skipped without complaint.
    static func isIgnored(_ fileName: String, in family: Family) -> Bool {
        switch family {
        case .clipText, .clipVision:
            // Older transformers saved the `position_ids` buffer (spec §6.3).
            return fileName.hasSuffix("embeddings.position_ids")
        case .ipAdapter:
            // diffusers reads `image_proj.*` and only the `ip_adapter.N` layers the UNet has; the rest is skipped.
            return !fileName.hasPrefix("image_proj.")
        case .unet, .vae:
            return false
        }
    }

    private static let deprecatedVAEAttentionNames = [
        ("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn"),
    ]
}

/// Single-file (SGM / LDM) checkpoint names → diffusers names, the mapping diffusers'
/// `loaders/single_file_utils.py` applies in `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`,
/// `convert_ldm_clip_checkpoint` and `convert_open_clip_checkpoint` (spec §6.4).
public enum SingleFileNames {
    /// The networks of a single-file checkpoint (named as their diffusers folders).
    public enum Component: String, Sendable, Hashable, CaseIterable {
        /// `model.diffusion_model.*`.
        case unet
        /// `first_stage_model.*` (or `vae.*`).
        case vae
        /// CLIP ViT-L: `conditioner.embedders.0.transformer.*` (transformers names).
        case textEncoder = "text_encoder"
        /// OpenCLIP bigG: `conditioner.embedders.1.model.*` (OpenCLIP names, or transformers names as in
        /// Segmind's `SSD-1B.safetensors`).
        case textEncoder2 = "text_encoder_2"
    }

    /// Key prefixes of each component. The `cond_stage_model.{0,1}` spellings are those reported for
    /// `SSD-1B.safetensors` (stable-diffusion.cpp #158), whose text encoders use non-standard prefixes;
    /// diffusers does not read them (it takes those encoders from the config folder), this loader does.
    static let prefixes: [(String, Component)] = [
        ("model.diffusion_model.", .unet),
        ("first_stage_model.", .vae), ("vae.", .vae),
        ("conditioner.embedders.0.transformer.", .textEncoder), ("cond_stage_model.0.transformer.", .textEncoder),
        ("conditioner.embedders.1.model.", .textEncoder2), ("cond_stage_model.1.model.", .textEncoder2),
    ]

    /// The component a key belongs to and the key without the component's prefix; nil for keys outside
    /// every component (EMA copies `model_ema.*`, LDM buffers such as `alphas_cumprod`).
    static func component(of key: String) -> (component: Component, rest: String)? {
        for (prefix, component) in prefixes where key.hasPrefix(prefix) {
            return (component, String(key.dropFirst(prefix.count)))
        }
        return nil
    }

    /// The diffusers name(s) a stored key becomes, each with how its data is taken; `[]` for buffers
    /// that are not parameters (skipped), nil for a key no rule maps.
    static func diffusersNames(for rest: String, in component: Component, storedShape: [Int], unet: UNet2DConditionConfig?,
                               vae: AutoencoderKLConfig?, key: String, source: String) throws -> [(String, WeightTransform)]? {
        func needs(_ what: String) -> ModelError {
            .invalidInput(model: "SingleFileCheckpoint", argument: component.rawValue, message: "mapping \(key) of \(source) needs the \(what)")
        }
        switch component {
        case .unet:
            guard let unet else { throw needs("UNet's config") }
            return unetName(rest, config: unet).map { [($0, .identity)] }
        case .vae:
            guard let vae else { throw needs("VAE's config") }
            return vaeName(rest, upBlocks: vae.upBlockTypes.count)
        case .textEncoder:
            if rest.hasSuffix("embeddings.position_ids") { return [] }
            return [(rest, .identity)]  // transformers names, with or without `text_model.`
        case .textEncoder2:
            if rest.hasSuffix(".attn.in_proj_weight") || rest.hasSuffix(".attn.in_proj_bias"), (storedShape.first ?? 0) % 3 != 0 {
                throw ModelError.invalidInput(model: "SingleFileCheckpoint", argument: component.rawValue,
                                              message: "\(key) of \(source) has shape \(storedShape): q, k and v need a multiple of 3 rows")
            }
            return openCLIPNames(rest, storedShape: storedShape)
        }
    }

    // MARK: UNet

    /// `input_blocks.{i}` / `output_blocks.{i}` → (block, layer) for the config's `layers_per_block`:
    /// each down block has its layers then (but the last) a downsampler; each up block one layer more.
    static func unetName(_ rest: String, config: UNet2DConditionConfig) -> String? {
        let parts = rest.split(separator: ".", maxSplits: 2).map(String.init)
        let down = config.downBlockTypes.count
        let layers: [Int]
        switch config.layersPerBlock {
        case .one(let n): layers = Array(repeating: n, count: down)
        case .many(let list): layers = list
        }
        let fixed: [String: String] = [
            "time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
            "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out",
            "label_emb.0.0": (config.additionEmbedType == "text_time" ? "add_embedding" : "class_embedding") + ".linear_1",
            "label_emb.0.2": (config.additionEmbedType == "text_time" ? "add_embedding" : "class_embedding") + ".linear_2",
        ]
        for (old, new) in fixed where rest.hasPrefix(old + ".") { return new + rest.dropFirst(old.count) }
        guard parts.count == 3, let index = Int(parts[1]) else { return nil }
        let sub = parts[2]  // "{k}.…"
        func resnet(_ tail: Substring) -> String {
            let renames = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"), ("out_layers.3", "conv2"),
                           ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut")]
            for (old, new) in renames where tail.hasPrefix(old + ".") { return new + tail.dropFirst(old.count) }
            return String(tail)
        }
        switch parts[0] {
        case "input_blocks":
            var i = index - 1
            for (block, n) in layers.prefix(down).enumerated() {
                if i <= n {
                    if i == n {  // the downsampler (not after the last block)
                        guard block < down - 1, sub.hasPrefix("0.op.") else { return nil }
                        return "down_blocks.\(block).downsamplers.0.conv" + sub.dropFirst(4)
                    }
                    if sub.hasPrefix("0.") { return "down_blocks.\(block).resnets.\(i).\(resnet(sub.dropFirst(2)))" }
                    if sub.hasPrefix("1.") { return "down_blocks.\(block).attentions.\(i)." + sub.dropFirst(2) }
                    return nil
                }
                i -= n + 1
            }
            return nil
        case "middle_block":
            // [resnet, attention, resnet] in SDXL; SSD-1B keeps only `middle_block.0`.
            if index % 2 == 0 { return "mid_block.resnets.\(index / 2).\(resnet(Substring(sub)))" }
            return "mid_block.attentions.\(index / 2).\(sub)"
        case "output_blocks":
            var i = index
            for (block, n) in layers.prefix(down).reversed().enumerated() {
                if i <= n {
                    if sub.hasPrefix("0.") { return "up_blocks.\(block).resnets.\(i).\(resnet(sub.dropFirst(2)))" }
                    for k in ["1", "2"] where sub == k + ".conv.weight" || sub == k + ".conv.bias" {
                        return "up_blocks.\(block).upsamplers.0.conv" + sub.dropFirst(k.count + 5)
                    }
                    if sub.hasPrefix("1.") { return "up_blocks.\(block).attentions.\(i)." + sub.dropFirst(2) }
                    return nil
                }
                i -= n + 1
            }
            return nil
        default:
            return nil
        }
    }

    // MARK: VAE

    /// `encoder.down.{i}.block.{j}` → `encoder.down_blocks.{i}.resnets.{j}`, `decoder.up.{k}` →
    /// `decoder.up_blocks.{n−1−k}` (reversed), `mid.block_{1,2}` → `mid_block.resnets.{0,1}`,
    /// `mid.attn_1.{norm,q,k,v,proj_out}` → `mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}`
    /// (1×1 convolution weights used as linear ones), `norm_out` → `conv_norm_out`, `nin_shortcut` → `conv_shortcut`.
    static func vaeName(_ rest: String, upBlocks: Int) -> [(String, WeightTransform)]? {
        var name = rest
        var transform = WeightTransform.identity
        func replace(_ old: String, _ new: String) -> Bool {
            guard let range = name.firstRange(of: old) else { return false }
            name.replaceSubrange(range, with: new)
            return true
        }
        let side = name.hasPrefix("encoder.") ? "encoder." : name.hasPrefix("decoder.") ? "decoder." : ""
        if side.isEmpty {
            return ["quant_conv.weight", "quant_conv.bias", "post_quant_conv.weight", "post_quant_conv.bias"].contains(name)
                ? [(name, .identity)] : nil
        }
        let body = name.dropFirst(side.count).split(separator: ".").map(String.init)
        guard let head = body.first else { return nil }
        switch head {
        case "conv_in", "conv_out":
            break
        case "norm_out":
            _ = replace("norm_out", "conv_norm_out")
        case "down" where body.count > 3:
            guard body[2] == "block" || body[2] == "downsample" else { return nil }
            name = side + "down_blocks.\(body[1])." + (body[2] == "block" ? "resnets." : "downsamplers.0.") + body[3...].joined(separator: ".")
        case "up" where body.count > 3:
            guard let k = Int(body[1]), k < upBlocks, body[2] == "block" || body[2] == "upsample" else { return nil }
            name = side + "up_blocks.\(upBlocks - 1 - k)." + (body[2] == "block" ? "resnets." : "upsamplers.0.") + body[3...].joined(separator: ".")
        case "mid" where body.count > 2:
            switch body[1] {
            case "block_1": name = side + "mid_block.resnets.0." + body[2...].joined(separator: ".")
            case "block_2": name = side + "mid_block.resnets.1." + body[2...].joined(separator: ".")
            case "attn_1":
                let renames = ["norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"]
                guard body.count == 4, let new = renames[body[2]] else { return nil }
                name = side + "mid_block.attentions.0.\(new).\(body[3])"
                if body[2] != "norm" { transform = .squeezeToMatrix }
            default:
                return nil
            }
        default:
            return nil
        }
        _ = replace(".nin_shortcut.", ".conv_shortcut.")
        return [(name, transform)]
    }

    // MARK: OpenCLIP

    /// OpenCLIP bigG names → transformers `CLIPTextModelWithProjection` names; `in_proj_weight` / `_bias`
    /// become q, k, v (row thirds), `text_projection` is transposed. Keys already in transformers names
    /// (`text_model.*`, `text_projection.weight`) are kept.
    static func openCLIPNames(_ rest: String, storedShape: [Int]) -> [(String, WeightTransform)]? {
        if rest == "logit_scale" || rest.hasSuffix("embeddings.position_ids") { return [] }
        if rest.hasPrefix("text_model.") || rest == "text_projection.weight" { return [(rest, .identity)] }
        let fixed: [String: (String, WeightTransform)] = [
            "positional_embedding": ("text_model.embeddings.position_embedding.weight", .identity),
            "token_embedding.weight": ("text_model.embeddings.token_embedding.weight", .identity),
            "ln_final.weight": ("text_model.final_layer_norm.weight", .identity),
            "ln_final.bias": ("text_model.final_layer_norm.bias", .identity),
            "text_projection": ("text_projection.weight", .transpose),
        ]
        if let target = fixed[rest] { return [target] }
        let prefix = "transformer.resblocks."
        guard rest.hasPrefix(prefix) else { return nil }
        let parts = rest.dropFirst(prefix.count).split(separator: ".", maxSplits: 1).map(String.init)
        guard parts.count == 2, let layer = Int(parts[0]) else { return nil }
        let base = "text_model.encoder.layers.\(layer)."
        switch parts[1] {
        case "attn.in_proj_weight", "attn.in_proj_bias":
            guard let rows = storedShape.first, rows % 3 == 0 else { return nil }
            let third = rows / 3, suffix = parts[1].hasSuffix("weight") ? "weight" : "bias"
            return ["q", "k", "v"].enumerated().map { index, projection in
                (base + "self_attn.\(projection)_proj.\(suffix)", .rows((index * third)..<((index + 1) * third)))
            }
        default:
            let renames = [("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("attn.out_proj.", "self_attn.out_proj."),
                           ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2.")]
            for (old, new) in renames where parts[1].hasPrefix(old) {
                return [(base + new + parts[1].dropFirst(old.count), .identity)]
            }
            return nil
        }
    }
}

extension SingleFileNames {
    /// The SGM / LDM name of a diffusers UNet parameter (the inverse of `unetName`), as kohya-ss names
    /// SDXL LoRA layers (`lora_unet_input_blocks_4_1_…`); nil for a name outside the layout.
    static func sgmUNetName(_ name: String, config: UNet2DConditionConfig) -> String? {
        let down = config.downBlockTypes.count
        let layers: [Int]
        switch config.layersPerBlock {
        case .one(let n): layers = Array(repeating: n, count: down)
        case .many(let list): layers = Array(list.prefix(down))
        }
        let embedding = config.additionEmbedType == "text_time" ? "add_embedding" : "class_embedding"
        let fixed = [("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
                     ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
                     (embedding + ".linear_1.", "label_emb.0.0."), (embedding + ".linear_2.", "label_emb.0.2.")]
        for (new, old) in fixed where name.hasPrefix(new) { return old + name.dropFirst(new.count) }
        func resnet(_ tail: String) -> String {
            let renames = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."),
                           ("time_emb_proj.", "emb_layers.1."), ("conv_shortcut.", "skip_connection.")]
            for (new, old) in renames where tail.hasPrefix(new) { return old + tail.dropFirst(new.count) }
            return tail
        }
        let parts = name.split(separator: ".", maxSplits: 4).map(String.init)
        if parts.first == "mid_block", parts.count >= 4, let i = Int(parts[2]) {
            let tail = parts[3...].joined(separator: ".")
            switch parts[1] {
            case "resnets": return "middle_block.\(2 * i).\(resnet(tail))"
            case "attentions": return "middle_block.\(2 * i + 1).\(tail)"
            default: return nil
            }
        }
        guard parts.count == 5, let block = Int(parts[1]), let layer = Int(parts[3]), block < down else { return nil }
        let (kind, tail) = (parts[2], parts[4])
        if parts[0] == "down_blocks" {
            let start = 1 + layers.prefix(block).reduce(0) { $0 + $1 + 1 }
            switch kind {
            case "resnets": return "input_blocks.\(start + layer).0.\(resnet(tail))"
            case "attentions": return "input_blocks.\(start + layer).1.\(tail)"
            case "downsamplers": return layer == 0 ? "input_blocks.\(start + layers[block]).0.op.\(tail.dropFirst("conv.".count))" : nil
            default: return nil
            }
        }
        if parts[0] == "up_blocks" {
            let reversed = Array(layers.reversed())
            let start = reversed.prefix(block).reduce(0) { $0 + $1 + 1 }
            switch kind {
            case "resnets": return "output_blocks.\(start + layer).0.\(resnet(tail))"
            case "attentions": return "output_blocks.\(start + layer).1.\(tail)"
            case "upsamplers":
                let slot = config.upBlockTypes[block].contains("CrossAttn") ? 2 : 1
                return layer == 0 ? "output_blocks.\(start + reversed[block]).\(slot).\(tail)" : nil
            default: return nil
            }
        }
        return nil
    }
}

/// LoRA file keys → the parameters they update (diffusers `loaders/lora_conversion_utils.py`,
/// `_convert_non_diffusers_lora_to_diffusers` for kohya-ss keys, and the diffusers / PEFT key forms
/// `load_lora_weights` reads).
enum LoRANames {
    /// A LoRA layer: its network and module as the file spells it.
    struct LayerID: Hashable {
        var component: SingleFileNames.Component
        var module: String
        /// kohya-ss spelling (`input_blocks_4_1_transformer_blocks_0_attn1_to_q`): underscores for dots.
        var kohya: Bool
        var lookupKey: String { kohya ? "kohya:" + module : module }
    }

    /// The keys of one layer's matrices and alpha.
    struct Layer {
        var id: LayerID
        var down: String?
        var up: String?
        var alpha: String?
    }

    enum Part { case down, up, alpha }

    /// The layer and part a key holds; nil for keys that are not LoRA matrices (metadata tensors);
    /// throws for the LyCORIS / DoRA forms that are not plain LoRA.
    static func parse(_ key: String, source: String) throws -> (id: LayerID, part: Part)? {
        let unsupported = [("dora_scale", "DoRA"), ("lora_magnitude_vector", "DoRA"), ("hada_w", "LoHa (LyCORIS)"),
                           ("lokr_w", "LoKr (LyCORIS)"), (".lora_mid.", "LoCon with a Tucker mid factor"), (".diff", "full weight differences")]
        for (marker, kind) in unsupported where key.contains(marker) {
            throw ModelError.invalidInput(model: "LoRA", argument: source, message: "\(key): \(kind) layers are not supported (plain LoRA only)")
        }
        for (prefix, component) in [("lora_unet_", SingleFileNames.Component.unet), ("lora_te1_", .textEncoder),
                                    ("lora_te_", .textEncoder), ("lora_te2_", .textEncoder2)] where key.hasPrefix(prefix) {
            for (suffix, part) in [(".lora_down.weight", Part.down), (".lora_up.weight", .up), (".alpha", .alpha)] where key.hasSuffix(suffix) {
                let module = String(key.dropFirst(prefix.count).dropLast(suffix.count))
                return (LayerID(component: component, module: module, kohya: true), part)
            }
            throw ModelError.invalidInput(model: "LoRA", argument: source, message: "\(key): not a LoRA matrix or alpha (only plain LoRA is supported)")
        }
        var rest = Substring(key)
        if rest.hasPrefix("base_model.model.") { rest = rest.dropFirst("base_model.model.".count) }
        var component = SingleFileNames.Component.unet
        for (prefix, c) in [("text_encoder_2.", SingleFileNames.Component.textEncoder2), ("text_encoder.", .textEncoder),
                            ("unet.", .unet)] where rest.hasPrefix(prefix) {
            component = c
            rest = rest.dropFirst(prefix.count)
            break
        }
        let suffixes: [(String, Part)] = [
            (".lora_A.weight", .down), (".lora_B.weight", .up), (".lora.down.weight", .down), (".lora.up.weight", .up),
            (".lora_linear_layer.down.weight", .down), (".lora_linear_layer.up.weight", .up), (".alpha", .alpha),
        ]
        for (suffix, part) in suffixes where rest.hasSuffix(suffix) {
            return (LayerID(component: component, module: String(rest.dropLast(suffix.count)), kohya: false), part)
        }
        if rest.hasSuffix(".lora_A.bias") || rest.hasSuffix(".lora_B.bias") {
            throw ModelError.invalidInput(model: "LoRA", argument: source, message: "\(key): LoRA bias updates (PEFT lora_bias) are not supported")
        }
        // The attention-processor form of diffusers < 0.17: `….attn1.processor.to_q_lora.down.weight`.
        for projection in ["to_q", "to_k", "to_v", "to_out"] {
            for (suffix, part) in [(".down.weight", Part.down), (".up.weight", .up)] {
                let marker = ".processor.\(projection)_lora" + suffix
                if rest.hasSuffix(marker) {
                    let module = rest.dropLast(marker.count) + "." + (projection == "to_out" ? "to_out.0" : projection)
                    return (LayerID(component: component, module: String(module), kohya: false), part)
                }
            }
        }
        if key.lowercased().contains("lora") {
            throw ModelError.invalidInput(model: "LoRA", argument: source, message: "\(key): a LoRA key of a form not understood")
        }
        return nil
    }

    /// Lookup key (module in diffusers / transformers spelling, or `kohya:` + underscored module in
    /// diffusers or SGM numbering) → the canonical weight name it updates.
    static func moduleLookup(specs: [ParameterSpec], component: SingleFileNames.Component,
                             unet: UNet2DConditionConfig?) -> [String: String] {
        var lookup: [String: String] = [:]
        for spec in specs where spec.name.hasSuffix(".weight") && spec.shape.count >= 2 {
            let module = String(spec.name.dropLast(".weight".count))
            var spellings = [module]
            if component != .unet {
                // transformers 5 names `CLIPTextModel`'s modules without `text_model.`; files use both.
                spellings.append(module.hasPrefix("text_model.") ? String(module.dropFirst("text_model.".count)) : "text_model." + module)
            } else if let unet, let sgm = SingleFileNames.sgmUNetName(spec.name, config: unet) {
                spellings.append(String(sgm.dropLast(".weight".count)))
            }
            for spelling in spellings {
                lookup[spelling] = spec.name
                lookup["kohya:" + String(spelling.map { $0 == "." ? "_" : $0 })] = spec.name
            }
        }
        return lookup
    }
}
