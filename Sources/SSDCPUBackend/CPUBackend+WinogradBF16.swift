import CSSDKernels
import SSDTensor
import Synchronization

extension CPUBackend {
    /// Output tiles per block of `winogradBF16Conv2d`: the rows of its 16 tile GEMMs.
    static let winogradBF16BlockTiles = 128

    /// 3×3, stride 1, padding 1 convolution on the AMX tiles by Winograd F(2×2, 3×3) (diffusers
    /// `nn.Conv2d(…, kernel_size=3, padding=1)` on NHWC, `bf16Compute`): per block of output tiles,
    /// the input tiles transformed straight into bf16 rows, 16 GEMMs `[tiles × Cin] · U[ξ]` with the
    /// transformed weights prepared at load (`PackedWeight.winogradF23`), and the output transform
    /// with bias and residual: 4/9 of the direct convolution's multiplications. `prologue` (group
    /// norm + SiLU) is applied as the input is staged. With fp32 matmul precision `.high` and fp32
    /// weights (Cin a multiple of 32, Cout of 16) it serves those convolutions instead of fp32
    /// F(4×4), with U transformed and split per call and bf16×3 GEMMs. Returns false (having
    /// written nothing) when it declines (no transformed weight and not that case, AMX not in use,
    /// too few tiles, the option off); the caller then runs F(4×4) or the implicit GEMM.
    func winogradBF16Conv2d(_ x: UnsafePointer<Float>, batch: Int, height: Int, width: Int, weight w: PackedWeight,
                            bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?, prologue: ConvPrologue?,
                            output: UnsafeMutablePointer<Float>) -> Bool {
        guard options.winograd, ssd_amx_active() != 0 else { return false }
        let cin = w.inChannels, n = w.n, nr = Int(SSD_NR)
        let tilesX = (width + 1) / 2, tilesY = (height + 1) / 2
        let tiles = batch * tilesX * tilesY
        if let transformed = w.winogradF23 {
            guard tiles >= options.winogradBF16MinimumTiles else { return false }
            let u = UnsafeRawPointer(transformed.pointer).assumingMemoryBound(to: UInt16.self)
            winogradF23(x, batch: batch, height: height, width: width, weight: w, columns: 0..<n, u: u, split: false,
                        bias: bias, residual: residual, prologue: prologue, output: output)
            return true
        }
        // fp32 matmul precision "high": fp32 weights, U transformed and split per call. Rather than
        // F(4×4) with split GEMMs (measured and dropped): faster on the UNet's 32×32 and 16×16 levels
        // (1.5× and 1.1× the fp32 F(4×4) speed against 1.0–1.2× and below 1×; even at 64×64), and
        // about 9e-6 from the direct convolution against F(4×4)'s 5e-5.
        guard options.float32MatmulPrecision == .high, w.layout == .panels(.f32), w.kernelH == 3, w.kernelW == 3,
              cin % 32 == 0, n % 16 == 0, n > 0, tiles >= options.winogradSplitF23MinimumTiles else { return false }
        // Column chunks whose transformed weight (16 · 2·Cin · 64 bf16 a panel) fits the workspace limit.
        let chunkPanels = max(1, options.winogradWeightBytes / (16 * 2 * cin * nr * 2))
        var p0 = 0
        while p0 < w.panels {
            let p1 = min(w.panels, p0 + chunkPanels)
            let columns = (p0 * nr)..<min(n, p1 * nr)
            let uXi = (p1 - p0) * 2 * cin * nr
            let uBuffer = winogradWorkspace.take(16 * uXi * 2)
            let u = uBuffer.pointer.assumingMemoryBound(to: UInt16.self)
            let base = UnsafePointer(w.buffer.floats)
            // Tasks of 64 input channels, so that a few panels spread over the workers.
            let ciChunks = (cin + 63) / 64
            parallelFor((p1 - p0) * ciChunks) { t in
                let p = t / ciChunks, ci0 = (t % ciChunks) * 64, ci1 = min(cin, ci0 + 64)
                ssd_wino23_weight(base + (p0 + p) * w.panelStride, cin, ci0, ci1, 1, u + p * 2 * cin * nr, uXi)
            }
            winogradF23(x, batch: batch, height: height, width: width, weight: w, columns: columns, u: UnsafePointer(u), split: true,
                        bias: bias, residual: residual, prologue: prologue, output: output)
            winogradWorkspace.give(uBuffer)
            p0 = p1
        }
        return true
    }

