/// Pointwise activations (diffusers `activations.py`, transformers `activations.py`).
public enum Activation: String, Sendable, Hashable, CaseIterable {
    /// x·sigmoid(x) (`nn.SiLU`).
    case silu
    /// Exact GELU, x·Φ(x) with erf (`nn.GELU()`, transformers `gelu`).
    case gelu
    /// x·sigmoid(1.702x) (transformers `quick_gelu`, CLIP ViT-L).
    case quickGELU
    /// max(x, 0) (`nn.ReLU`; NaN stays NaN, as in torch).
    case relu
    /// tanh(x) (`torch.tanh`).
    case tanh
}

/// Elementwise binary ops with NumPy broadcasting.
public enum BinaryOp: String, Sendable, Hashable {
    /// `a + b`, `a − b`, `a · b`, `a / b`.
    case add, subtract, multiply, divide
}

/// What a weight is used for, so a backend can lay it out once at load time.
public enum WeightRole: String, Sendable, Hashable {
    /// `nn.Linear` weight, PyTorch shape `[out, in]`; used by `linear`.
    case linear
    /// `nn.Conv2d` weight, PyTorch shape `[out, in, kh, kw]`; used by `conv2d` and `groupNormSiLUConv2d`.
    case conv2d
    /// The 3×3 `nn.Conv2d` weight `[out, in, 3, 3]` of diffusers `Upsample2D`, which runs after a
    /// nearest ×2 upsampling; used by `upsampleNearest2xConv2d`. A backend may fold the upsampling
    /// into the weights (four 2×2 phase kernels, 4/9 of the multiplications); others prepare it as `.conv2d`.
    case upsampleConv2d
    /// Bias, norm scale or shift, shape `[n]`.
    case vector
    /// Embedding table `[rows, dim]`; used by `embedding`.
    case embedding
}

/// Which network a tensor belongs to; backends pick the activation type per component
/// (the VAE stays fp32 unless its config allows less, DESIGN.md §3).
public enum ModelComponent: Sendable, Hashable {
    /// Either CLIP text encoder (transformers `modeling_clip.py`).
    case textEncoder
    /// The denoising UNet (diffusers `unet_2d_condition.py`).
    case unet
    /// The VAE (diffusers `autoencoder_kl.py`); `forceUpcast` is the VAE config's `force_upcast`.
    case vae(forceUpcast: Bool)
}

/// Bytes a backend holds, for the memory tables of the benchmark.
public struct BackendMemoryStatistics: Sendable, Hashable {
    /// Bytes allocated now (weights and live activations).
    public var currentBytes: Int
    /// Largest `currentBytes` seen since the last reset.
    public var peakBytes: Int
    /// Statistics of `currentBytes` held now and `peakBytes` at most.
    public init(currentBytes: Int, peakBytes: Int) {
        self.currentBytes = currentBytes
        self.peakBytes = peakBytes
    }
}

/// The compute primitives the models are written against (DESIGN.md §3).
///
/// Contract:
/// - Tensors are contiguous row-major; image activations are NHWC. Ops never mutate inputs.
/// - Ops compute in the element type of their activation inputs (f32, or f16/bf16 where the
///   backend supports it); weights may be stored in another type (mixed precision) and are
///   converted inside the op. Accumulation is at least fp32.
/// - Calls may be asynchronous: a backend may only enqueue the work. `download` and
///   `synchronize` wait for it. Errors from enqueued work surface at the latest there.
/// - Outputs are allocated by the backend (pools and arenas are its business); storage returns
///   to the backend when the last `Tensor` referring to it goes away.
/// - Small per-step arithmetic (scheduler, classifier-free guidance) runs on host arrays; the
///   pipeline downloads the noise prediction and uploads the latents each step (a few hundred KB).
public protocol ComputeBackend: AnyObject, Sendable {
    /// Short name for messages and reports ("reference", "cpu", "cuda").
    var name: String { get }

    /// The activation element type this backend uses for `component`.
    func activationDType(for component: ModelComponent) -> DType

    // MARK: Memory

