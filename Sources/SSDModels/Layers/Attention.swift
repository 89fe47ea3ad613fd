import SSDTensor

/// Multi-head attention with separate q/k/v projections: diffusers `Attention` with
/// `AttnProcessor2_0` (`models/attention_processor.py`) and transformers `CLIPAttention`.
/// Works on token-major activations `[B, N, C]`.
struct Attention: Sendable {
    /// Parameter names of the two families.
    enum Naming {
        /// diffusers: `to_q`, `to_k`, `to_v`, `to_out.0`.
        case diffusers
        /// transformers CLIP: `q_proj`, `k_proj`, `v_proj`, `out_proj`.
        case clip
    }

    let toQ: Linear
    let toK: Linear
    let toV: Linear
    let toOut: Linear
    let heads: Int
    let scale: Float
    /// The model this layer belongs to (a `force_upcast` VAE keeps fp32 attention on bf16 backends).
    let component: ModelComponent
    /// The module's parameter prefix (e.g. `down_blocks.1.attentions.0.transformer_blocks.0.attn2`),
    /// which keys its cached cross-attention keys and values (`CrossAttentionContext`).
    let name: String

    /// `queryDim` → `heads × headDim`; keys and values from `contextDim` (self-attention when equal).
    init(_ scope: ParameterScope, naming: Naming = .diffusers, queryDim: Int, contextDim: Int? = nil,
         heads: Int, headDim: Int, qkvBias: Bool) throws {
        let inner = heads * headDim
        let names = naming == .diffusers ? ("to_q", "to_k", "to_v", "to_out.0") : ("q_proj", "k_proj", "v_proj", "out_proj")
        toQ = try Linear(scope(names.0), in: queryDim, out: inner, bias: qkvBias)
        toK = try Linear(scope(names.1), in: contextDim ?? queryDim, out: inner, bias: qkvBias)
        toV = try Linear(scope(names.2), in: contextDim ?? queryDim, out: inner, bias: qkvBias)
        toOut = try Linear(scope(names.3), in: inner, out: queryDim)
        self.heads = heads
        self.scale = Float(1 / Double(headDim).squareRoot())
        component = scope.component
        name = scope.prefix
    }

    /// `to_out(softmax(q·kᵀ·scale)·v) + residual`; `context` defaults to `x` (self-attention).
    func callAsFunction(_ x: Tensor, context: Tensor? = nil, residual: Tensor?, causal: Bool = false,
                        _ b: any ComputeBackend) throws -> Tensor {
        let source = context ?? x
        let q = try toQ(x, b), k = try toK(source, b), v = try toV(source, b)
        let attended = try b.attention(query: q, key: k, value: v, heads: heads, scale: scale, causal: causal, component: component)
        return try toOut(attended, b, residual: residual)
    }

    /// Self-attention of `norm(x)` (a `BasicTransformerBlock`'s `norm1` → `attn1`): the three
    /// projections of the normalised rows in one `layerNormLinears`, then `to_out(…) + residual`.
    func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm, residual: Tensor?, _ b: any ComputeBackend) throws -> Tensor {
        let qkv = try b.layerNormLinears(x, normWeight: norm.weight, normBias: norm.bias, epsilon: norm.epsilon,
                                         weights: [toQ.weight, toK.weight, toV.weight], biases: [toQ.bias, toK.bias, toV.bias])
        let attended = try b.attention(query: qkv[0], key: qkv[1], value: qkv[2], heads: heads, scale: scale,
                                       causal: false, component: component)
        return try toOut(attended, b, residual: residual)
    }

    /// Perturbed self-attention of `norm(x)` (diffusers `PAGIdentitySelfAttnProcessor2_0` on the perturbed
    /// rows): the attention map replaced by the identity, `to_out(to_v(norm(x))) + residual`.
    func identity(_ x: Tensor, normalizedBy norm: LayerNorm, residual: Tensor?, _ b: any ComputeBackend) throws -> Tensor {
        let value = try b.layerNormLinears(x, normWeight: norm.weight, normBias: norm.bias, epsilon: norm.epsilon,
                                           weights: [toV.weight], biases: [toV.bias])[0]
        return try toOut(value, b, residual: residual)
    }

    /// Cross-attention of `norm(x)` on `context`'s text states (`norm2` → `attn2`), with this layer's
    /// keys and values taken from `context.cached` when they were computed ahead
    /// (`UNetTextConditioning`), else projected here.
    func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm, crossAttention context: CrossAttentionContext,
                        residual: Tensor?, _ b: any ComputeBackend) throws -> Tensor {
        let kv = try context.cached[name] ?? keysValues(context.states, b)
        let q = try b.layerNormLinears(x, normWeight: norm.weight, normBias: norm.bias, epsilon: norm.epsilon,
                                       weights: [toQ.weight], biases: [toQ.bias])[0]
        var attended = try b.attention(query: q, key: kv.key, value: kv.value, heads: heads, scale: scale,
                                       causal: false, component: component)
        // IP-Adapters (diffusers `IPAdapterAttnProcessor2_0`): the same queries on each adapter's image
        // tokens, a separate softmax, the values already multiplied by the adapter's scale; with masks, one
        // softmax per image, weighted by its mask.
        for image in context.imageKeysValues[name] ?? [] {
            var term = try b.attention(query: q, key: image.key, value: image.value, heads: heads, scale: scale,
                                       causal: false, component: component)
            if let mask = image.mask { term = try b.binary(term, mask, .multiply) }  // (one image of a masked adapter)
            attended = try b.binary(attended, term, .add)
        }
        return try toOut(attended, b, residual: residual)
    }

    /// `to_k(context)` and `to_v(context)`.
    func keysValues(_ context: Tensor, _ b: any ComputeBackend) throws -> CrossAttentionKV {
        CrossAttentionKV(key: try toK(context, b), value: try toV(context, b))
    }
}

/// One cross-attention layer's projected keys and values `[B, T, heads · headDim]`; for an IP-Adapter image
/// with a mask (`IPAdapterMasks`), the mask on the layer's tokens `[1, N, 1]` that weights its attention.
struct CrossAttentionKV: Sendable {
    let key: Tensor
    let value: Tensor
    var mask: Tensor? = nil
}

/// What the UNet's cross-attention layers attend to: the text states `[B, T, D]` and, per layer
/// (`Attention.name`), keys and values already projected from them; with IP-Adapters, per layer the
/// image tokens' keys and values of each adapter (values × the adapter's scale), in adapter order.
/// With perturbed-attention guidance, the last `perturbedRows` batch rows skip the attention map of the
/// self-attention layers named in `perturbedLayers`.
struct CrossAttentionContext: Sendable {
    let states: Tensor
    var cached: [String: CrossAttentionKV] = [:]
    var imageKeysValues: [String: [CrossAttentionKV]] = [:]
    var perturbedLayers: Set<String> = []
    var perturbedRows = 0
    /// The latent `[height, width]` IP-Adapter masks were resampled for (nil: no masks).
    var maskLatentSize: [Int]?
}
