import CCUDA
import SSDTensor

/// How `CUDABackend` runs attention on cuDNN's fused engines (`SSD_CUDA_CUDNN_ATTENTION`; see
/// `AttentionGraphEngine`).
public enum CUDNNAttention: String, Sendable, CaseIterable {
    /// Our flash-attention kernels only.
    case off = "0"
    /// cuDNN's single SDPA operation where cuDNN has it (9.13.1+), else the composite graph.
    case on = "1"
    /// Only the composite graph (the pattern cuDNN's frontend writes for cuDNN before 9.13.1): the
    /// default, measured on an H200 (0.87× our kernels' UNet time, as fast as `.on`).
    case composite

    /// `SSD_CUDA_CUDNN_ATTENTION`: `0`/`off`, `1`/`on`, `composite`; unset, empty or unreadable: `.composite`.
    public static func fromEnvironment() -> CUDNNAttention {
        switch environment("SSD_CUDA_CUDNN_ATTENTION")?.trimmingWhitespace.lowercased() {
        case "0", "off", "false", "no": .off
        case "1", "on", "true", "yes": .on
        default: .composite
        }
    }
}

/// Scaled dot-product attention through cuDNN 9's graph API (on by default, `SSD_CUDA_CUDNN_ATTENTION`), for
/// cuDNN's fused flash-attention engines (on Hopper they use the tensor-memory-accelerator and
/// warpgroup instructions our NVRTC kernels do not). With cuDNN 9.13.1 or later the graph is first
/// its single SDPA operation (Q, K, V, O and the scale; what cuDNN's frontend picks there); else,
/// or when cuDNN plans nothing for it, the composite pattern those engines match, as the frontend
/// writes its SDPA node for inference —
/// `S = Q·Kᵀ` (fp32), `S·scale` (a by-value scalar), row max, `S − max`, `exp`, row sum, the
/// softmax statistics `max + log(sum)` (virtual), `P = exp / sum` (in the I/O type), `O = P·V` — over our `[B, N, H·D]`
/// tensors read in place (`Q` as `[B, H, N, D]` with strides `[N·H·D, D, H·D, 1]`, `K` as
/// `Kᵀ [B, H, D, M]`). fp16/bf16, head dim a multiple of 8 up to 128, no causal mask (the UNet's and
/// the VAE's attention; the text encoders keep our kernels). A shape cuDNN does not plan (no engine
/// matches) is remembered and runs on our kernels.
final class AttentionGraphEngine: @unchecked Sendable {
    struct Key: Hashable {
        var batch: Int, queries: Int, keys: Int, heads: Int, headDim: Int
        var scaleBits: UInt32
        var dtype: DType
        /// cuDNN's single SDPA operation (9.13.1+) instead of the composite graph.
        var unified = false
    }

    let plans: CUDNNGraphEngine<Key>
    /// Whether the single SDPA operation is tried first (cuDNN 9.13.1 or later, and not `.composite`).
    let triesUnifiedOperation: Bool
    /// The by-value scale of each key, at a stable host address (read by cuDNN at every execution).
    private let scales = Locked([Key: UnsafeMutablePointer<Float>]())

    /// nil when cuDNN or its graph API is absent.
    init?(device: CUDADevice, autotune: Bool, mode: CUDNNAttention) {
        guard mode != .off, let plans = CUDNNGraphEngine<Key>(device: device, autotune: autotune) else { return nil }
        self.plans = plans
        triesUnifiedOperation = mode == .on && (device.cudnn?.cudnnGetVersion?() ?? 0) >= 91301
    }

    deinit {
        scales.withLock { for pointer in $0.values { pointer.deallocate() } }
    }

    /// Whether the graph can express this call at all (cuDNN may still refuse the shape).
    static func accepts(dtype: DType, headDim d: Int, causal: Bool) -> Bool {
        (dtype == .f16 || dtype == .bf16) && d % 8 == 0 && d <= 128 && !causal
    }

    /// Enqueues `o = softmax(scale · q·kᵀ)·v` for `[b, n, heads·d]` tensors and returns true, or
    /// returns false when cuDNN has no plan for the shape (the caller runs its own kernels).
    func run(q: CUdeviceptr, k: CUdeviceptr, v: CUdeviceptr, o: CUdeviceptr, batch b: Int, queries nq: Int, keys nk: Int,
             heads h: Int, headDim d: Int, scale: Float, dtype: DType) throws -> Bool {
        guard Self.accepts(dtype: dtype, headDim: d, causal: false) else { return false }
        let key = Key(batch: b, queries: nq, keys: nk, heads: h, headDim: d, scaleBits: scale.bitPattern, dtype: dtype)
        let scalePointer = scales.withLock { table in
            if let existing = table[key] { return existing }
            let made = UnsafeMutablePointer<Float>.allocate(capacity: 1)
            made.initialize(to: scale)
            table[key] = made
            return made
        }
        let pointers = [q, k, v, o, CUdeviceptr(UInt(bitPattern: scalePointer))]
        let flops = 4 * Double(b * h) * Double(nq) * Double(nk) * Double(d)
        let label = "sdpa \(b)x\(h) \(nq)x\(nk) d\(d)"
        if triesUnifiedOperation {
            var unified = key
            unified.unified = true
            if try plans.run(unified, label: label + " (SDPA operation)", flops: flops, pointers: pointers, build: { builder, handle in
                try Self.buildUnifiedGraph(unified, handle, builder)
            }) { return true }
        }
        return try plans.run(key, label: label + " (composite)", flops: flops, pointers: pointers) { builder, handle in
            try Self.buildGraph(key, handle, builder)
        }
    }

