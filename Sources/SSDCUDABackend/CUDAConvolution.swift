import CCUDA
import SSDTensor

/// One 2-D convolution's geometry (NHWC input, OHWI weight, symmetric padding).
struct ConvShape: Hashable {
    var batch: Int, height: Int, width: Int, inChannels: Int
    var outChannels: Int, kernelHeight: Int, kernelWidth: Int
    var stride: Int, padding: Int
    var dtype: DType

    var outHeight: Int { (height + 2 * padding - kernelHeight) / stride + 1 }
    var outWidth: Int { (width + 2 * padding - kernelWidth) / stride + 1 }
    /// 2 × multiply-adds of one call.
    var flops: Double {
        2 * Double(batch * outHeight * outWidth) * Double(outChannels) * Double(kernelHeight * kernelWidth * inChannels)
    }
}

/// Convolutions through cuDNN 9's convolution API with NHWC tensors and filters (tensor-op math
/// for fp16/bf16, FMA-only math for fp32 so that results stay fp32-exact), algorithm chosen once per
/// shape by cuDNN's heuristics (with `autotune`: by cuDNN's measured search, outside graph captures;
/// a shape first seen inside a capture keeps the heuristic's algorithm).
/// `plan` returns nil when cuDNN is absent or offers nothing usable, and the caller falls back to
/// im2col + cuBLASLt. With `fused`, `run` adds the bias and residual inside the convolution
/// (`cudnnConvolutionBiasActivationForward`, identity activation: implicit precomputed GEMM only)
/// and says whether it did; a refusal is remembered per shape (`fusionRefusals`).
final class ConvolutionEngine: @unchecked Sendable {
    static let workspaceLimit = 512 << 20

    final class Plan {
        let x: cudnnTensorDescriptor_t, w: cudnnFilterDescriptor_t
        let conv: cudnnConvolutionDescriptor_t, y: cudnnTensorDescriptor_t
        let algo: Int32
        let workspace: Int
        /// The bias descriptor ([1, C, 1, 1], the data type) and identity activation of the fused call, made on first use.
        var fusion: (bias: cudnnTensorDescriptor_t, activation: cudnnActivationDescriptor_t)?
        /// Why cuDNN refused the fused call for this shape (then bias and residual are added apart).
        var fusionRefusal: String?
        /// Shape and algorithm, and FLOPs per call (2 per multiply-add), for the profile.
        let label: String
        let flops: Double
        let outChannels: Int
        init(x: cudnnTensorDescriptor_t, w: cudnnFilterDescriptor_t, conv: cudnnConvolutionDescriptor_t,
             y: cudnnTensorDescriptor_t, algo: Int32, workspace: Int, label: String, flops: Double, outChannels: Int) {
            self.x = x; self.w = w; self.conv = conv; self.y = y; self.algo = algo; self.workspace = workspace; self.label = label
            self.flops = flops
            self.outChannels = outChannels
        }
    }

    private let device: CUDADevice
    /// nil entries: cuDNN has no algorithm for the shape (use the fallback).
    private let plans = Locked([ConvShape: Plan?]())
    let autotune: Bool
    let fused: Bool

    init(device: CUDADevice, autotune: Bool = false, fused: Bool = false) {
        self.device = device
        self.autotune = autotune
        self.fused = fused
    }

    /// Shapes whose fused call cuDNN refused, with its reason.
    var fusionRefusals: [String] {
        plans.withLock { $0.values.compactMap { $0 }.compactMap { p in p.fusionRefusal.map { "\(p.label): \($0)" } } }
    }

    /// Fused calls made, and calls with a bias that could not be fused (plan's algorithm not implicit
    /// precomputed GEMM, or refused).
    var fusionCounts: (fused: Int, unfused: Int) { counts.withLock { $0 } }
    private let counts = Locked((fused: 0, unfused: 0))

    var isAvailable: Bool { device.cudnn != nil }

    func plan(_ s: ConvShape) -> Plan? {
        guard let api = device.cudnn, let handle = device.cudnnHandle else { return nil }
        return plans.withLock { cache in
            if let existing = cache[s] { return existing }
            let made = makePlan(s, api, handle)
            cache[s] = made
            return made
        }
    }

    /// Stops using cuDNN for shape `s` (after a run-time failure).
    func disable(_ s: ConvShape) {
        plans.withLock { $0[s] = .some(nil) }
    }

