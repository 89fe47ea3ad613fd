import CCUDA
import SSDTensor

/// Whether the CUDA backend can run here, and why not.
public struct CUDAAvailability: Sendable, Hashable {
    /// True when the libraries and a GPU were found.
    public let isAvailable: Bool
    /// The device and libraries when available, else what is missing.
    public let description: String
}

/// The NVIDIA GPU backend (DESIGN.md §3): fp16 activations with fp32 accumulation for the text
/// encoders and the UNet, fp32 for the VAE unless its config has `force_upcast: false` (its weights
/// kept in fp16 all the same, cast per op).
///
/// GEMMs run on cuBLASLt (bias and residual fused in the epilogue), convolutions on cuDNN (NHWC;
/// 1×1 convolutions and the no-cuDNN fallback on cuBLASLt, the latter through im2col), everything
/// else as CUDA C kernels compiled at run time by NVRTC for the device (see `KernelSource`).
/// Calls only enqueue work on one stream; `download` and `synchronize` wait. Memory comes from the
/// driver's stream-ordered pool, which keeps what is freed for reuse.
///
/// Libraries are opened with `dlopen` (see `CCUDA`); `SSD_CUDA_LIBRARY_PATH` adds folders to search.
/// On/off variables take `1`/`on`/`true`/`yes` and `0`/`off`/`false`/`no`; another value keeps the default
/// (except `SSD_CUDA_GRAPHS`, which an unreadable value switches off and reports in `graphOptionProblems`).
/// `SSD_CUDA_CONV=im2col` skips cuDNN. `SSD_CUDA_LEGACY_KERNELS=1` uses the first (scalar) kernels
/// instead of the fp16 vectorised ones and the double-buffered attention (`KernelSource.fast`);
/// `SSD_CUDA_LEGACY_ATTENTION=1` goes back to the first attention kernel alone;
/// `SSD_CUDA_ATTENTION_WARPS=4` keeps the fast attention at 64 queries per block;
/// `SSD_CUDA_ATTENTION_ROWS=32` gives each of its warps 32 query rows instead of 16 (these four, and
/// the same arguments, leave cuDNN's attention off unless `SSD_CUDA_CUDNN_ATTENTION` asks for it).
/// By default (chosen by measurement on an H200, Benchmarks/RESULTS.md) the candidate algorithms of
/// every GEMM and convolution shape are timed once (cuBLASLt's heuristic list, cuDNN's measured
/// search; `SSD_CUDA_AUTOTUNE=0` takes the heuristic's first), bias and residual are added inside
/// cuDNN's convolution where it can (`SSD_CUDA_FUSED_CONV=0` off), non-causal fp16/bf16 attention runs
/// on cuDNN's fused attention engines through its composite graph (`SSD_CUDA_CUDNN_ATTENTION=0`: our
/// flash kernels; `=1`: cuDNN's SDPA operation first) and the UNet is replayed as a CUDA graph
/// (`SSD_CUDA_GRAPHS=0` off). `SSD_CUDA_CONV_GRAPH=1` runs fp16/bf16 convolutions, bias and residual
/// through cuDNN's graph API (off: no faster there).
public final class CUDABackend: ComputeBackend {
    public let name = "cuda"
    let device: CUDADevice
    let gemm: GemmEngine
    let convolutions: ConvolutionEngine
    /// cuDNN's graph API for fp16/bf16 convolutions (`SSD_CUDA_CONV_GRAPH=1`), nil when off or absent.
    let convolutionGraphs: ConvolutionGraphEngine?
    /// cuDNN's fused attention through its graph API (on unless `SSD_CUDA_CUDNN_ATTENTION=0`), nil when off or absent.
    let attentionGraphs: AttentionGraphEngine?
    /// The fp16 vectorised kernels of `KernelSource.fast` (GEGLU, bias + residual, binary, group and layer norm).
    public let usesFastKernels: Bool
    /// The double-buffered `ldmatrix` flash attention for head dim 64.
    public let usesFastAttention: Bool