    /// Copies host memory into a new backend tensor of type `dtype` (converting if needed).
    func upload(_ view: HostTensorView, as dtype: DType) throws -> Tensor
    /// Copies a tensor back to the host as Float values; waits for pending work.
    func download(_ tensor: Tensor) throws -> [Float]
    /// Prepares a weight once at load time: converts, re-lays out or pre-packs it for the ops
    /// that use it with activations of `activationDType`. The result's `shape` is the view's shape.
    /// The result must not point into `view`'s memory: loaders evict the file pages afterwards.
    func prepareWeight(_ view: HostTensorView, role: WeightRole, activationDType: DType) throws -> Tensor
    /// `prepareWeight` for a weight of `component` (what model loaders call), so a backend can keep
    /// per-component formats (the CPU backend's bf16 dot products stay off for a `force_upcast` VAE).
    /// Default: `prepareWeight(view, role:, activationDType: activationDType(for: component))`.
    func prepareWeight(_ view: HostTensorView, role: WeightRole, component: ModelComponent) throws -> Tensor
    /// Waits for all enqueued work.
    func synchronize() throws
    /// Current and peak bytes held by this backend.
    func memoryStatistics() -> BackendMemoryStatistics
    /// Starts a new peak measurement.
    func resetPeakMemory()

    /// Runs a region that issues the same ops on the same shapes every call (one UNet call).
    /// A backend may record it once and replay it (CUDA graphs): it then copies `inputs` into
    /// its own buffers, and the outputs it returns are valid until the next call with the same key.
    /// The default runs `body(inputs)`.
    func runReplayable(key: String, inputs: [Tensor], _ body: ([Tensor]) throws -> [Tensor]) throws -> [Tensor]
    /// Whether `runReplayable` records and replays (then work hoisted out of the region, such as the
    /// UNet's cross-attention keys and values, saves nothing). Default false.
    var replaysRecordedRegions: Bool { get }
    /// What the backend chose and did so far (device and libraries, kernel and tuning choices, recorded
    /// regions), one topic per line, for logs and benchmark records. Default: the name.
    var statusReport: String { get }

    // MARK: Linear algebra