    private func makePlan(_ s: ConvShape, _ api: CCUDACudnnAPI, _ handle: cudnnHandle_t) -> Plan? {
        let type: Int32
        switch s.dtype {
        case .f32: type = Int32(CCUDNN_DATA_FLOAT)
        case .f16: type = Int32(CCUDNN_DATA_HALF)
        case .bf16: type = Int32(CCUDNN_DATA_BFLOAT16)
        default: return nil
        }
        var x: cudnnTensorDescriptor_t?, y: cudnnTensorDescriptor_t?
        var w: cudnnFilterDescriptor_t?
        var conv: cudnnConvolutionDescriptor_t?
        let nhwc = Int32(CCUDNN_TENSOR_NHWC)
        var ok = api.cudnnCreateTensorDescriptor!(&x) == 0 && api.cudnnCreateTensorDescriptor!(&y) == 0
            && api.cudnnCreateFilterDescriptor!(&w) == 0 && api.cudnnCreateConvolutionDescriptor!(&conv) == 0
        ok = ok && api.cudnnSetTensor4dDescriptor!(x, nhwc, type, Int32(s.batch), Int32(s.inChannels), Int32(s.height), Int32(s.width)) == 0
        ok = ok && api.cudnnSetTensor4dDescriptor!(y, nhwc, type, Int32(s.batch), Int32(s.outChannels), Int32(s.outHeight), Int32(s.outWidth)) == 0
        ok = ok && api.cudnnSetFilter4dDescriptor!(w, type, nhwc, Int32(s.outChannels), Int32(s.inChannels), Int32(s.kernelHeight), Int32(s.kernelWidth)) == 0
        ok = ok && api.cudnnSetConvolution2dDescriptor!(conv, Int32(s.padding), Int32(s.padding), Int32(s.stride), Int32(s.stride), 1, 1,
                                                        Int32(CCUDNN_CROSS_CORRELATION), Int32(CCUDNN_DATA_FLOAT)) == 0
        let fp32 = s.dtype == .f32
        ok = ok && api.cudnnSetConvolutionMathType!(conv, Int32(fp32 ? CCUDNN_FMA_MATH : CCUDNN_TENSOR_OP_MATH)) == 0
        var chosen: (algo: Int32, math: Int32, workspace: Int)?
        var measured = false
        if ok {
            var results = [cudnnConvolutionFwdAlgoPerf_t](repeating: cudnnConvolutionFwdAlgoPerf_t(), count: 16)
            var returned: Int32 = 0
            // Measured search (fastest first; cuDNN allocates its own buffers) or the heuristics.
            if autotune, !device.isCapturing, let extra = device.cudnnExtra, (try? device.synchronize()) != nil {
                measured = extra.cudnnFindConvolutionForwardAlgorithm!(handle, x, w, conv, y, 16, &returned, &results) == 0
            }
            func pick() {
                for r in results.prefix(Int(returned)) where r.status == 0 && r.memory <= ConvolutionEngine.workspaceLimit {
                    if fp32 && r.mathType != Int32(CCUDNN_FMA_MATH) { continue }
                    if !fp32 && r.mathType == Int32(CCUDNN_FMA_MATH) { continue }
                    chosen = (r.algo, r.mathType, r.memory)
                    break
                }
            }
            if measured { pick() }
            if chosen == nil {  // no measured answer usable: the heuristics
                measured = false
                if api.cudnnGetConvolutionForwardAlgorithm_v7!(handle, x, w, conv, y, 16, &returned, &results) == 0 { pick() }
            }
        }
        if let c = chosen, api.cudnnSetConvolutionMathType!(conv, c.math) == 0 {
            var bytes = 0
            if api.cudnnGetConvolutionForwardWorkspaceSize!(handle, x, w, conv, y, c.algo, &bytes) == 0, let x, let w, let conv, let y {
                let label = "\(s.kernelHeight)x\(s.kernelWidth) s\(s.stride) \(s.inChannels)->\(s.outChannels) \(s.batch)x\(s.outHeight)x\(s.outWidth) algo \(c.algo)\(measured ? " (measured)" : "")"
                return Plan(x: x, w: w, conv: conv, y: y, algo: c.algo, workspace: max(bytes, c.workspace), label: label, flops: s.flops, outChannels: s.outChannels)
            }
        }
        if let x { _ = api.cudnnDestroyTensorDescriptor!(x) }
        if let y { _ = api.cudnnDestroyTensorDescriptor!(y) }
        if let w { _ = api.cudnnDestroyFilterDescriptor!(w) }
        if let conv { _ = api.cudnnDestroyConvolutionDescriptor!(conv) }
        return nil
    }

