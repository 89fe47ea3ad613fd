import SSDTensor

/// diffusers `Transformer2DModel` for continuous inputs (`models/transformers/transformer_2d.py`):
/// `GroupNorm(eps 1e-6)` → `proj_in` → `BasicTransformerBlock`s → `proj_out` → `+ x`.
/// `proj_in`/`proj_out` are `nn.Linear` with `use_linear_projection` and 1×1 convolutions
/// otherwise; on NHWC activations both are the same per-token linear map.
struct Transformer2DModel: Sendable {
    let norm: GroupNorm
    let projIn: Linear
    let blocks: [BasicTransformerBlock]
    let projOut: Linear

    init(_ scope: ParameterScope, channels: Int, heads: Int, depth: Int, crossAttentionDim: Int,
         groups: Int, useLinearProjection: Bool) throws {
        let headDim = channels / heads
        let inner = heads * headDim
        norm = try GroupNorm(scope("norm"), groups: groups, channels: channels, epsilon: 1e-6)
        if useLinearProjection {
            projIn = try Linear(scope("proj_in"), in: channels, out: inner)
        } else {
            projIn = try Linear(pointwiseConv: scope("proj_in"), in: channels, out: inner)
        }
        blocks = try (0..<depth).map {
            try BasicTransformerBlock(scope("transformer_blocks", $0), dim: inner, heads: heads, headDim: headDim,
                                      crossAttentionDim: crossAttentionDim)
        }
        if useLinearProjection {
            projOut = try Linear(scope("proj_out"), in: inner, out: channels)
        } else {
            projOut = try Linear(pointwiseConv: scope("proj_out"), in: inner, out: channels)
        }
    }

    /// `x` NHWC `[B, H, W, C]`, `context` `[B, T, crossAttentionDim]`.
    func callAsFunction(_ x: Tensor, context: CrossAttentionContext, _ b: any ComputeBackend) throws -> Tensor {
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let tokens = try x.reshaped([n, h * w, c])
        var hidden = try projIn(norm(tokens, b), b)
        for block in blocks { hidden = try block(hidden, context: context, b) }
        return try projOut(hidden, b, residual: tokens).reshaped([n, h, w, c])
    }

    /// The cross-attention layers (`attn2`) of the blocks, in order.
    var crossAttentions: [Attention] { blocks.map(\.attn2) }
    /// The self-attention layers (`attn1`) of the blocks, in order.
    var selfAttentions: [Attention] { blocks.map(\.attn1) }
}

/// diffusers `BasicTransformerBlock` (`models/attention.py`, `norm_type="layer_norm"`): self-attention,
/// cross-attention and a GEGLU feed-forward, each pre-normed and added to the residual stream.
struct BasicTransformerBlock: Sendable {
    let norm1: LayerNorm
    let attn1: Attention
    let norm2: LayerNorm
    let attn2: Attention
    let norm3: LayerNorm
    let feedForward: FeedForward

    init(_ scope: ParameterScope, dim: Int, heads: Int, headDim: Int, crossAttentionDim: Int) throws {
        norm1 = try LayerNorm(scope("norm1"), dim: dim, epsilon: 1e-5)
        attn1 = try Attention(scope("attn1"), queryDim: dim, heads: heads, headDim: headDim, qkvBias: false)
        norm2 = try LayerNorm(scope("norm2"), dim: dim, epsilon: 1e-5)
        attn2 = try Attention(scope("attn2"), queryDim: dim, contextDim: crossAttentionDim, heads: heads,
                              headDim: headDim, qkvBias: false)
        norm3 = try LayerNorm(scope("norm3"), dim: dim, epsilon: 1e-5)
        feedForward = try FeedForward(scope("ff"), dim: dim)
    }

    func callAsFunction(_ x: Tensor, context: CrossAttentionContext, _ b: any ComputeBackend) throws -> Tensor {
        var h: Tensor
        if context.perturbedRows > 0, context.perturbedLayers.contains(attn1.name) {
            // Perturbed-attention guidance (diffusers `PAGCFGIdentitySelfAttnProcessor2_0`): the leading rows
            // attend as usual, the trailing perturbed ones take the identity attention map.
            let rows = x.shape[0], kept = rows - context.perturbedRows
            let plain = try b.slice(x, axis: 0, range: 0..<kept), perturbed = try b.slice(x, axis: 0, range: kept..<rows)
            h = try b.concat([try attn1(plain, normalizedBy: norm1, residual: plain, b),
                              try attn1.identity(perturbed, normalizedBy: norm1, residual: perturbed, b)], axis: 0)
        } else {
            h = try attn1(x, normalizedBy: norm1, residual: x, b)
        }
        h = try attn2(h, normalizedBy: norm2, crossAttention: context, residual: h, b)
        return try feedForward(h, normalizedBy: norm3, residual: h, b)
    }
}

/// diffusers `FeedForward` with `activation_fn="geglu"`, `mult=4`: `net.0.proj` (dim → 8·dim),
/// GEGLU (`h · GELU(g)`), `net.2` (4·dim → dim).
struct FeedForward: Sendable {
    let projection: Linear
    let output: Linear

    init(_ scope: ParameterScope, dim: Int, multiplier: Int = 4) throws {
        let inner = dim * multiplier
        projection = try Linear(scope("net.0.proj"), in: dim, out: inner * 2)
        output = try Linear(scope("net.2"), in: inner, out: dim)
    }

    /// `net.2(GEGLU(net.0.proj(norm(x)))) + residual`.
    func callAsFunction(_ x: Tensor, normalizedBy norm: LayerNorm, residual: Tensor?, _ b: any ComputeBackend) throws -> Tensor {
        let projected = try b.layerNormLinears(x, normWeight: norm.weight, normBias: norm.bias, epsilon: norm.epsilon,
                                               weights: [projection.weight], biases: [projection.bias])[0]
        return try b.gegluLinear(projected, weight: output.weight, bias: output.bias, residual: residual)
    }
}
