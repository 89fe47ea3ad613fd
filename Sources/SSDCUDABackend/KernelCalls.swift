import CCUDA
import SSDTensor

/// Where the NVRTC kernels run: the GPU (`CUDADevice`) or, in the tests, the CPU emulator of the
/// kernel sources. Pointers in `KernelArgument`s are the launcher's addresses.
protocol KernelLauncher {
    /// Streaming multiprocessors (grid sizes of grid-stride kernels).
    var multiprocessors: Int { get }
    /// Launches `group`'s kernel `name` (an NVRTC name expression); `flops` is for the profile.
    func launch(_ group: KernelGroup, _ name: String, grid: (Int, Int, Int), block: Int, sharedBytes: Int, flops: Double,
                _ arguments: [KernelArgument]) throws
}

extension KernelLauncher {
    /// Launches a grid-stride kernel over `count` items: 256 threads, at most 32 blocks per multiprocessor.
    func launchElementwise(_ group: KernelGroup, _ name: String, count: Int, _ arguments: [KernelArgument]) throws {
        guard count > 0 else { return }
        let block = 256
        let blocks = min((count + block - 1) / block, multiprocessors * 32)
        try launch(group, name, grid: (blocks, 1, 1), block: block, sharedBytes: 0, flops: 0, arguments)
    }

    func launch(_ group: KernelGroup, _ name: String, grid: (Int, Int, Int), block: Int, _ arguments: [KernelArgument]) throws {
        try launch(group, name, grid: grid, block: block, sharedBytes: 0, flops: 0, arguments)
    }
}

/// Every kernel launch of `CUDABackend`, on raw pointers: which kernel (the fp16 vectorised one of
/// `KernelSource.fast` or the first, type-generic one), its grid and its arguments. The backend
/// allocates and passes device pointers; the tests pass host buffers to the CPU emulator, so the
/// launches they check are the ones the GPU gets. Element types are `CUDABackend.code` values.
struct KernelCalls {
    let launcher: KernelLauncher
    /// The vectorised fp16 kernels (off: `SSD_CUDA_LEGACY_KERNELS=1`).
    let fast: Bool
    /// The double-buffered flash attention for head dim 64 (off: `SSD_CUDA_LEGACY_ATTENTION=1`).
    let fastAttention: Bool
    /// Warps per block of the fast attention from 1024 queries up (4 or 8).
    let attentionWarps: Int
    /// Query rows per warp of the fast attention: 16, or 32 (each K/V fragment feeds two products).
    var attentionRowsPerWarp = 16

    static let f16 = 1

    func convert(_ x: CUdeviceptr, _ y: CUdeviceptr, count: Int, from: Int, to: Int) throws {
        try launcher.launchElementwise(.elementwise, "convert_kernel<\(from),\(to)>", count: count, [.pointer(x), .pointer(y), .int(count)])
    }

    /// `kind`: 0 SiLU, 1 GELU (erf), 2 quick GELU.
    func activation(_ x: CUdeviceptr, _ y: CUdeviceptr, count: Int, type t: Int, kind: Int) throws {
        try launcher.launchElementwise(.elementwise, "activation_kernel<\(t)>", count: count, [.pointer(x), .pointer(y), .int(count), .i32(kind)])
    }

    /// x `[rows, 2n]` → y `[rows, n]` = x[:, :n] · GELU(x[:, n:]).
    func geglu(_ x: CUdeviceptr, _ y: CUdeviceptr, rows: Int, n: Int, type t: Int) throws {
        if fast && t == KernelCalls.f16 && n % 8 == 0 {
            try launcher.launchElementwise(.fast, "geglu_h8", count: rows * n / 8, [.pointer(x), .pointer(y), .int(rows), .int(n / 8)])
            return
        }
        try launcher.launchElementwise(.elementwise, "geglu_kernel<\(t)>", count: rows * n, [.pointer(x), .pointer(y), .int(rows), .int(n)])
    }

    func affine(_ x: CUdeviceptr, _ y: CUdeviceptr, count: Int, type t: Int, scale: Float, shift: Float) throws {
        try launcher.launchElementwise(.elementwise, "affine_kernel<\(t)>", count: count,
                                       [.pointer(x), .pointer(y), .int(count), .float(scale), .float(shift)])
    }