    /// Output channels `columns` (starting on a panel) of `winogradBF16Conv2d` with U[ξ] at u + ξ·uXi
    /// (panels of these columns only): bf16 rows and GEMMs, or split rows and bf16×3 GEMMs.
    private func winogradF23(_ x: UnsafePointer<Float>, batch: Int, height: Int, width: Int, weight w: PackedWeight,
                             columns: Range<Int>, u: UnsafePointer<UInt16>, split: Bool, bias: UnsafePointer<Float>?,
                             residual: UnsafePointer<Float>?, prologue: ConvPrologue?, output: UnsafeMutablePointer<Float>) {
        let cin = w.inChannels, cout = w.n, nr = Int(SSD_NR), n = columns.count, c0 = columns.lowerBound
        let tilesX = (width + 1) / 2, tilesY = (height + 1) / 2
        let tiles = batch * tilesX * tilesY
        let blockTiles = Self.winogradBF16BlockTiles
        let blocks = (tiles + blockTiles - 1) / blockTiles
        // V[ξ]: bf16 (or split) rows (the kernel may read up to a multiple of 32 rows); M[ξ]: fp32 products.
        let depth = split ? 2 * cin : cin
        let lda = Self.amxRowStride(depth: depth)
        let vxs = (blockTiles + 32) * lda, mxs = blockTiles * n
        let uXi = (n + nr - 1) / nr * depth * nr
        let stageFloats = 4 * (2 * tilesX + 2) * cin
        // Tasks are (block, column split): with fewer than two blocks per worker the columns are split
        // too (the 16×16 level at 512² is a single block), and a worker that takes another split of
        // the block it holds skips the input transform.
        let threads = options.threads, panels = (n + nr - 1) / nr
        let splits = min(panels, max(1, (2 * threads + blocks - 1) / blocks))
        let panelsPerSplit = (panels + splits - 1) / splits
        let tasks = blocks * splits
        let next = Atomic<Int>(0)
        parallelFor(min(threads, tasks)) { _ in
            let bytes = stageFloats * 4 + 16 * vxs * 2 + 16 * mxs * 4 + 64
            let scratch = winogradWorkspace.take(bytes + 24 * depth + 64)
            defer { winogradWorkspace.give(scratch) }
            let stage = scratch.pointer.assumingMemoryBound(to: Float.self)
            let m = stage + stageFloats
            let v = UnsafeMutableRawPointer(m + 16 * mxs).alignedUp(toMultipleOf: 64).assumingMemoryBound(to: UInt16.self)
            // Only used should the level drop below AMX meanwhile (tests switch it process-wide).
            let gemmScratch = UnsafeMutableRawPointer(v + 16 * vxs)
            var held = -1  // the block whose V this worker holds
            while true {
                let task = next.wrappingAdd(1, ordering: .relaxed).oldValue
                if task >= tasks { break }
                let block = task / splits
                let s0 = (task % splits) * panelsPerSplit * nr, s1 = min(n, s0 + panelsPerSplit * nr)
                if s0 >= s1 { continue }
                let t0 = block * blockTiles, t1 = min(tiles, t0 + blockTiles)
                // Input transform, one run of tiles along a tile row at a time.
                var t = held == block ? t1 : t0
                held = block
                while t < t1 {
                    let b = t / (tilesX * tilesY), rem = t % (tilesX * tilesY)
                    let ty = rem / tilesX, tx0 = rem % tilesX
                    let count = min(t1 - t, tilesX - tx0)
                    stageWinogradRows(x, image: b, height: height, width: width, cin: cin, firstRow: 2 * ty - 1, rows: 4,
                                      firstPixel: 2 * tx0 - 1, pixels: 2 * count + 2, prologue: prologue, into: stage)
                    if split {
                        ssd_wino23_input_bf16x2(stage, (2 * count + 2) * cin, cin, count, v + (t - t0) * lda, lda, vxs)
                    } else {
                        ssd_wino23_input_bf16(stage, (2 * count + 2) * cin, cin, count, v + (t - t0) * lda, lda, vxs)
                    }
                    t += count
                }
                // M[ξ] = V[ξ] · U[ξ].
                for xi in 0..<16 {
                    var args = ssd_gemm_args(
                        m: t1 - t0, n: s1 - s0, k: depth, a_rows: nil, a_offset: 0,
                        b: UnsafeRawPointer(u + xi * uXi + (s0 / nr) * depth * nr), b_panel_stride: depth * nr,
                        c: m + xi * mxs + s0, ldc: n, alpha: 1, accumulate: 0,
                        bias: nil, residual: nil, ldr: 0, scratch: gemmScratch)
                    if split { ssd_bf16x3gemm_bf16a(v + xi * vxs, lda, &args) } else { ssd_bf16gemm_bf16a(v + xi * vxs, lda, &args) }
                }
                // Output transform with bias and residual.
                for t in t0..<t1 {
                    let b = t / (tilesX * tilesY), rem = t % (tilesX * tilesY)
                    let ty = rem / tilesX, tx = rem % tilesX
                    let offset = ((b * height + 2 * ty) * width + 2 * tx) * cout + c0 + s0
                    ssd_wino23_output(m + (t - t0) * n + s0, mxs, s1 - s0, bias.map { $0 + c0 + s0 }, residual.map { $0 + offset },
                                      output + offset, width * cout, cout, Int32(min(2, height - 2 * ty)), Int32(min(2, width - 2 * tx)))
                }
            }
        }
    }
}
