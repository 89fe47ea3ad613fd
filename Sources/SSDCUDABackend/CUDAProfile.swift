/// What a profiled operation is, for grouping a profile (`summarize(_:)`); the categories match
/// `Scripts/gpu/diffusers_side.py profile`'s grouping of torch's kernels.
public enum CUDAProfileCategory: String, Sendable, CaseIterable {
    /// cuBLASLt products (linears, 1×1 convolutions, im2col products, materialised attention).
    case gemm
    /// cuDNN convolutions and the im2col kernel.
    case convolution
    /// The flash-attention kernels and cuDNN's fused attention.
    case attention
    /// Group norm, layer norm and softmax kernels.
    case normalization
    /// Everything else: GEGLU, bias + residual, binary ops, permutes, casts, upsampling, concat.
    case elementwise

    /// The category of a profile entry, from its name (`cublasLt …`, `cudnn conv …`, `cudnn graph conv …`,
    /// `cudnn graph sdpa …`, or a kernel name).
    init(entryName name: String) {
        if name.hasPrefix("cublasLt") { self = .gemm }
        else if name.contains("attention") || name.contains("sdpa") { self = .attention }
        else if name.hasPrefix("cudnn") || name.contains("im2col") { self = .convolution }
        else if name.contains("norm") || name.contains("softmax") { self = .normalization }
        else { self = .elementwise }
    }
}

/// One row of the per-operation profile (`CUDABackend.profile`): every call of one kernel, GEMM shape
/// or convolution shape and algorithm, each timed on the GPU by CUDA events recorded before and after
/// it on the stream (the operations run back to back, as without profiling).
public struct CUDAProfileEntry: Sendable {
    /// Kernel name, `cublasLt m=… n=… k=…` or `cudnn conv <shape> algo <n>`.
    public let name: String
    /// What the entry is (from its name).
    public let category: CUDAProfileCategory
    /// Total wall time of the calls, host launch cost included.
    public var seconds: Double
    /// Number of calls.
    public var calls: Int
    /// Total floating-point operations of the calls (2 per multiply-add; 0 where not counted).
    public var flops: Double

    /// Achieved FLOP/s (0 where FLOPs are not counted).
    public var flopsPerSecond: Double { seconds > 0 ? flops / seconds : 0 }
}

/// A profile grouped by category: total seconds, calls and FLOPs per category, largest first.
public func summarize(_ profile: [CUDAProfileEntry]) -> [CUDAProfileEntry] {
    var groups: [CUDAProfileCategory: CUDAProfileEntry] = [:]
    for e in profile {
        var g = groups[e.category] ?? CUDAProfileEntry(name: e.category.rawValue, category: e.category, seconds: 0, calls: 0, flops: 0)
        g.seconds += e.seconds
        g.calls += e.calls
        g.flops += e.flops
        groups[e.category] = g
    }
    return groups.values.sorted { $0.seconds > $1.seconds }
}
