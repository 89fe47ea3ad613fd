/// All weight-name mapping in one place (DESIGN.md §4).
///
/// Networks name their parameters with the diffusers / transformers module paths (the
/// canonical names, as `state_dict()` prints them). This file says which spellings of a canonical
/// name a weight file may use instead, and which file entries are not parameters at all.
/// Single-file (SGM/LDM) checkpoints would be added here.
enum WeightNameMapping {
    /// The naming family of a component's weight file.
    enum Family: Sendable {
        case unet
        case vae
        case clipText
    }

    /// File names to try for `canonical`, best first.
    static func candidates(for canonical: String, in family: Family) -> [String] {
        switch family {
        case .unet:
            return [canonical]
        case .clipText:
            // transformers 5 saves `CLIPTextModel` without the `text_model.` prefix (spec §6.3).
            let prefix = "text_model."
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
        case .clipText:
            // Older transformers saved the `position_ids` buffer (spec §6.3).
            return fileName.hasSuffix("embeddings.position_ids")
        case .unet, .vae:
            return false
        }
    }

    private static let deprecatedVAEAttentionNames = [
        ("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn"),
    ]
}
