import CSSDKernels
import SSDTensor

/// Options of the CPU backend.
public struct CPUBackendOptions: Sendable, Hashable {
    /// Which matrix-multiplication code runs `linear`, `conv2d` and `matmul`.
    public enum GEMMProvider: String, Sendable, Hashable, CaseIterable {
        /// This package's packed micro-kernels (CSSDKernels).
        case own
        /// OpenBLAS `cblas_sgemm`, opened at run time from `libopenblas.so.0`; weights are then
        /// kept as fp32 row-major matrices.
        case openBLAS
    }

    /// GEMM implementation.
    public var gemm: GEMMProvider
    /// Element type weights are kept in (`f32`, `f16` or `bf16`); f16/bf16 halve the memory and
    /// are converted to fp32 block by block inside the GEMM.
    public var weightStorage: DType
    /// Opt-in bf16 dot products (`vdpbf16ps`, fp32 accumulation) for `linear` and `conv2d`
    /// weights of the UNet and text encoders; forces bf16 weight storage for them. The VAE
    /// keeps fp32 unless its config says `force_upcast: false`.
    public var bf16Compute: Bool
    /// How the fp32 path's matrix products (linears, convolutions, attention) are computed, as
    /// PyTorch's `torch.set_float32_matmul_precision`.
    public enum Float32MatmulPrecision: String, Sendable, Hashable, CaseIterable {
        /// fp32 fused multiply-adds (the default; PyTorch's "highest").
        case highest
        /// On CPUs with AMX: each fp32 operand as the sum of two bf16 (hi + lo), three bf16 tile
        /// products (hi·hi + lo·hi + hi·lo) accumulated in fp32, about 4e-6 relative error per
        /// product (PyTorch's "high", "bfloat16x3"); weights keep fp32's size. Linears, 1×1 and
        /// upsampling convolutions, attention, and 3×3 convolutions by Winograd F(2×2, 3×3) with
        /// split GEMMs where Cin is a multiple of 32 and Cout of 16 (~1e-5; the others, such as
        /// `conv_in` and `conv_out`, stay on fp32 F(4×4, 3×3)). Elsewhere (no AMX) as `highest`.
        case high
    }

    /// Worker threads (defaults to the online cores).
    public var threads: Int
    /// fp32 matmul precision for fp32 weights (`weightStorage == .f32`, no `bf16Compute`).
    public var float32MatmulPrecision: Float32MatmulPrecision = .highest
    /// GEMM cache blocking: rows per block (`mc`), columns per block (`nc`, a multiple of 64),
    /// depth per block (`kc`, a multiple of 32). The `mc × nc` block of C and the `kc × nc` block
    /// of weights stay in L2 while each 6-row slice of A (6 × kc) stays in L1. Defaults: 480/512/512
    /// where L2 holds 1 MB or more (measured best on a 2 MB-L2 Sapphire Rapids core), 480/256/256
    /// below (a 512 KB-L2 Zen 3: 2048³ and the UNet's feed-forward GEMMs 10–20 % faster).
    public var blocking: (mc: Int, nc: Int, kc: Int) {
        get { (blockRows, blockColumns, blockDepth) }
        set {
            blockRows = max(6, newValue.mc)
            blockColumns = max(64, newValue.nc / 64 * 64)
            blockDepth = max(32, newValue.kc / 32 * 32)
        }
    }
    /// Winograd for 3×3 stride-1 convolutions where it is faster: F(4×4, 3×3) on fp32, f16 or bf16
    /// weight panels; with `bf16Compute` on AMX, F(2×2, 3×3) for convolutions of at most 640 outputs
    /// (transformed weights prepared at load, 16/9 of those weights' size); with fp32 matmul precision
    /// `.high` on AMX, F(2×2, 3×3) with split GEMMs (weights transformed per call); not with
    /// OpenBLAS. false: always the implicit GEMM.
    public var winograd: Bool = true
    /// Fewest 4×4 output tiles (over the batch) for which a convolution takes the Winograd path:
    /// below it the per-call weight transform and the short GEMMs cost more than they save.
    var winogradMinimumTiles = 32
    /// The same for the bf16 path's 2×2 output tiles (`winogradBF16Conv2d`).
    var winogradBF16MinimumTiles = 256
    /// Fewest 2×2 output tiles for which a 3×3 convolution takes Winograd F(2×2, 3×3) with
    /// bf16×3 GEMMs (matmul precision `.high` on AMX; Cin a multiple of 32, Cout of 16).
    var winogradSplitF23MinimumTiles = 64
    /// Largest transformed weight the Winograd path holds at once (36·Cin·columns floats); wider
    /// convolutions run in column chunks, re-transforming the input per chunk.
    var winogradWeightBytes = 64 << 20
    var blockRows = 480
    var blockColumns = Self.defaultBlockWidth
    var blockDepth = Self.defaultBlockWidth
    /// Columns and depth per GEMM block for this machine's L2 (see `blocking`).
    static let defaultBlockWidth = ssd_l2_cache_bytes() > 0 && ssd_l2_cache_bytes() < 1 << 20 ? 256 : 512

