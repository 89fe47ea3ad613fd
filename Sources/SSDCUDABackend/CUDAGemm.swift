import CCUDA
import SSDTensor

/// A row-major (batched, strided) matrix product `D = alpha · op(A) · op(B) (+ C) (+ bias)` on
/// cuBLASLt, fp32 accumulation. `op(A)` is `[M, K]`, `op(B)` `[K, N]`, `D` `[M, N]` with row
/// strides `lda`, `ldb`, `ldd`; the bias (length N) is added per output column by the epilogue.
struct GemmShape: Hashable {
    var m: Int, n: Int, k: Int
    var transA: Bool, transB: Bool
    var lda: Int, ldb: Int, ldd: Int
    var strideA: Int = 0, strideB: Int = 0, strideD: Int = 0
    var batch: Int = 1
    var dtype: DType
    var bias: Bool = false
    /// Smallest power-of-two alignment (≤ 256 bytes) of the A, B, C, D pointers; set by `GemmEngine.run`.
    var alignment: Int = 256
}

/// cuBLASLt plans (descriptors + heuristic algorithm) cached per shape, and the shared workspace.
/// With `autotune`, the first call of each shape (outside a graph capture) times cuBLASLt's first
/// `autotuneCandidates` heuristic answers on the call's own operands and keeps the fastest.
final class GemmEngine: @unchecked Sendable {
    static let workspaceBytes = 32 << 20
    static let autotuneCandidates = 8

    private final class Plan {
        let desc: cublasLtMatmulDesc_t
        let a: cublasLtMatrixLayout_t, b: cublasLtMatrixLayout_t, d: cublasLtMatrixLayout_t
        var algo: cublasLtMatmulAlgo_t
        var workspace: Int
        /// Heuristic answers not yet timed (autotune), best first; emptied once timed.
        var candidates: [(algo: cublasLtMatmulAlgo_t, workspace: Int)]
        init(desc: cublasLtMatmulDesc_t, a: cublasLtMatrixLayout_t, b: cublasLtMatrixLayout_t, d: cublasLtMatrixLayout_t,
             candidates: [(algo: cublasLtMatmulAlgo_t, workspace: Int)]) {
            self.desc = desc; self.a = a; self.b = b; self.d = d
            algo = candidates[0].algo
            workspace = candidates[0].workspace
            self.candidates = candidates.count > 1 ? candidates : []
        }
    }

    private let device: CUDADevice
    private let plans = Locked([GemmShape: Plan]())
    private let workspace: DeviceBuffer
    let autotune: Bool
    /// Autotune outcome: shapes timed, and how many of them chose another algorithm than the heuristic's first.
    private let tuning = Locked((timed: 0, changed: 0, savedSeconds: 0.0))

    init(device: CUDADevice, autotune: Bool) throws {
        self.device = device
        self.autotune = autotune
        workspace = try device.allocate(GemmEngine.workspaceBytes)
    }

    /// Shapes timed by autotune, those that left the heuristic's first choice, and the time per call saved in all.
    var tuningSummary: (timed: Int, changed: Int, savedSeconds: Double) { tuning.withLock { $0 } }

    static func dataType(_ dtype: DType) throws -> Int32 {
        switch dtype {
        case .f32: return Int32(CCUDA_R_32F)
        case .f16: return Int32(CCUDA_R_16F)
        case .bf16: return Int32(CCUDA_R_16BF)
        default: throw TensorError.unsupportedDType(op: "matmul", dtype: dtype)
        }
    }

    private func lt(_ status: cublasStatus_t, _ what: @autoclosure () -> String) throws {
        guard status == 0 else {
            throw TensorError.deviceFailure(backend: "cuda", message: "\(what()) failed with cuBLAS status \(status)")
        }
    }