    /// `x · Wᵀ + bias (+ residual)`: x `[..., in]`, weight prepared with role `.linear` (`[out, in]`),
    /// bias `[out]`, residual shaped like the output `[..., out]` (diffusers `nn.Linear`).
    func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor?) throws -> Tensor
    /// Batched `alpha · op(a) · op(b)`: a `[..., M, K]` (or `[..., K, M]` transposed), b `[..., K, N]`
    /// (or `[..., N, K]` transposed); equal leading dims, or a rank-2 `b` shared by every batch.
    func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) throws -> Tensor
    /// 2-D convolution, NHWC input `[B, H, W, Cin]`, weight prepared with role `.conv2d`
    /// (`[Cout, Cin, kh, kw]`), symmetric zero padding; output `[B, Ho, Wo, Cout]`, plus `residual`
    /// (shaped like the output) when given.
    func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int, residual: Tensor?) throws -> Tensor

    // MARK: Normalisation

    /// Group norm over NHWC `[B, H, W, C]` (or `[B, N, C]`) with `groups` groups, affine per channel.
    func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor
    /// Group norm followed by SiLU. Default: the composition.
    func groupNormSiLU(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor
    /// `conv2d(silu(groupNorm(x)), weight, bias, stride 1, padding) (+ residual)`, the `norm → SiLU → conv`
    /// of diffusers `ResnetBlock2D` (`models/resnet.py`). A backend may normalise the input as the
    /// convolution reads it, so the normalised tensor is never stored. Default: the composition.
    func groupNormSiLUConv2d(_ x: Tensor, groups: Int, normWeight: Tensor, normBias: Tensor, epsilon: Float,
                             weight: Tensor, bias: Tensor?, padding: Int, residual: Tensor?) throws -> Tensor
    /// Layer norm over the last axis, affine.
    func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor
    /// `layerNorm(x)` then `linear(·, weight: weights[i], bias: biases[i])` for each weight (diffusers
    /// `BasicTransformerBlock`: `norm1` → `to_q`, `to_k`, `to_v`), fused where a backend can skip storing
    /// the normalised rows. Default: composition.
    func layerNormLinears(_ x: Tensor, normWeight: Tensor, normBias: Tensor, epsilon: Float,
                          weights: [Tensor], biases: [Tensor?]) throws -> [Tensor]
    /// Softmax over the last axis. With `causal`, for the last two axes `[.., Nq, Nk]` entries with
    /// key index > query index get zero weight (CLIP's causal mask).
    func softmax(_ x: Tensor, causal: Bool) throws -> Tensor

    // MARK: Attention

    /// Multi-head scaled dot-product attention: query `[B, Nq, H·D]`, key and value `[B, Nk, H·D]`,
    /// output `[B, Nq, H·D]`. Default: matmul, softmax, matmul (materialises the scores).
    func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool) throws -> Tensor
    /// `attention` called by a layer of `component`, so that a backend computing in reduced
    /// precision keeps full precision where the model asks for it (a `force_upcast` VAE, which
    /// diffusers runs in fp32 whatever the pipeline's dtype). Default: `attention`.
    func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool,
                   component: ModelComponent) throws -> Tensor

    // MARK: Elementwise

    /// Pointwise activation.
    func activation(_ x: Tensor, _ kind: Activation) throws -> Tensor
    /// GEGLU (diffusers `GEGLU`): x `[..., 2N]` split into `(h, g)`, returns `h · GELU(g)`. Default: composition.
    func geglu(_ x: Tensor) throws -> Tensor
    /// `linear(geglu(x), weight:, bias:, residual:)` (diffusers `FeedForward`'s `GEGLU` → `net.2`),
    /// fused where a backend can skip storing the GEGLU output. Default: composition.
    func gegluLinear(_ x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor?) throws -> Tensor
    /// Elementwise `a op b` with NumPy broadcasting; output type is `a`'s.
    func binary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp) throws -> Tensor
    /// `x · scale + shift`.
    func affine(_ x: Tensor, scale: Float, shift: Float) throws -> Tensor

    // MARK: Shape and data movement

    /// Concatenation along `axis`.
    func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor
    /// Elements `range` of `axis`.
    func slice(_ x: Tensor, axis: Int, range: Range<Int>) throws -> Tensor
    /// Axis permutation (`torch.permute`).
    func permute(_ x: Tensor, _ dims: [Int]) throws -> Tensor
    /// Nearest-neighbour ×2 upsampling of NHWC `[B, H, W, C]` → `[B, 2H, 2W, C]`.
    func upsampleNearest2x(_ x: Tensor) throws -> Tensor
    /// diffusers `Upsample2D` (`models/upsampling.py`): nearest ×2, then a 3×3 convolution with
    /// padding 1; `weight` prepared with role `.upsampleConv2d`. Output `[B, 2H, 2W, Cout]`.
    /// Default: `conv2d(upsampleNearest2x(x))`.
    func upsampleNearest2xConv2d(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor
    /// Rows `ids` of an embedding table prepared with role `.embedding`: `[ids.count, dim]`.
    func embedding(_ table: Tensor, ids: [Int32], outputDType: DType) throws -> Tensor
    /// Element type conversion (round to nearest even).
    func convert(_ x: Tensor, to dtype: DType) throws -> Tensor
}

extension ComputeBackend {
    public func prepareWeight(_ view: HostTensorView, role: WeightRole, component: ModelComponent) throws -> Tensor {
        try prepareWeight(view, role: role, activationDType: activationDType(for: component))
    }

    public func runReplayable(key: String, inputs: [Tensor], _ body: ([Tensor]) throws -> [Tensor]) throws -> [Tensor] {
        try body(inputs)
    }

    public var replaysRecordedRegions: Bool { false }

    public var statusReport: String { name }