    /// Opens GPU `ordinal`; throws `TensorError.backendUnavailable` naming the missing library, symbol or device.
    /// With `useCuDNN: false` convolutions take the im2col + cuBLASLt path. `legacyKernels` and
    /// `legacyAttention` (nil: from `SSD_CUDA_LEGACY_KERNELS` / `SSD_CUDA_LEGACY_ATTENTION` = 1)
    /// select the first kernels, kept for comparison and as a fallback. `attentionWarps` (nil:
    /// `SSD_CUDA_ATTENTION_WARPS`, default 8) picks the fast attention's block for ≥ 1024 queries.
    /// `profiling` (nil: `SSD_CUDA_PROFILE=1`) times every kernel on the GPU (see `profile`).
    /// `graphs` (nil: `CUDAGraphOptions.fromEnvironment()`, on unless `SSD_CUDA_GRAPHS=0`) makes
    /// `runReplayable` record CUDA graphs and replay them (see `runReplayable`).
    /// `autotune` (nil: on unless `SSD_CUDA_AUTOTUNE=0`) and `fusedConvolutions` (nil: on unless
    /// `SSD_CUDA_FUSED_CONV=0`): see the type's notes; `convolutionGraphs` (nil: off unless
    /// `SSD_CUDA_CONV_GRAPH=1`; cuDNN's graph API, see `ConvolutionGraphEngine`) and `cudnnAttention`
    /// (nil: `CUDNNAttention.fromEnvironment()`, `.composite` unless set; see `AttentionGraphEngine`). `compactVAEWeights`
    /// (nil: on unless `SSD_CUDA_VAE_FP32_WEIGHTS=1`): see `prepareWeight(_:role:component:)`.
    /// Warps per block of the fast attention for ≥ 1024 queries (8: 128 queries per block; 4: 64).
    public let attentionWarps: Int
    /// Whether a `force_upcast` VAE keeps fp16 weights (see `prepareWeight(_:role:component:)`);
    /// `SSD_CUDA_VAE_FP32_WEIGHTS=1` stores them upcast instead.
    public let compactVAEWeights: Bool
    /// The element type of the text encoders' and UNet's activations (and of a VAE without
    /// `force_upcast`): `.f16` (default, fp32 accumulation) or `.f32`.
    public let activations: DType
    /// Query rows per warp of the fast attention (16, or 32: each K/V fragment feeds two tensor-core
    /// products; `SSD_CUDA_ATTENTION_ROWS=32`), off by default until measured on a GPU.
    public let attentionRowsPerWarp: Int
    let graphCache = GraphCache<CUDAGraphEntry>()
    private let graphSettings: Locked<CUDAGraphOptions>
    /// Values of `SSD_CUDA_GRAPH*` that could not be read (they keep their defaults).
    public let graphOptionProblems: [String]
    /// The kernel launches, on this backend's device and kernel choices.
    var kernels: KernelCalls {
        KernelCalls(launcher: device, fast: usesFastKernels, fastAttention: usesFastAttention, attentionWarps: attentionWarps,
                    attentionRowsPerWarp: attentionRowsPerWarp)
    }
    /// The recorder `runReplayable` drives (made per call: it only holds the backend and the capture mode).
    var graphRecorder: CUDAGraphRecorder { CUDAGraphRecorder(backend: self, mode: graphOptions.captureMode) }