    private func makePlan(_ s: GemmShape) throws -> Plan {
        let api = device.lt
        let type = try GemmEngine.dataType(s.dtype)
        var desc: cublasLtMatmulDesc_t?
        try lt(api.cublasLtMatmulDescCreate!(&desc, Int32(CCUBLAS_COMPUTE_32F), Int32(CCUDA_R_32F)), "cublasLtMatmulDescCreate")
        guard let desc else { throw TensorError.deviceFailure(backend: "cuda", message: "no matmul descriptor") }
        // Column-major view: D^T [N, M] = op(B)^T [N, K] · op(A)^T [K, M]; cuBLASLt's A is our B.
        var opA = Int32(s.transB ? CCUBLAS_OP_T : CCUBLAS_OP_N)
        var opB = Int32(s.transA ? CCUBLAS_OP_T : CCUBLAS_OP_N)
        try lt(api.cublasLtMatmulDescSetAttribute!(desc, Int32(CCUBLASLT_MATMUL_DESC_TRANSA), &opA, 4), "set TRANSA")
        try lt(api.cublasLtMatmulDescSetAttribute!(desc, Int32(CCUBLASLT_MATMUL_DESC_TRANSB), &opB, 4), "set TRANSB")
        var epilogue = UInt32(s.bias ? CCUBLASLT_EPILOGUE_BIAS : CCUBLASLT_EPILOGUE_DEFAULT)
        try lt(api.cublasLtMatmulDescSetAttribute!(desc, Int32(CCUBLASLT_MATMUL_DESC_EPILOGUE), &epilogue, 4), "set EPILOGUE")

        func layout(rows: Int, cols: Int, ld: Int, stride: Int) throws -> cublasLtMatrixLayout_t {
            var l: cublasLtMatrixLayout_t?
            try lt(api.cublasLtMatrixLayoutCreate!(&l, type, UInt64(rows), UInt64(cols), Int64(ld)), "cublasLtMatrixLayoutCreate")
            guard let l else { throw TensorError.deviceFailure(backend: "cuda", message: "no matrix layout") }
            if s.batch > 1 {
                var count = Int32(s.batch)
                var offset = Int64(stride)
                try lt(api.cublasLtMatrixLayoutSetAttribute!(l, Int32(CCUBLASLT_MATRIX_LAYOUT_BATCH_COUNT), &count, 4), "set BATCH_COUNT")
                try lt(api.cublasLtMatrixLayoutSetAttribute!(l, Int32(CCUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET), &offset, 8), "set BATCH_OFFSET")
            }
            return l
        }
        let a = s.transB ? try layout(rows: s.k, cols: s.n, ld: s.ldb, stride: s.strideB)
                         : try layout(rows: s.n, cols: s.k, ld: s.ldb, stride: s.strideB)
        let b = s.transA ? try layout(rows: s.m, cols: s.k, ld: s.lda, stride: s.strideA)
                         : try layout(rows: s.k, cols: s.m, ld: s.lda, stride: s.strideA)
        let d = try layout(rows: s.n, cols: s.m, ld: s.ldd, stride: s.strideD)

        var preference: cublasLtMatmulPreference_t?
        try lt(api.cublasLtMatmulPreferenceCreate!(&preference), "cublasLtMatmulPreferenceCreate")
        defer { _ = api.cublasLtMatmulPreferenceDestroy!(preference) }
        var limit = UInt64(GemmEngine.workspaceBytes)
        try lt(api.cublasLtMatmulPreferenceSetAttribute!(preference, Int32(CCUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES), &limit, 8), "set MAX_WORKSPACE")
        var alignment = UInt32(s.alignment)
        for attribute in [CCUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CCUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                          CCUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CCUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES] {
            try lt(api.cublasLtMatmulPreferenceSetAttribute!(preference, Int32(attribute), &alignment, 4), "set MIN_ALIGNMENT")
        }
        let requested = autotune ? GemmEngine.autotuneCandidates : 1
        var results = [cublasLtMatmulHeuristicResult_t](repeating: cublasLtMatmulHeuristicResult_t(), count: requested)
        var returned: Int32 = 0
        let status = api.cublasLtMatmulAlgoGetHeuristic!(device.ltHandle, desc, a, b, d, d, preference, Int32(requested), &results, &returned)
        let usable = results.prefix(Int(max(returned, 0))).filter { $0.state == 0 }
        guard status == 0, !usable.isEmpty else {
            throw TensorError.deviceFailure(
                backend: "cuda", message: "cuBLASLt found no algorithm (status \(status)) for \(s)")
        }
        return Plan(desc: desc, a: a, b: b, d: d, candidates: usable.map { (algo: $0.algo, workspace: $0.workspaceSize) })
    }