    /// cuDNN 9.13's single SDPA operation: `Q [b, h, n, d]`, `K` and `V [b, h, m, d]` (not transposed),
    /// `O`, the by-value scale; inference (no statistics output).
    private static func buildUnifiedGraph(_ key: Key, _ handle: cudnnHandle_t, _ g: DescriptorBuilder) throws -> CUDNNGraphEngine<Key>.Graph {
        let b = Int64(key.batch), h = Int64(key.heads), n = Int64(key.queries), m = Int64(key.keys), d = Int64(key.headDim)
        let io = Int32(key.dtype == .bf16 ? CCUDNN_DATA_BFLOAT16 : CCUDNN_DATA_HALF)
        let q = try g.tensor(IDs.q, [b, h, n, d], [n * h * d, d, h * d, 1], io, virtual: false, "q")
        let k = try g.tensor(IDs.k, [b, h, m, d], [m * h * d, d, h * d, 1], io, virtual: false, "k")
        let v = try g.tensor(IDs.v, [b, h, m, d], [m * h * d, d, h * d, 1], io, virtual: false, "v")
        let o = try g.tensor(IDs.o, [b, h, n, d], [n * h * d, d, h * d, 1], io, virtual: false, "o")
        let scale = try g.tensor(IDs.scale, [1, 1, 1, 1], [1, 1, 1, 1], Int32(CCUDNN_DATA_FLOAT), virtual: false, byValue: true, "scale")
        let op = try g.make(Int32(CCUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR), "SDPA operation")
        try g.set(op, CCUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [q], "SDPA q")
        try g.set(op, CCUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [k], "SDPA k")
        try g.set(op, CCUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [v], "SDPA v")
        try g.set(op, CCUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [o], "SDPA o")
        try g.set(op, CCUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [scale], "SDPA scale")
        try g.finalize(op, "SDPA operation")
        return .init(graph: try g.operationGraph([op], handle), uniqueIDs: [IDs.q, IDs.k, IDs.v, IDs.o, IDs.scale])
    }

    /// Unique ids of the graph's tensors (the pointers' order is q, k, v, o, scale).
    private enum IDs {
        static let q: Int64 = 1, k: Int64 = 2, v: Int64 = 3, o: Int64 = 4, scale: Int64 = 5
        static let scores: Int64 = 101, scaled: Int64 = 102, rowMax: Int64 = 103, shifted: Int64 = 104, exponent: Int64 = 105
        static let rowSum: Int64 = 106, logSum: Int64 = 107, statistics: Int64 = 108, probabilities: Int64 = 109
    }