    /// `y = a ∘ b` over collapsed broadcast axes `dims` (size, stride of a, stride of b; at most 6);
    /// `op`: 0 add, 1 subtract, 2 multiply, 3 divide.
    func binary(_ a: CUdeviceptr, _ b: CUdeviceptr, _ y: CUdeviceptr, count: Int, type t: Int, dims: [(Int, Int, Int)], op: Int) throws {
        if fast && t == KernelCalls.f16, let (rowBroadcast, p, c) = CUDABackend.vectorBinaryLayout(dims) {
            try launcher.launchElementwise(
                .fast, "binary_h8", count: count / 8,
                [.pointer(a), .pointer(b), .pointer(y), .int(count / 8), .i32(rowBroadcast ? 1 : 0), .int(p), .int(c / 8), .i32(op)])
            return
        }
        try launcher.launchElementwise(
            .elementwise, "binary_kernel<\(t)>", count: count,
            [.pointer(a), .pointer(b), .pointer(y), .int(count), .i32(dims.count), .dims(dims.map(\.0)), .dims(dims.map(\.1)),
             .dims(dims.map(\.2)), .i32(op)])
    }

    /// `y[r, c] += bias[c] + residual[r, c]` in place; a zero pointer leaves that term out.
    func biasResidual(_ y: CUdeviceptr, bias: CUdeviceptr, residual: CUdeviceptr, rows: Int, channels c: Int, type t: Int) throws {
        if fast && t == KernelCalls.f16 && c > 0 && c % 8 == 0 {
            try launcher.launchElementwise(.fast, "bias_residual_h8", count: rows * c / 8,
                                           [.pointer(y), .pointer(bias), .pointer(residual), .int(rows), .int(c / 8)])
            return
        }
        try launcher.launchElementwise(.elementwise, "bias_residual_kernel<\(t)>", count: rows * c,
                                       [.pointer(y), .pointer(bias), .pointer(residual), .int(rows), .int(c)])
    }

    /// Strided row copy, all quantities in elements of `elementSize` bytes.
    func copy2d(from source: CUdeviceptr, to destination: CUdeviceptr, rows: Int, cols: Int, sourceStride: Int, sourceOffset: Int,
                destinationStride: Int, destinationOffset: Int, elementSize: Int) throws {
        guard rows > 0, cols > 0 else { return }
        let u = CUDABackend.unit([cols, sourceStride, sourceOffset, destinationStride, destinationOffset].map { $0 * elementSize })
        let scale = { (v: Int) in v * elementSize / u }
        try launcher.launchElementwise(
            .elementwise, "copy2d_kernel<\(u)>", count: rows * scale(cols),
            [.pointer(source), .pointer(destination), .int(rows), .int(scale(cols)), .int(scale(sourceStride)),
             .int(scale(sourceOffset)), .int(scale(destinationStride)), .int(scale(destinationOffset))])
    }

    /// y = x with collapsed output axes `shape` read at source strides `strides` (at most 6).
    func permute(_ x: CUdeviceptr, _ y: CUdeviceptr, count: Int, elementSize: Int, shape: [Int], strides: [Int]) throws {
        try launcher.launchElementwise(.elementwise, "permute_kernel<\(elementSize)>", count: count,
                                       [.pointer(x), .pointer(y), .int(count), .i32(shape.count), .dims(shape), .dims(strides)])
    }

    /// NHWC `[b, h, w, c]` → `[b, 2h, 2w, c]`, nearest.
    func upsample2x(_ x: CUdeviceptr, _ y: CUdeviceptr, b: Int, h: Int, w: Int, channels c: Int, elementSize: Int) throws {
        let u = CUDABackend.unit([c * elementSize])
        let cu = c * elementSize / u
        try launcher.launchElementwise(.elementwise, "upsample2x_kernel<\(u)>", count: b * 4 * h * w * cu,
                                       [.pointer(x), .pointer(y), .int(b), .int(h), .int(w), .int(cu)])
    }