    /// Enqueues the product. `c` (shaped like D, beta = 1) may be nil; `bias` requires `shape.bias`.
    func run(_ requested: GemmShape, a: CUdeviceptr, b: CUdeviceptr, c: CUdeviceptr?, d: CUdeviceptr,
             bias: CUdeviceptr? = nil, alpha: Float = 1) throws {
        guard requested.m > 0, requested.n > 0 else { return }
        var shape = requested
        var bits = 8
        for pointer in [a, b, c ?? d, d] where pointer != 0 { bits = min(bits, pointer.trailingZeroBitCount) }
        shape.alignment = 1 << bits
        try device.makeCurrent()
        try plans.withLock { cache in
            let plan: Plan
            if let existing = cache[shape] {
                plan = existing
            } else {
                plan = try makePlan(shape)
                cache[shape] = plan
            }
            let api = device.lt
            if shape.bias {
                var pointer = bias ?? 0
                try lt(api.cublasLtMatmulDescSetAttribute!(plan.desc, Int32(CCUBLASLT_MATMUL_DESC_BIAS_POINTER), &pointer, 8), "set BIAS_POINTER")
            }
            var alphaValue = alpha
            var beta: Float = c == nil ? 0 : 1
            let cPointer = c ?? d
            func enqueue(_ algo: inout cublasLtMatmulAlgo_t, _ workspaceBytes: Int) -> cublasStatus_t {
                api.cublasLtMatmul!(
                    device.ltHandle, plan.desc, &alphaValue,
                    UnsafeRawPointer(bitPattern: UInt(b)), plan.a,   // cuBLASLt's A is our B (see makePlan)
                    UnsafeRawPointer(bitPattern: UInt(a)), plan.b,
                    &beta, UnsafeRawPointer(bitPattern: UInt(cPointer)), plan.d,
                    UnsafeMutableRawPointer(bitPattern: UInt(d)), plan.d,
                    &algo, UnsafeMutableRawPointer(bitPattern: UInt(workspace.pointer)), min(workspaceBytes, GemmEngine.workspaceBytes),
                    device.stream)
            }
            // Autotune: D is written by every timed call, so only when D is none of the inputs.
            if !plan.candidates.isEmpty, !device.isCapturing, d != a, d != b, d != cPointer || c == nil {
                // Enough repeats for ≥ 0.5 ms per candidate (3 to 50), judged on the heuristic's first;
                // another candidate wins only when more than 3 % faster.
                var first = plan.candidates[0].algo
                let estimate = try device.measure(repeats: 3) { _ = enqueue(&first, plan.candidates[0].workspace) }
                let repeats = max(3, min(50, Int((0.5e-3 / max(estimate, 1e-7)).rounded(.up))))
                var best: (index: Int, seconds: Double)?
                var firstSeconds = 0.0
                for (index, candidate) in plan.candidates.enumerated() {
                    var algo = candidate.algo
                    var failed = false
                    let seconds = try device.measure(repeats: repeats) {
                        if enqueue(&algo, candidate.workspace) != 0 { failed = true }
                    }
                    if index == 0 { firstSeconds = failed ? .infinity : seconds }
                    if !failed, seconds < (best?.seconds ?? .infinity) { best = (index, seconds) }
                }
                if let chosen = best, chosen.index != 0, firstSeconds.isFinite, chosen.seconds > 0.97 * firstSeconds {
                    best = (0, firstSeconds)  // within noise of the heuristic's first: keep it
                }
                if let best {
                    plan.algo = plan.candidates[best.index].algo
                    plan.workspace = plan.candidates[best.index].workspace
                    tuning.withLock {
                        $0.timed += 1
                        if best.index != 0 {
                            $0.changed += 1
                            if firstSeconds.isFinite { $0.savedSeconds += max(0, firstSeconds - best.seconds) }
                        }
                    }
                }
                plan.candidates = []
            }
            let status = try device.timed("cublasLt m=\(shape.m) n=\(shape.n) k=\(shape.k)\(shape.batch > 1 ? " ×\(shape.batch)" : "")",
                                           flops: 2 * Double(shape.m) * Double(shape.n) * Double(shape.k) * Double(shape.batch)) {
                enqueue(&plan.algo, plan.workspace)
            }
            try lt(status, "cublasLtMatmul \(shape)")
        }
    }
}