    /// Options with these settings (the others at their defaults, documented on each property).
    public init(gemm: GEMMProvider = .own, weightStorage: DType = .f32, bf16Compute: Bool = false,
                threads: Int = Parallel.threadCount) {
        self.gemm = gemm
        self.weightStorage = weightStorage
        self.bf16Compute = bf16Compute
        self.threads = max(1, threads)
    }
}

/// The SIMD CPU backend (DESIGN.md §3): fp32 activations in NHWC, weights pre-packed at load
/// into 64-column panels for the CSSDKernels micro-kernels (AVX-512, AVX2, AVX512_BF16, NEON or
/// portable, chosen at run time), implicit-GEMM convolution, flash attention, fused epilogues.
/// Calls are synchronous: every op has finished when it returns.
public final class CPUBackend: ComputeBackend {
    public let name = "cpu"
    /// The options this backend was made with.
    public let options: CPUBackendOptions
    let counter = MemoryCounter()
    let blas: OpenBLAS?
    let winogradWorkspace = WinogradWorkspace()

    /// Makes a backend; throws `TensorError.backendUnavailable` when OpenBLAS is selected and
    /// `libopenblas.so.0` cannot be opened, or the weight storage type is not a float type.
    public init(options: CPUBackendOptions = CPUBackendOptions()) throws {
        guard options.weightStorage.isFloatingPoint else {
            throw TensorError.invalidArgument(op: "CPUBackend", message: "weight storage \(options.weightStorage.rawValue) is not a float type")
        }
        self.options = options
        if options.gemm == .openBLAS {
            blas = try OpenBLAS.load()
        } else {
            blas = nil
        }
    }

    /// The kernels and options in use: instruction set, GEMM provider, weight storage, bf16 products,
    /// fp32 matmul precision, threads.
    public var statusReport: String {
        "cpu: \(Self.instructionSet) micro-kernels (detected \(Self.detectedInstructionSet)), GEMM \(options.gemm.rawValue), "
            + "weights \(options.weightStorage.rawValue), bf16 products \(options.bf16Compute ? "on" : "off"), "
            + "fp32 matmul precision \(options.float32MatmulPrecision), \(options.threads) threads"
    }

    /// The instruction set the micro-kernels use ("amx-bf16", "avx512-bf16", "avx512", "avx2", "neon", "portable").
    public static var instructionSet: String { isaName(Int(ssd_isa())) }

    /// The best instruction set this CPU supports (what `resetInstructionSet` restores).
    public static var detectedInstructionSet: String { isaName(Int(ssd_isa_detected())) }

    /// Restricts the micro-kernels to `level` or below for testing ("portable", "avx2", "avx512",
    /// "avx512-bf16", "amx-bf16", "neon"); returns the level now in use. Affects every backend in the process.
    @discardableResult
    public static func setInstructionSet(_ level: String) -> String {
        let code: Int32
        switch level {
        case "portable": code = Int32(SSD_ISA_PORTABLE)
        case "avx2": code = Int32(SSD_ISA_AVX2)
        case "avx512": code = Int32(SSD_ISA_AVX512)
        case "neon": code = Int32(SSD_ISA_NEON)
        case "avx512-bf16": code = Int32(SSD_ISA_AVX512_BF16)
        default: code = Int32(SSD_ISA_AMX_BF16)
        }
        return isaName(Int(ssd_set_isa(code)))
    }

    /// Resets the micro-kernels to the best level this CPU supports.
    public static func resetInstructionSet() { _ = ssd_set_isa(ssd_isa_detected()) }

    static func isaName(_ level: Int) -> String {
        switch level {
        case Int(SSD_ISA_AVX2): return "avx2"
        case Int(SSD_ISA_AVX512): return "avx512"
        case Int(SSD_ISA_AVX512_BF16): return "avx512-bf16"
        case Int(SSD_ISA_AMX_BF16): return "amx-bf16"
        case Int(SSD_ISA_NEON): return "neon"
        default: return "portable"
        }
    }

    public func activationDType(for component: ModelComponent) -> DType { .f32 }

    // MARK: Memory

    /// A new uninitialised tensor of this backend.
    func allocate(_ shape: [Int], _ dtype: DType = .f32) -> Tensor {
        let count = shape.reduce(1, *)
        return Tensor(shape: shape, dtype: dtype, storage: CPUBuffer(byteCount: count * dtype.byteSize, counter: counter))
    }

    public func upload(_ view: HostTensorView, as dtype: DType) throws -> Tensor {
        let out = allocate(view.shape, dtype)
        try convertElements(from: view.pointer, view.dtype, to: try out.cpuBuffer("upload").pointer, dtype, count: view.count, op: "upload \(view.name)")
        return out
    }