    private static func buildGraph(_ key: Key, _ handle: cudnnHandle_t, _ g: DescriptorBuilder) throws -> CUDNNGraphEngine<Key>.Graph {
        let b = Int64(key.batch), h = Int64(key.heads), n = Int64(key.queries), m = Int64(key.keys), d = Int64(key.headDim)
        let io = Int32(key.dtype == .bf16 ? CCUDNN_DATA_BFLOAT16 : CCUDNN_DATA_HALF)
        let float = Int32(CCUDNN_DATA_FLOAT)
        // Q, O [b, h, n, d] and V [b, h, m, d] in place in [B, N, H·D]; Kᵀ [b, h, d, m] over K [B, M, H·D].
        let q = try g.tensor(IDs.q, [b, h, n, d], [n * h * d, d, h * d, 1], io, virtual: false, "q")
        let kt = try g.tensor(IDs.k, [b, h, d, m], [m * h * d, d, 1, h * d], io, virtual: false, "k transposed")
        let v = try g.tensor(IDs.v, [b, h, m, d], [m * h * d, d, h * d, 1], io, virtual: false, "v")
        let o = try g.tensor(IDs.o, [b, h, n, d], [n * h * d, d, h * d, 1], io, virtual: false, "o")
        let scale = try g.tensor(IDs.scale, [1, 1, 1, 1], [1, 1, 1, 1], float, virtual: false, byValue: true, "scale")
        let scoreDims: [Int64] = [b, h, n, m], scoreStrides: [Int64] = [h * n * m, n * m, m, 1]
        let rowDims: [Int64] = [b, h, n, 1], rowStrides: [Int64] = [h * n, n, 1, 1]
        func scores(_ id: Int64, _ what: String) throws -> cudnnBackendDescriptor_t {
            try g.tensor(id, scoreDims, scoreStrides, float, virtual: true, what)
        }
        func rows(_ id: Int64, _ what: String) throws -> cudnnBackendDescriptor_t {
            try g.tensor(id, rowDims, rowStrides, float, virtual: true, what)
        }
        var ops: [cudnnBackendDescriptor_t?] = []
        func matmul(_ a: cudnnBackendDescriptor_t, _ bm: cudnnBackendDescriptor_t, _ c: cudnnBackendDescriptor_t, _ what: String) throws {
            let desc = try g.make(Int32(CCUDNN_BACKEND_MATMUL_DESCRIPTOR), what)
            try g.set(desc, CCUDNN_ATTR_MATMUL_COMP_TYPE, CCUDNN_TYPE_DATA_TYPE, [float], "\(what) compute type")
            try g.finalize(desc, what)
            let op = try g.make(Int32(CCUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR), "\(what) operation")
            try g.set(op, CCUDNN_ATTR_OPERATION_MATMUL_ADESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [a], "\(what) a")
            try g.set(op, CCUDNN_ATTR_OPERATION_MATMUL_BDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [bm], "\(what) b")
            try g.set(op, CCUDNN_ATTR_OPERATION_MATMUL_CDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [c], "\(what) c")
            try g.set(op, CCUDNN_ATTR_OPERATION_MATMUL_DESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [desc], "\(what) descriptor")
            try g.finalize(op, "\(what) operation")
            ops.append(op)
        }
        func reduce(_ x: cudnnBackendDescriptor_t, _ y: cudnnBackendDescriptor_t, _ operation: Int, _ what: String) throws {
            let desc = try g.make(Int32(CCUDNN_BACKEND_REDUCTION_DESCRIPTOR), what)
            try g.set(desc, CCUDNN_ATTR_REDUCTION_COMP_TYPE, CCUDNN_TYPE_DATA_TYPE, [float], "\(what) compute type")
            try g.set(desc, CCUDNN_ATTR_REDUCTION_OPERATOR, CCUDNN_TYPE_REDUCTION_OPERATOR_TYPE, [Int32(operation)], "\(what) operator")
            try g.finalize(desc, what)
            let op = try g.make(Int32(CCUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR), "\(what) operation")
            try g.set(op, CCUDNN_ATTR_OPERATION_REDUCTION_XDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [x], "\(what) x")
            try g.set(op, CCUDNN_ATTR_OPERATION_REDUCTION_YDESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [y], "\(what) y")
            try g.set(op, CCUDNN_ATTR_OPERATION_REDUCTION_DESC, CCUDNN_TYPE_BACKEND_DESCRIPTOR, [desc], "\(what) descriptor")
            try g.finalize(op, "\(what) operation")
            ops.append(op)
        }
        func pointwise(_ mode: Int, _ x: cudnnBackendDescriptor_t, _ operand: cudnnBackendDescriptor_t?, _ y: cudnnBackendDescriptor_t,
                       _ what: String) throws {
            ops.append(try g.pointwise(mode, x, operand, y, what))
        }
        let s = try scores(IDs.scores, "scores")
        try matmul(q, kt, s, "q·kᵀ")
        let scaled = try scores(IDs.scaled, "scaled scores")
        try pointwise(CCUDNN_POINTWISE_MUL, s, scale, scaled, "scale")
        let rowMax = try rows(IDs.rowMax, "row max")
        try reduce(scaled, rowMax, CCUDNN_REDUCE_TENSOR_MAX, "max")
        let shifted = try scores(IDs.shifted, "shifted scores")
        try pointwise(CCUDNN_POINTWISE_SUB, scaled, rowMax, shifted, "subtract max")
        let exponent = try scores(IDs.exponent, "exponentials")
        try pointwise(CCUDNN_POINTWISE_EXP, shifted, nil, exponent, "exp")
        let rowSum = try rows(IDs.rowSum, "row sum")
        try reduce(exponent, rowSum, CCUDNN_REDUCE_TENSOR_ADD, "sum")
        let logSum = try rows(IDs.logSum, "log of the sum")
        try pointwise(CCUDNN_POINTWISE_LOG, rowSum, nil, logSum, "log")
        let statistics = try rows(IDs.statistics, "softmax statistics")
        try pointwise(CCUDNN_POINTWISE_ADD, rowMax, logSum, statistics, "statistics")
        // P in the I/O type: cuDNN's backend takes the second product's A in the I/O type (as cuDNN's frontend notes).
        let probabilities = try g.tensor(IDs.probabilities, scoreDims, scoreStrides, io, virtual: true, "probabilities")
        try pointwise(CCUDNN_POINTWISE_DIV, exponent, rowSum, probabilities, "normalise")
        try matmul(probabilities, v, o, "p·v")

        return .init(graph: try g.operationGraph(ops, handle), uniqueIDs: [IDs.q, IDs.k, IDs.v, IDs.o, IDs.scale])
    }
}