    /// Opens the CUDA libraries and GPU `ordinal`; throws `TensorError.backendUnavailable` naming what
    /// is missing. Every option left nil is read from its environment variable (Documentation/CUDA.md:
    /// `SSD_CUDA_AUTOTUNE`, `SSD_CUDA_FUSED_CONV`, `SSD_CUDA_CONV_GRAPH`, `SSD_CUDA_CUDNN_ATTENTION`,
    /// `SSD_CUDA_GRAPHS…`, `SSD_CUDA_PROFILE`, …); `activations` is `.f16` (default) or `.f32`.
    public init(device ordinal: Int = 0, useCuDNN: Bool = true, legacyKernels: Bool? = nil, legacyAttention: Bool? = nil,
                attentionWarps: Int? = nil, profiling: Bool? = nil, graphs: CUDAGraphOptions? = nil,
                autotune: Bool? = nil, fusedConvolutions: Bool? = nil, attentionRowsPerWarp: Int? = nil,
                compactVAEWeights: Bool? = nil, convolutionGraphs: Bool? = nil, cudnnAttention: CUDNNAttention? = nil,
                activations: DType = .f16) throws {
        guard activations == .f16 || activations == .f32 else {
            throw TensorError.backendUnavailable(backend: "cuda", reason: "activations in \(activations.rawValue): only f16 and f32 are supported")
        }
        self.activations = activations
        device = try CUDADevice(ordinal: ordinal, useCuDNN: useCuDNN,
                                profiling: profiling ?? environmentSwitch("SSD_CUDA_PROFILE", default: false))
        let tune = autotune ?? environmentSwitch("SSD_CUDA_AUTOTUNE", default: true)
        gemm = try GemmEngine(device: device, autotune: tune)
        convolutions = ConvolutionEngine(device: device, autotune: tune,
                                         fused: fusedConvolutions ?? environmentSwitch("SSD_CUDA_FUSED_CONV", default: true))
        self.convolutionGraphs = convolutionGraphs ?? environmentSwitch("SSD_CUDA_CONV_GRAPH", default: false)
            ? ConvolutionGraphEngine(device: device, autotune: tune) : nil
        let legacy = legacyKernels ?? environmentSwitch("SSD_CUDA_LEGACY_KERNELS", default: false)
        usesFastKernels = !legacy
        usesFastAttention = !(legacyAttention ?? (legacy || environmentSwitch("SSD_CUDA_LEGACY_ATTENTION", default: false)))
        let warps = attentionWarps ?? Int(environment("SSD_CUDA_ATTENTION_WARPS") ?? "")
        let rows = attentionRowsPerWarp ?? Int(environment("SSD_CUDA_ATTENTION_ROWS") ?? "")
        self.attentionWarps = warps == 4 ? 4 : 8
        self.attentionRowsPerWarp = rows == 32 ? 32 : 16
        // Asking for a variant of our own attention kernels (legacy, warps, rows) means using them: cuDNN's
        // attention then stays off unless asked for too.
        let ownAttention = !usesFastAttention || warps != nil || rows != nil
        let attentionMode = cudnnAttention
            ?? (environment("SSD_CUDA_CUDNN_ATTENTION") != nil || !ownAttention ? CUDNNAttention.fromEnvironment() : .off)
        attentionGraphs = AttentionGraphEngine(device: device, autotune: tune, mode: attentionMode)
        self.compactVAEWeights = compactVAEWeights ?? (environment("SSD_CUDA_VAE_FP32_WEIGHTS") != "1")
        if let graphs {
            graphSettings = Locked(graphs)
            graphOptionProblems = []
        } else {
            let (options, problems) = CUDAGraphOptions.fromEnvironment()
            graphSettings = Locked(options)
            graphOptionProblems = problems
        }
    }

    /// How `runReplayable` uses CUDA graphs. Setting it drops the graphs recorded so far.
    public var graphOptions: CUDAGraphOptions {
        get { graphSettings.withLock { $0 } }
        set {
            graphSettings.withLock { $0 = newValue }
            releaseGraphs()
        }
    }

    /// Checks whether the backend can start here (opens the libraries and the first GPU).
    public static func availability() -> CUDAAvailability {
        do {
            let backend = try CUDABackend()
            return CUDAAvailability(isAvailable: true, description: backend.deviceDescription)
        } catch let error as TensorError {
            if case let .backendUnavailable(_, reason) = error {
                return CUDAAvailability(isAvailable: false, description: reason)
            }
            return CUDAAvailability(isAvailable: false, description: error.description)
        } catch {
            return CUDAAvailability(isAvailable: false, description: "\(error)")
        }
    }