    /// Enqueues `y = conv(x, w)` with plan `p`; with `fused` on and a `bias`, tries
    /// `y = conv(x, w) + bias (+ residual)` in one cuDNN call and returns true when it was done so
    /// (false: the caller adds bias and residual).
    func run(_ p: Plan, x: CUdeviceptr, w: CUdeviceptr, y: CUdeviceptr, bias: CUdeviceptr? = nil, residual: CUdeviceptr? = nil,
             dtype: DType) throws -> Bool {
        guard let api = device.cudnn, let handle = device.cudnnHandle else {
            throw TensorError.deviceFailure(backend: "cuda", message: "cuDNN is not loaded")
        }
        try device.makeCurrent()
        let workspace = p.workspace > 0 ? try device.allocate(p.workspace) : nil
        defer { withExtendedLifetime(workspace) {} }
        let workspacePointer = workspace.flatMap { UnsafeMutableRawPointer(bitPattern: UInt($0.pointer)) }
        var alpha: Float = 1, beta: Float = 0
        let refused = plans.withLock { _ in p.fusionRefusal != nil }
        if fused, let bias, let extra = device.cudnnExtra, !refused,
           p.algo == Int32(CCUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM), let descriptors = fusionDescriptors(p, extra, dtype) {
            var alpha2: Float = residual == nil ? 0 : 1
            let z = residual ?? y
            let status = try device.timed("cudnn conv+bias\(residual == nil ? "" : "+residual") \(p.label)", flops: p.flops) {
                extra.cudnnConvolutionBiasActivationForward!(
                    handle, &alpha, p.x, UnsafeRawPointer(bitPattern: UInt(x)), p.w, UnsafeRawPointer(bitPattern: UInt(w)), p.conv, p.algo,
                    workspacePointer, p.workspace, &alpha2, p.y, UnsafeRawPointer(bitPattern: UInt(z)),
                    descriptors.bias, UnsafeRawPointer(bitPattern: UInt(bias)), descriptors.activation,
                    p.y, UnsafeMutableRawPointer(bitPattern: UInt(y)))
            }
            if status == 0 {
                counts.withLock { $0.fused += 1 }
                return true
            }
            // Inside a graph capture the refusal may be the capture's: not remembered for the shape.
            if !device.isCapturing {
                plans.withLock { _ in p.fusionRefusal = "cudnnConvolutionBiasActivationForward: \(string(api.cudnnGetErrorString!(status)))" }
            }
        }
        if fused && bias != nil { counts.withLock { $0.unfused += 1 } }
        let status = try device.timed("cudnn conv \(p.label)", flops: p.flops) {
            api.cudnnConvolutionForward!(
                handle, &alpha, p.x, UnsafeRawPointer(bitPattern: UInt(x)), p.w, UnsafeRawPointer(bitPattern: UInt(w)), p.conv, p.algo,
                workspacePointer, p.workspace, &beta, p.y, UnsafeMutableRawPointer(bitPattern: UInt(y)))
        }
        guard status == 0 else {
            throw TensorError.deviceFailure(backend: "cuda", message: "cudnnConvolutionForward failed: \(string(api.cudnnGetErrorString!(status)))")
        }
        return false
    }

    /// The fused call's bias descriptor and identity activation for `p` (made once), or nil with the
    /// refusal noted.
    private func fusionDescriptors(_ p: Plan, _ extra: CCUDACudnnExtraAPI, _ dtype: DType)
        -> (bias: cudnnTensorDescriptor_t, activation: cudnnActivationDescriptor_t)? {
        plans.withLock { _ in
            if let made = p.fusion { return made }
            guard let api = device.cudnn else { return nil }
            let type: Int32 = dtype == .f32 ? Int32(CCUDNN_DATA_FLOAT) : dtype == .bf16 ? Int32(CCUDNN_DATA_BFLOAT16) : Int32(CCUDNN_DATA_HALF)
            var b: cudnnTensorDescriptor_t?
            var a: cudnnActivationDescriptor_t?
            let channels = p.outChannels
            let ok = api.cudnnCreateTensorDescriptor!(&b) == 0
                && api.cudnnSetTensor4dDescriptor!(b, Int32(CCUDNN_TENSOR_NHWC), type, 1, Int32(channels), 1, 1) == 0
                && extra.cudnnCreateActivationDescriptor!(&a) == 0
                && extra.cudnnSetActivationDescriptor!(a, Int32(CCUDNN_ACTIVATION_IDENTITY), Int32(CCUDNN_PROPAGATE_NAN), 0) == 0
            guard ok, let b, let a else {
                if let b { _ = api.cudnnDestroyTensorDescriptor!(b) }
                if let a { _ = extra.cudnnDestroyActivationDescriptor!(a) }
                p.fusionRefusal = "bias or activation descriptor"
                return nil
            }
            p.fusion = (b, a)
            return (b, a)
        }
    }
}
