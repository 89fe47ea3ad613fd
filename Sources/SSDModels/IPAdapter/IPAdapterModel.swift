import SSDTensor

/// An IP-Adapter for an SDXL-family UNet, read from the original h94/IP-Adapter file format
/// (`image_proj.*`, `ip_adapter.N.to_k_ip.weight` / `.to_v_ip.weight`) as diffusers'
/// `IPAdapterMixin.load_ip_adapter` reads it (`loaders/ip_adapter.py`; `loaders/unet.py`
/// `_convert_ip_adapter_image_proj_to_diffusers`, `_convert_ip_adapter_attn_to_diffusers`): an image
/// projection (`ImageProjection`, or the Plus resampler `IPAdapterPlusImageProjection`) and, for every
/// cross-attention layer of the UNet, keys and values of the projected image tokens.
public final class IPAdapterModel: Sendable {
    static let model = "IPAdapter"

    /// Which image projection the file holds.
    public enum Kind: String, Sendable {
        /// `ImageProjection`: `image_embeds` (the image encoder's projected output) → 4 tokens.
        case imageProjection
        /// `IPAdapterPlusImageProjection` (the Resampler): the encoder's penultimate hidden states → Q tokens.
        case plus
    }

    /// One cross-attention layer's `to_k_ip` and `to_v_ip`.
    struct Layer: Sendable {
        let toK: Linear
        let toV: Linear
    }

    enum Projection: Sendable {
        case linear(ImageProjection)
        case resampler(IPAdapterResampler)
    }

    /// The projection kind.
    public let kind: Kind
    /// The width of the image encoder output the projection takes: `projection_dim` (`image_embeds`) for
    /// `imageProjection`, `hidden_size` (hidden states) for `plus`.
    public let imageEmbeddingWidth: Int
    /// Tokens per image (4, or the resampler's queries).
    public let tokensPerImage: Int
    /// The file read.
    public let source: String
    let projection: Projection
    /// Keyed by `Attention.name` of the UNet's cross-attention layers.
    let layers: [String: Layer]
    let backend: any ComputeBackend

    /// Reads `path` (a `.safetensors` file) for `unet`: `ip_adapter.N` is the N-th entry of diffusers'
    /// `attn_processors` (N = 2j + 1 for the j-th cross-attention layer, down blocks, then up, then mid).
    /// Other keys are ignored, as diffusers does (so a file made for a larger UNet loads while the first
    /// layers' widths agree); missing or wrongly shaped ones are `ModelError.weightMismatch` (an adapter for
    /// SDXL's 70 layers on SSD-1B's 34 fails at `ip_adapter.61`, as in diffusers).
    public init(path: String, unet: UNet2DConditionModel, backend: any ComputeBackend) throws {
        let weights = try WeightFiles(path: path)
        func shape(_ name: String) -> [Int]? { weights.entry(name)?.shape }
        guard weights.names.contains(where: { $0.hasPrefix("image_proj.") }),
              weights.names.contains(where: { $0.hasPrefix("ip_adapter.") }) else {
            throw ModelError.unsupportedConfig(model: Self.model, field: path,
                                               value: "no image_proj.* or no ip_adapter.* tensors (not an IP-Adapter file in the h94 format)")
        }
        let crossAttentions = unet.network.registrationOrderCrossAttentions
        guard let crossDim = crossAttentions.first?.toK.weight.shape[1],
              crossAttentions.allSatisfy({ $0.toK.weight.shape[1] == crossDim }) else {
            throw ModelError.unsupportedConfig(model: Self.model, field: "unet", value: "needs cross-attention layers of one width")
        }
        let loader = ParameterLoader(model: Self.model, family: .ipAdapter, weights: weights, backend: backend, component: .unet)
        let root = loader.root, scope = root("image_proj")
        if let proj = shape("image_proj.proj.weight"), proj.count == 2 {
            guard proj[0] % 4 == 0, proj[0] / 4 == crossDim else {
                throw ModelError.unsupportedConfig(model: Self.model, field: "image_proj.proj.weight",
                                                   value: "\(proj) (needs [4 × \(crossDim), E]: 4 tokens of the UNet's cross_attention_dim)")
            }
            kind = .imageProjection
            imageEmbeddingWidth = proj[1]
            tokensPerImage = 4
            projection = .linear(try ImageProjection(scope, embedWidth: proj[1], crossDim: crossDim, tokens: 4))
        } else {
            for (key, variant) in [("image_proj.proj.3.weight", "IP-Adapter Full"), ("image_proj.perceiver_resampler.proj_in.weight", "IP-Adapter FaceID Plus"),
                                   ("image_proj.norm.weight", "IP-Adapter FaceID")] where shape(key) != nil {
                throw ModelError.unsupportedConfig(model: Self.model, field: key, value: "\(variant) is not supported (ImageProjection and Plus are)")
            }
            guard let latents = shape("image_proj.latents"), latents.count == 3, latents[0] == 1,
                  let projIn = shape("image_proj.proj_in.weight"), projIn.count == 2,
                  let toQ = shape("image_proj.layers.0.0.to_q.weight"), toQ.count == 2, toQ[0] % 64 == 0 else {
                throw ModelError.unsupportedConfig(model: Self.model, field: "image_proj",
                                                   value: "neither ImageProjection (proj.weight) nor a Plus resampler (latents, proj_in, layers.0.0.to_q)")
            }
            kind = .plus
            imageEmbeddingWidth = projIn[1]
            tokensPerImage = latents[1]
            projection = .resampler(try IPAdapterResampler(scope, embedWidth: projIn[1], width: latents[2], queries: latents[1],
                                                           heads: toQ[0] / 64, crossDim: crossDim))
        }
        var layers = [String: Layer]()
        for (j, attention) in crossAttentions.enumerated() {
            let n = root("ip_adapter.\(2 * j + 1)")
            let inner = attention.toQ.outFeatures
            layers[attention.name] = Layer(toK: try Linear(n("to_k_ip"), in: crossDim, out: inner, bias: false),
                                           toV: try Linear(n("to_v_ip"), in: crossDim, out: inner, bias: false))
        }
        try loader.finish()
        self.layers = layers
        self.backend = backend
        source = path
    }