    /// The GPU, its compute capability and the library files in use.
    public var deviceDescription: String {
        let libraries = device.libraryPaths.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let conv = convolutions.isAvailable ? "cuDNN" : "im2col+cuBLASLt"
        let kernels = "kernels: \(usesFastKernels ? "fast" : "legacy"), attention: "
            + (usesFastAttention ? "fast, \(attentionWarps) warps × \(attentionRowsPerWarp) rows" : "legacy")
        let options = graphOptions
        var graphs = !options.enabled ? "off" : graphsUnavailableReason.map { "unavailable (\($0))" } ?? "on (\(options.captureMode.rawValue))"
        if !graphOptionProblems.isEmpty { graphs += " [ignored: \(graphOptionProblems.joined(separator: "; "))]" }
        let tuning = "activations: \(activations.rawValue), autotune: \(gemm.autotune ? "on" : "off"), fused conv: \(convolutions.fused ? "on" : "off"), "
            + "conv graph API: \(convolutionGraphs != nil ? "on" : "off"), cuDNN attention: "
            + (attentionGraphs.map { $0.triesUnifiedOperation ? "SDPA operation, else composite" : "composite" } ?? "off")
        return "\(device.name) (sm_\(device.computeCapability), \(device.multiprocessors) SMs; convolutions: \(conv); \(kernels); \(tuning); CUDA graphs: \(graphs); \(libraries))"
    }

    /// What autotune did so far, and the shapes where cuDNN refused the fused convolution, for reports.
    public var tuningReport: String {
        let g = gemm.tuningSummary
        let refusals = convolutions.fusionRefusals
        let counts = convolutions.fusionCounts
        return "GEMM shapes timed \(g.timed), of them \(g.changed) left the heuristic's first choice (saving "
            + "\(Int((g.savedSeconds * 1e6).rounded())) µs per pass of each once); convolutions with a bias: \(counts.fused) fused, "
            + "\(counts.unfused) not (algorithm not implicit precomputed GEMM, or refused); refused for \(refusals.count) shapes"
            + (refusals.isEmpty ? "" : ": " + refusals.prefix(4).joined(separator: "; "))
            + (convolutionGraphs.map { Self.describe("conv graph API", $0.plans.report) } ?? "")
            + (attentionGraphs.map { Self.describe("cuDNN attention", $0.plans.report) } ?? "")
    }

    /// The device description, the tuning report, the kernel cache's use and each recorded region's
    /// CUDA-graph status, a line each.
    public var statusReport: String {
        ([deviceDescription, tuningReport, device.kernelCacheReport] + graphStatus.map { "CUDA graph: \($0)" }).joined(separator: "\n")
    }

    private static func describe(_ name: String, _ r: (planned: Int, runs: Int, refusals: [String])) -> String {
        "; \(name): \(r.planned) shapes planned, \(r.runs) runs, \(r.refusals.count) refused"
            + (r.refusals.isEmpty ? "" : ": " + r.refusals.prefix(4).joined(separator: "; "))
    }

    /// With profiling on: per kernel (NVRTC name), cuBLASLt GEMM (by M, N and K) and cuDNN convolution
    /// (by shape and algorithm), the total GPU seconds (CUDA events around each), calls and FLOPs,
    /// largest first. Waits for the work profiled so far.
    public var profile: [CUDAProfileEntry] {
        get throws { try device.profile }
    }

    /// Whether every kernel, GEMM and convolution is timed on the GPU by CUDA events around it (see
    /// `profile`); CUDA graphs are not recorded while it is on. Starts as the initialiser's `profiling`.
    public var profiling: Bool {
        get { device.profiling }
        set { device.profiling = newValue }
    }

    /// Clears the profile (waiting for the work profiled so far).
    public func resetProfile() throws { try device.resetProfile() }

    /// Bytes the device's memory pool holds from the driver (live tensors plus cached free blocks).
    public var poolReservedBytes: Int { device.poolReservedBytes }

    public func activationDType(for component: ModelComponent) -> DType {
        switch component {
        case .textEncoder, .unet: return activations
        case let .vae(forceUpcast): return forceUpcast ? .f32 : activations
        }
    }

    // MARK: Tensors

    /// The device buffer behind `t`, or `foreignTensor`.
    func buffer(_ t: Tensor, _ op: String) throws -> DeviceBuffer {
        guard let b = t.storage as? DeviceBuffer, b.device === device else {
            throw TensorError.foreignTensor(op: op, backend: name)
        }
        device.noteUse(b)
        return b
    }