    /// Rows `ids` (int32, `count` of them) of `table` `[rows, dim]` into y `[count, dim]`.
    func embedding(_ table: CUdeviceptr, tableType: Int, ids: CUdeviceptr, _ y: CUdeviceptr, outputType: Int, count: Int, dim: Int) throws {
        try launcher.launchElementwise(.elementwise, "embedding_kernel", count: count * dim,
                                       [.pointer(table), .i32(tableType), .pointer(ids), .pointer(y), .i32(outputType), .int(count), .int(dim)])
    }

    /// Rows per chunk of the group-norm statistics pass.
    static let groupNormRowsPerChunk = 32

    /// Bytes of fp32 scratch `groupNorm` needs: `partial` (per chunk and channel, 2 values) and `stats` (per group, 2).
    static func groupNormScratch(b: Int, hw: Int, channels c: Int, groups: Int) -> (partial: Int, stats: Int) {
        let chunks = (hw + groupNormRowsPerChunk - 1) / groupNormRowsPerChunk
        return (b * chunks * c * 2, b * groups * 2)
    }

    /// Group norm (+ SiLU) of x `[b, hw, c]` into y: per-chunk channel sums, per-group statistics
    /// (mean, 1/σ), then the normalisation (`KernelSource.normalization`). `partial` and `stats`
    /// hold `groupNormScratch` fp32 values. Vectorised when x, weight and bias are fp16 and c % 8 == 0.
    func groupNorm(_ x: CUdeviceptr, _ y: CUdeviceptr, partial: CUdeviceptr, stats: CUdeviceptr, weight: CUdeviceptr, weightType: Int,
                   bias: CUdeviceptr, biasType: Int, b: Int, hw: Int, channels c: Int, groups: Int, epsilon: Float, silu: Bool,
                   type t: Int) throws {
        let rowsPerChunk = KernelCalls.groupNormRowsPerChunk
        let chunks = (hw + rowsPerChunk - 1) / rowsPerChunk
        let vectorised = fast && t == KernelCalls.f16 && weightType == KernelCalls.f16 && biasType == KernelCalls.f16 && c % 8 == 0
        if vectorised {
            let threads = min(256, (c / 8 + 31) / 32 * 32)
            try launcher.launch(.fast, "group_norm_partial_h8", grid: (chunks, b, 1), block: threads,
                                [.pointer(x), .pointer(partial), .int(hw), .i32(c), .i32(rowsPerChunk)])
        } else {
            try launcher.launch(.normalization, "group_norm_partial_kernel<\(t)>", grid: (chunks, b, 1), block: 256,
                                [.pointer(x), .pointer(partial), .int(hw), .i32(c), .i32(rowsPerChunk)])
        }
        try launcher.launch(.normalization, "group_norm_finalize_kernel", grid: (b * groups, 1, 1), block: 256,
                            [.pointer(partial), .pointer(stats), .int(hw), .i32(c), .i32(groups), .i32(chunks), .i32(rowsPerChunk),
                             .float(epsilon)])
        let perBatch = vectorised ? hw * c / 8 : hw * c
        let blocks = max(1, min((perBatch + 255) / 256, launcher.multiprocessors * 32 / max(1, min(b, 32))))
        if vectorised {
            try launcher.launch(.fast, "group_norm_apply_h8", grid: (blocks, b, 1), block: 256,
                                [.pointer(x), .pointer(y), .pointer(stats), .pointer(weight), .pointer(bias),
                                 .int(hw), .i32(c), .i32(groups), .i32(silu ? 1 : 0)])
            return
        }
        try launcher.launch(.normalization, "group_norm_apply_kernel<\(t)>", grid: (blocks, b, 1), block: 256,
                            [.pointer(x), .pointer(y), .pointer(stats), .pointer(weight), .i32(weightType), .pointer(bias), .i32(biasType),
                             .int(hw), .i32(c), .i32(groups), .i32(silu ? 1 : 0)])
    }