    /// The image tokens `[B, n·T, cross_attention_dim]` of `embeds`: `image_embeds` `[B·n, E]`
    /// (`imageProjection`) or penultimate hidden states `[B·n, 257, hidden]` (`plus`) of n images per row
    /// (diffusers `MultiIPAdapterImageProjection`, then the n images' tokens side by side as
    /// `IPAdapterAttnProcessor2_0` reshapes them).
    public func imageTokens(_ embeds: Tensor, imagesPerRow n: Int) throws -> Tensor {
        let b = backend
        let dtype = b.activationDType(for: .unet)
        let x = embeds.dtype == dtype ? embeds : try b.convert(embeds, to: dtype)
        guard n > 0, x.shape[0] % n == 0, x.shape.last == imageEmbeddingWidth,
              x.rank == (kind == .imageProjection ? 2 : 3) else {
            throw ModelError.invalidInput(model: Self.model, argument: "embeds",
                                          message: "expected \(kind == .imageProjection ? "[B·n, \(imageEmbeddingWidth)]" : "[B·n, tokens, \(imageEmbeddingWidth)]") with n = \(n), got \(x.shape)")
        }
        let tokens: Tensor
        switch projection {
        case let .linear(p): tokens = try p(x, b)
        case let .resampler(p): tokens = try p(x, b)
        }
        return try tokens.reshaped([x.shape[0] / n, n * tokensPerImage, tokens.shape[2]])
    }

    /// Keys and values of `tokens` for every cross-attention layer, the values multiplied by `scale`
    /// (`scale · SDPA(q, k, v) = SDPA(q, k, scale · v)`: diffusers' `ip_hidden_states * scale`).
    func keysValues(_ tokens: Tensor, scale: Float) throws -> [String: CrossAttentionKV] {
        let b = backend
        var out = [String: CrossAttentionKV]()
        for (name, layer) in layers {
            var value = try layer.toV(tokens, b)
            if scale != 1 { value = try b.affine(value, scale: scale, shift: 0) }
            out[name] = CrossAttentionKV(key: try layer.toK(tokens, b), value: value)
        }
        return out
    }
}

/// diffusers `ImageProjection` (`models/embeddings.py`): `LayerNorm(reshape(proj(e), [B, T, C]))`.
struct ImageProjection: Sendable {
    let proj: Linear
    let norm: LayerNorm
    let tokens: Int