    public func download(_ tensor: Tensor) throws -> [Float] {
        let buffer = try tensor.cpuBuffer("download")
        let n = tensor.count
        var result = [Float](repeating: 0, count: n)
        try result.withUnsafeMutableBytes { dst in
            try convertElements(from: UnsafeRawPointer(buffer.pointer), tensor.dtype, to: dst.baseAddress!, .f32, count: n, op: "download")
        }
        return result
    }

    public func synchronize() throws {}

    public func memoryStatistics() -> BackendMemoryStatistics { counter.statistics }

    public func resetPeakMemory() { counter.resetPeak() }

    /// Frees the pool of reusable activation buffers (bytes in `pooledBytes`; at most 512 MiB is
    /// kept) and the Winograd workspace (at most ~130 MB with 2 threads). Neither is counted in
    /// `memoryStatistics`, which reports live tensors.
    public func trimMemory() { counter.drainPool(); winogradWorkspace.drain() }

    /// Bytes of freed activation buffers kept for reuse.
    public var pooledBytes: Int { counter.pooledBytes }

    public func convert(_ x: Tensor, to dtype: DType) throws -> Tensor {
        let src = try x.cpuBuffer("convert")
        let out = allocate(x.shape, dtype)
        try convertElements(from: UnsafeRawPointer(src.pointer), x.dtype, to: try out.cpuBuffer("convert").pointer, dtype, count: x.count, op: "convert")
        return out
    }
}

/// Converts `count` elements between element types (float types via CSSDKernels, integers by value).
func convertElements(from src: UnsafeRawPointer, _ from: DType, to dst: UnsafeMutableRawPointer, _ to: DType, count n: Int, op: String) throws {
    if from == to {
        dst.copyMemory(from: src, byteCount: n * from.byteSize)
        return
    }
    let f = dst.assumingMemoryBound(to: Float.self)
    let u16 = src.assumingMemoryBound(to: UInt16.self)
    switch (from, to) {
    case (.f16, .f32): chunked(n) { ssd_f16_to_f32(u16 + $0, f + $0, $1) }
    case (.bf16, .f32): chunked(n) { ssd_bf16_to_f32(u16 + $0, f + $0, $1) }
    case (.f32, .f16):
        let s = src.assumingMemoryBound(to: Float.self), d = dst.assumingMemoryBound(to: UInt16.self)
        chunked(n) { ssd_f32_to_f16(s + $0, d + $0, $1) }
    case (.f32, .bf16):
        let s = src.assumingMemoryBound(to: Float.self), d = dst.assumingMemoryBound(to: UInt16.self)
        chunked(n) { ssd_f32_to_bf16(s + $0, d + $0, $1) }
    case (.f16, .bf16), (.bf16, .f16), (.i32, _), (.i64, _), (_, .i32), (_, .i64):
        // Rare paths: through Float (integers by value).
        let view = HostTensorView(name: op, shape: [n], dtype: from, pointer: src, owner: nil)
        let tmp = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
        defer { tmp.deallocate() }
        view.convertToFloat(into: tmp)
        switch to {
        case .f32: f.update(from: tmp, count: n)
        case .f16: ssd_f32_to_f16(tmp, dst.assumingMemoryBound(to: UInt16.self), n)
        case .bf16: ssd_f32_to_bf16(tmp, dst.assumingMemoryBound(to: UInt16.self), n)
        case .i32:
            let d = dst.assumingMemoryBound(to: Int32.self)
            for i in 0..<n { d[i] = Int32(tmp[i]) }
        case .i64:
            let d = dst.assumingMemoryBound(to: Int64.self)
            for i in 0..<n { d[i] = Int64(tmp[i]) }
        }
    default:
        throw TensorError.invalidArgument(op: op, message: "cannot convert \(from.rawValue) to \(to.rawValue)")
    }
}

/// Runs `body(start, count)` over `0..<n` in parallel chunks of at least 64 K elements.
func chunked(_ n: Int, _ body: (Int, Int) -> Void) {
    Parallel.forEachChunk(n, minimumChunk: 1 << 16) { r in body(r.lowerBound, r.count) }
}

extension CPUBackend {
    /// `body(i)` for `i` in `0..<count` over the worker threads (serial with one thread).
    func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        if options.threads == 1 {
            for i in 0..<count { body(i) }
        } else {
            Parallel.forEach(count, body)
        }
    }

    /// `body` on contiguous chunks of `0..<count` (at least `minimumChunk` each) over the worker threads.
    func parallelChunks(_ count: Int, minimumChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        if options.threads == 1 {
            if count > 0 { body(0..<count) }
        } else {
            Parallel.forEachChunk(count, minimumChunk: minimumChunk, body)
        }
    }
}