    public func groupNormSiLU(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try activation(groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon), .silu)
    }

    public func groupNormSiLUConv2d(_ x: Tensor, groups: Int, normWeight: Tensor, normBias: Tensor, epsilon: Float,
                                    weight: Tensor, bias: Tensor?, padding: Int, residual: Tensor?) throws -> Tensor {
        let normalized = try groupNormSiLU(x, groups: groups, weight: normWeight, bias: normBias, epsilon: epsilon)
        return try conv2d(normalized, weight: weight, bias: bias, stride: 1, padding: padding, residual: residual)
    }

    public func upsampleNearest2xConv2d(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        try conv2d(upsampleNearest2x(x), weight: weight, bias: bias, stride: 1, padding: 1, residual: nil)
    }

    public func geglu(_ x: Tensor) throws -> Tensor {
        guard let last = x.shape.last, last % 2 == 0 else {
            throw TensorError.invalidArgument(op: "geglu", message: "last axis \(x.shape) must be even")
        }
        let axis = x.rank - 1
        let hidden = try slice(x, axis: axis, range: 0..<(last / 2))
        let gate = try slice(x, axis: axis, range: (last / 2)..<last)
        return try binary(hidden, activation(gate, .gelu), .multiply)
    }

    public func layerNormLinears(_ x: Tensor, normWeight: Tensor, normBias: Tensor, epsilon: Float,
                                 weights: [Tensor], biases: [Tensor?]) throws -> [Tensor] {
        try composedLayerNormLinears(x, normWeight: normWeight, normBias: normBias, epsilon: epsilon, weights: weights, biases: biases)
    }

    /// `layerNormLinears` as `layerNorm` then `linear`s (its default; for backends that fuse only some cases).
    public func composedLayerNormLinears(_ x: Tensor, normWeight: Tensor, normBias: Tensor, epsilon: Float,
                                         weights: [Tensor], biases: [Tensor?]) throws -> [Tensor] {
        guard weights.count == biases.count else {
            throw TensorError.invalidArgument(op: "layerNormLinears", message: "\(weights.count) weights but \(biases.count) biases")
        }
        let normed = try layerNorm(x, weight: normWeight, bias: normBias, epsilon: epsilon)
        return try zip(weights, biases).map { try linear(normed, weight: $0, bias: $1, residual: nil) }
    }

    public func gegluLinear(_ x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor?) throws -> Tensor {
        try linear(geglu(x), weight: weight, bias: bias, residual: residual)
    }

    public func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool,
                          component: ModelComponent) throws -> Tensor {
        try attention(query: query, key: key, value: value, heads: heads, scale: scale, causal: causal)
    }

    public func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool) throws -> Tensor {
        let (b, nq, width) = try attentionShape(query: query, key: key, value: value, heads: heads)
        let nk = key.shape[1]
        let d = width / heads
        // [B, N, H, D] → [B, H, N, D] → [B·H, N, D]
        func split(_ t: Tensor, _ n: Int) throws -> Tensor {
            try permute(t.reshaped([b, n, heads, d]), [0, 2, 1, 3]).reshaped([b * heads, n, d])
        }
        let q = try split(query, nq), k = try split(key, nk), v = try split(value, nk)
        let scores = try matmul(q, k, transposeA: false, transposeB: true, alpha: scale)
        let probs = try softmax(scores, causal: causal)
        let out = try matmul(probs, v, transposeA: false, transposeB: false, alpha: 1)
        return try permute(out.reshaped([b, heads, nq, d]), [0, 2, 1, 3]).reshaped([b, nq, width])
    }

    /// Convenience: `linear` without a residual.
    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        try linear(x, weight: weight, bias: bias, residual: nil)
    }

    /// Convenience: `conv2d` without a residual.
    public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int) throws -> Tensor {
        try conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, residual: nil)
    }

    /// Uploads Float values as a tensor of `shape` in `dtype`.
    public func upload(_ values: [Float], shape: [Int], as dtype: DType = .f32) throws -> Tensor {
        guard values.count == shape.reduce(1, *) else {
            throw TensorError.shapeMismatch(op: "upload", expected: shape, actual: [values.count])
        }
        return try upload(HostBuffer.view(of: values, shape: shape), as: dtype)
    }

    /// Checks attention operand shapes and returns `(batch, queries, width)`.
    public func attentionShape(query: Tensor, key: Tensor, value: Tensor, heads: Int) throws -> (Int, Int, Int) {
        guard query.rank == 3, key.rank == 3, value.rank == 3, heads > 0,
              key.shape == value.shape, query.shape[0] == key.shape[0], query.shape[2] == key.shape[2],
              query.shape[2] % heads == 0
        else {
            throw TensorError.shapeMismatch(op: "attention", expected: query.shape, actual: key.shape)
        }
        return (query.shape[0], query.shape[1], query.shape[2])
    }
}