    init(_ scope: ParameterScope, embedWidth: Int, crossDim: Int, tokens: Int) throws {
        proj = try Linear(scope("proj"), in: embedWidth, out: tokens * crossDim)
        norm = try LayerNorm(scope("norm"), dim: crossDim, epsilon: 1e-5)
        self.tokens = tokens
    }

    func callAsFunction(_ e: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        let y = try proj(e, b)
        return try norm(y.reshaped([e.shape[0], tokens, y.shape[1] / tokens]), b)
    }
}

/// diffusers `IPAdapterPlusImageProjection` (`models/embeddings.py`; the original `Resampler` of
/// `ip_adapter/resampler.py`, whose names the file keeps): learned queries attend, four times, to the
/// projected image states and themselves; `norm_out(proj_out(queries))`.
struct IPAdapterResampler: Sendable {
    struct Block: Sendable {
        let norm1: LayerNorm
        let norm2: LayerNorm
        let toQ: Linear
        let toKV: Linear
        let toOut: Linear
        let ffNorm: LayerNorm
        let ff1: Linear
        let ff2: Linear
    }

    let latents: Tensor
    let projIn: Linear
    let projOut: Linear
    let normOut: LayerNorm
    let blocks: [Block]
    let heads: Int
    let queries: Int

    /// `depth` is 4 as in diffusers (not read from the file: more blocks in a file are unexpected tensors).
    init(_ scope: ParameterScope, embedWidth: Int, width d: Int, queries: Int, heads: Int, crossDim: Int, depth: Int = 4) throws {
        let inner = heads * 64
        latents = try scope.parameter("latents", shape: [1, queries, d], role: .embedding, preparedShape: [queries, d])
        projIn = try Linear(scope("proj_in"), in: embedWidth, out: d)
        projOut = try Linear(scope("proj_out"), in: d, out: crossDim)
        normOut = try LayerNorm(scope("norm_out"), dim: crossDim, epsilon: 1e-5)
        blocks = try (0..<depth).map { i in
            let s = scope("layers.\(i)")
            return Block(norm1: try LayerNorm(s("0.norm1"), dim: d, epsilon: 1e-5), norm2: try LayerNorm(s("0.norm2"), dim: d, epsilon: 1e-5),
                         toQ: try Linear(s("0.to_q"), in: d, out: inner, bias: false),
                         toKV: try Linear(s("0.to_kv"), in: d, out: 2 * inner, bias: false),
                         toOut: try Linear(s("0.to_out"), in: inner, out: d, bias: false),
                         ffNorm: try LayerNorm(s("1.0"), dim: d, epsilon: 1e-5),
                         ff1: try Linear(s("1.1"), in: d, out: 4 * d, bias: false),
                         ff2: try Linear(s("1.3"), in: 4 * d, out: d, bias: false))
        }
        self.heads = heads
        self.queries = queries
    }

    /// `x` `[B, N, embedWidth]` → `[B, queries, crossDim]`.
    func callAsFunction(_ x: Tensor, _ b: any ComputeBackend) throws -> Tensor {
        let batch = x.shape[0], inner = heads * 64
        let dtype = b.activationDType(for: .unet)
        var lat = try b.embedding(latents, ids: (0..<batch * queries).map { Int32($0 % queries) }, outputDType: dtype)
        lat = try lat.reshaped([batch, queries, lat.shape[1]])
        let projected = try projIn(x, b)
        for block in blocks {
            let xn = try block.norm1(projected, b), ln = try block.norm2(lat, b)
            let kv = try block.toKV(b.concat([xn, ln], axis: 1), b)
            let attended = try b.attention(query: block.toQ(ln, b), key: b.slice(kv, axis: 2, range: 0..<inner),
                                           value: b.slice(kv, axis: 2, range: inner..<(2 * inner)), heads: heads, scale: 0.125,
                                           causal: false, component: .unet)
            lat = try block.toOut(attended, b, residual: lat)
            lat = try block.ff2(b.activation(block.ff1(block.ffNorm(lat, b), b), .gelu), b, residual: lat)
        }
        return try normOut(projOut(lat, b), b)
    }
}