    /// Layer norm over the last axis (c) of `rows` rows; one warp per row, 8 rows per block.
    func layerNorm(_ x: CUdeviceptr, _ y: CUdeviceptr, weight: CUdeviceptr, weightType: Int, bias: CUdeviceptr, biasType: Int,
                   rows: Int, channels c: Int, epsilon: Float, type t: Int) throws {
        if fast && t == KernelCalls.f16 && weightType == KernelCalls.f16 && biasType == KernelCalls.f16 && c > 0 && c % 8 == 0 && c <= 2048 {
            try launcher.launch(.fast, "layer_norm_h8", grid: ((rows + 7) / 8, 1, 1), block: 256,
                                [.pointer(x), .pointer(y), .pointer(weight), .pointer(bias), .int(rows), .i32(c), .float(epsilon)])
            return
        }
        try launcher.launch(.normalization, "layer_norm_kernel<\(t)>", grid: ((rows + 7) / 8, 1, 1), block: 256,
                            [.pointer(x), .pointer(y), .pointer(weight), .i32(weightType), .pointer(bias), .i32(biasType),
                             .int(rows), .i32(c), .float(epsilon)])
    }

    /// Softmax over rows of n (y may be x); with `causal`, row r is query `queryOffset + r % nq`.
    func softmax(_ x: CUdeviceptr, _ y: CUdeviceptr, rows: Int, n: Int, nq: Int, queryOffset: Int, causal: Bool, type t: Int) throws {
        try launcher.launch(.normalization, "softmax_kernel<\(t)>", grid: ((rows + 7) / 8, 1, 1), block: 256,
                            [.pointer(x), .pointer(y), .int(rows), .i32(n), .i32(nq), .i32(queryOffset), .i32(causal ? 1 : 0)])
    }

    /// Flash attention on fp16 Q `[b, nq, heads·d]`, K and V `[b, nk, heads·d]` into O like Q, when a
    /// kernel covers the head dim (64: the double-buffered kernel unless `fastAttention` is off;
    /// ≤ 128: the first flash kernel). False: no kernel for it (the caller materialises the scores).
    func flashAttention(_ q: CUdeviceptr, _ k: CUdeviceptr, _ v: CUdeviceptr, _ o: CUdeviceptr, b: Int, nq: Int, nk: Int, heads: Int,
                        headDim d: Int, scale: Float, causal: Bool) throws -> Bool {
        let flops = 4 * Double(b * heads) * Double(nq) * Double(nk) * Double(d)
        let scaleLog2 = scale * 1.4426950408889634
        if fastAttention && d == 64 {
            let warps = nq >= 1024 ? attentionWarps : 4
            let rows = attentionRowsPerWarp == 32 ? 32 : 16
            let name = "flash_attention_fast_d64" + (rows == 32 ? "_m32" : "") + (warps == 8 ? "_w8" : "")
            try launcher.launch(.fast, name, grid: (nq.ceilDiv(rows * warps), heads, b), block: 32 * warps, sharedBytes: 0, flops: flops,
                                [.pointer(q), .pointer(k), .pointer(v), .pointer(o), .i32(nq), .i32(nk), .i32(heads),
                                 .float(scaleLog2), .i32(causal ? 1 : 0)])
            return true
        }
        guard d <= 128 else { return false }
        try launcher.launch(.attention, d <= 64 ? "flash_attention_d64" : "flash_attention_d128",
                            grid: ((nq + 63) / 64, heads, b), block: 128, sharedBytes: 0, flops: flops,
                            [.pointer(q), .pointer(k), .pointer(v), .pointer(o), .i32(nq), .i32(nk), .i32(heads), .i32(d),
                             .float(scaleLog2), .i32(causal ? 1 : 0), .i32(d % 8 == 0 ? 1 : 0)])
        return true
    }

    /// Rows [r0, r0 + rows) of the im2col matrix of NHWC x (channels in units of `unit` bytes, `cu` per pixel).
    func im2col(_ x: CUdeviceptr, _ col: CUdeviceptr, unit u: Int, height: Int, width: Int, channelUnits cu: Int, kernelHeight: Int,
                kernelWidth: Int, stride: Int, padding: Int, outHeight: Int, outWidth: Int, firstRow r0: Int, rows: Int) throws {
        try launcher.launchElementwise(
            .convolution, "im2col_kernel<\(u)>", count: rows * kernelHeight * kernelWidth * cu,
            [.pointer(x), .pointer(col), .i32(height), .i32(width), .int(cu), .i32(kernelHeight), .i32(kernelWidth), .i32(stride),
             .i32(padding), .i32(outHeight), .i32(outWidth), .int(r0), .int(rows)])
    }
}