    func pointer(_ t: Tensor, _ op: String) throws -> CUdeviceptr { try buffer(t, op).pointer }

    /// A new uninitialised tensor.
    func empty(_ shape: [Int], _ dtype: DType) throws -> Tensor {
        let count = shape.reduce(1, *)
        return Tensor(shape: shape, dtype: dtype, storage: try device.allocate(count * dtype.byteSize))
    }

    /// Kernel type code: 0 f32, 1 f16, 2 bf16, 3 i32, 4 i64.
    static func code(_ dtype: DType) -> Int {
        switch dtype {
        case .f32: return 0
        case .f16: return 1
        case .bf16: return 2
        case .i32: return 3
        case .i64: return 4
        }
    }

    /// Code of a floating-point type, or `unsupportedDType`.
    func floatCode(_ t: Tensor, _ op: String) throws -> Int {
        guard t.dtype.isFloatingPoint else { throw TensorError.unsupportedDType(op: op, dtype: t.dtype) }
        return CUDABackend.code(t.dtype)
    }

    /// `t` in `dtype` (itself when it already is).
    func cast(_ t: Tensor, _ dtype: DType) throws -> Tensor {
        t.dtype == dtype ? t : try convert(t, to: dtype)
    }

    // MARK: Memory

    public func upload(_ view: HostTensorView, as dtype: DType) throws -> Tensor {
        let raw = try device.allocate(view.byteCount)
        try device.copyToDevice(raw.pointer, from: view.pointer, bytes: view.byteCount)
        let t = Tensor(shape: view.shape, dtype: view.dtype, storage: raw)
        return try cast(t, dtype)
    }

    public func download(_ tensor: Tensor) throws -> [Float] {
        let f = try cast(tensor, .f32)
        let source = try pointer(f, "download")
        var out = [Float](repeating: 0, count: f.count)
        try out.withUnsafeMutableBytes { try device.copyToHost($0.baseAddress!, from: source, bytes: f.count * 4) }
        return out
    }

    public func prepareWeight(_ view: HostTensorView, role: WeightRole, activationDType: DType) throws -> Tensor {
        let target = view.dtype.isFloatingPoint ? activationDType : view.dtype
        var t = try upload(view, as: target)
        if role == .conv2d || role == .upsampleConv2d {
            guard view.shape.count == 4 else {
                throw TensorError.invalidArgument(op: "prepareWeight", message: "conv2d weight \(view.name) has shape \(view.shape)")
            }
            if view.shape[2] * view.shape[3] > 1 {  // [Cout, Cin, kh, kw] → [Cout, kh, kw, Cin]
                t = try Tensor(shape: view.shape, dtype: t.dtype, storage: permute(t, [0, 2, 3, 1]).storage)
            }
            try buffer(t, "prepareWeight").layout = .convOHWI
        }
        return t
    }

    /// Half-precision weights of a `force_upcast` VAE (fp16 or bf16 files, e.g. SSD-1B's `fp16`
    /// variant) stay in their type on the device while it computes in fp32, unless
    /// `compactVAEWeights` is off: each op casts the weight it uses (a transient copy of at most one
    /// layer), the exact fp32 values of storing them upcast, as diffusers' fp16 pipeline keeps an fp16
    /// VAE and upcasts it for the decode. Saves ~170 MB for SDXL's VAE. fp32 weights (fp32 files,
    /// derived ones such as folded shortcuts) are stored in fp32.
    public func prepareWeight(_ view: HostTensorView, role: WeightRole, component: ModelComponent) throws -> Tensor {
        if compactVAEWeights, component == .vae(forceUpcast: true), view.dtype == .f16 || view.dtype == .bf16 {
            return try prepareWeight(view, role: role, activationDType: view.dtype)
        }
        return try prepareWeight(view, role: role, activationDType: activationDType(for: component))
    }

    public func synchronize() throws { try device.synchronize() }

    public func memoryStatistics() -> BackendMemoryStatistics { device.memoryStatistics }

    public func resetPeakMemory() { device.resetPeak() }
}
