import SSDTensor

/// The UNet side of perturbed-attention guidance (diffusers `pipelines/pag/pag_utils.py`, `PAGMixin`, with
/// `PAGCFGIdentitySelfAttnProcessor2_0` / `PAGIdentitySelfAttnProcessor2_0`): in the named self-attention layers
/// the last `rows` rows of the UNet batch (the perturbed copy of the conditional rows) replace the attention
/// map by the identity, `to_out(to_v(x))`.
public struct PerturbedSelfAttention: Sendable, Hashable {
    /// Full module names of the layers (`down_blocks.2.attentions.0.transformer_blocks.1.attn1`, …).
    public var layers: [String]
    /// How many trailing batch rows are perturbed.
    public var rows: Int

    /// The layers and the perturbed row count.
    public init(layers: [String], rows: Int) {
        self.layers = layers
        self.rows = rows
    }
}

extension UNet2DConditionModel {
    /// The self-attention layers diffusers' `pag_applied_layers` select: each pattern is a regular expression
    /// searched in the module names (`re.search`), e.g. `"mid"`, `"down_blocks.2"`, `"up_blocks.0.attentions.1"`.
    /// Throws `ModelError.invalidInput` for a pattern that is not a valid expression or matches no layer
    /// (diffusers: "Cannot find PAG layer to set attention processor for"; SSD-1B's mid block has none).
    public func selfAttentionLayers(matching patterns: [String]) throws -> [String] {
        let names = network.registrationOrderSelfAttentions.map(\.name)
        var selected: [String] = []
        for pattern in patterns {
            let regex: Regex<AnyRegexOutput>
            do {
                regex = try Regex(pattern)
            } catch {
                throw ModelError.invalidInput(model: UNetNetwork.model, argument: "pagAppliedLayers",
                                              message: "\"\(pattern)\" is not a regular expression: \(error)")
            }
            let matches = names.filter { $0.contains(regex) && !Self.isFakeIntegralMatch(pattern, $0) }
            guard !matches.isEmpty else {
                let hint = network.midBlock.map { if case .resnetOnly = $0 { return " (this UNet's mid block has no attention, as SSD-1B's: try \"down_blocks.2\" or \"up_blocks.0\")" } else { return "" } } ?? ""
                throw ModelError.invalidInput(model: UNetNetwork.model, argument: "pagAppliedLayers",
                                              message: "\"\(pattern)\" matches no self-attention layer\(hint)")
            }
            selected += matches.filter { !selected.contains($0) }
        }
        return selected
    }

    /// diffusers' `is_fake_integral_match`: a pattern ending in a number does not select a name ending in the
    /// same number by that alone.
    static func isFakeIntegralMatch(_ pattern: String, _ name: String) -> Bool {
        let a = pattern.split(separator: ".", omittingEmptySubsequences: false).last.map(String.init) ?? ""
        let b = name.split(separator: ".", omittingEmptySubsequences: false).last.map(String.init) ?? ""
        return !a.isEmpty && a.allSatisfy(\.isNumber) && a == b
    }
}
