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
    /// norm + SiLU) is applied as the input is staged. Returns false (having written nothing) when
    /// it declines (no transformed weight, AMX not in use, too few tiles, the option off); the
    /// caller then runs the implicit GEMM.
    func winogradBF16Conv2d(_ x: UnsafePointer<Float>, batch: Int, height: Int, width: Int, weight w: PackedWeight,
                            bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?, prologue: ConvPrologue?,
                            output: UnsafeMutablePointer<Float>) -> Bool {
        guard options.winograd, let transformed = w.winogradF23, ssd_amx_active() != 0 else { return false }
        let cin = w.inChannels, n = w.n, nr = Int(SSD_NR)
        let tilesX = (width + 1) / 2, tilesY = (height + 1) / 2
        let tiles = batch * tilesX * tilesY
        guard tiles >= options.winogradBF16MinimumTiles else { return false }
        let blockTiles = Self.winogradBF16BlockTiles
        let blocks = (tiles + blockTiles - 1) / blockTiles
        // V[ξ]: bf16 rows (the kernel may read up to a multiple of 32 rows); M[ξ]: fp32 products.
        let lda = Self.amxRowStride(depth: cin)
        let vxs = (blockTiles + 32) * lda, mxs = blockTiles * n
        let uXi = w.panels * cin * nr
        let u = UnsafeRawPointer(transformed.pointer).assumingMemoryBound(to: UInt16.self)
        let stageFloats = 4 * (2 * tilesX + 2) * cin
        let next = Atomic<Int>(0)
        parallelFor(min(options.threads, blocks)) { _ in
            let bytes = stageFloats * 4 + 16 * vxs * 2 + 16 * mxs * 4 + 64
            let scratch = winogradWorkspace.take(bytes + 24 * cin + 64)
            defer { winogradWorkspace.give(scratch) }
            let stage = scratch.pointer.assumingMemoryBound(to: Float.self)
            let m = stage + stageFloats
            let v = UnsafeMutableRawPointer(m + 16 * mxs).alignedUp(toMultipleOf: 64).assumingMemoryBound(to: UInt16.self)
            // Only used should the level drop below AMX meanwhile (tests switch it process-wide).
            let gemmScratch = UnsafeMutableRawPointer(v + 16 * vxs)
            while true {
                let block = next.wrappingAdd(1, ordering: .relaxed).oldValue
                if block >= blocks { break }
                let t0 = block * blockTiles, t1 = min(tiles, t0 + blockTiles)
                // Input transform, one run of tiles along a tile row at a time.
                var t = t0
                while t < t1 {
                    let b = t / (tilesX * tilesY), rem = t % (tilesX * tilesY)
                    let ty = rem / tilesX, tx0 = rem % tilesX
                    let count = min(t1 - t, tilesX - tx0)
                    stageWinogradRows(x, image: b, height: height, width: width, cin: cin, firstRow: 2 * ty - 1, rows: 4,
                                      firstPixel: 2 * tx0 - 1, pixels: 2 * count + 2, prologue: prologue, into: stage)
                    ssd_wino23_input_bf16(stage, (2 * count + 2) * cin, cin, count, v + (t - t0) * lda, lda, vxs)
                    t += count
                }
                // M[ξ] = V[ξ] · U[ξ].
                for xi in 0..<16 {
                    var args = ssd_gemm_args(
                        m: t1 - t0, n: n, k: cin, a_rows: nil, a_offset: 0, b: UnsafeRawPointer(u + xi * uXi),
                        b_panel_stride: cin * nr, c: m + xi * mxs, ldc: n, alpha: 1, accumulate: 0,
                        bias: nil, residual: nil, ldr: 0, scratch: gemmScratch)
                    ssd_bf16gemm_bf16a(v + xi * vxs, lda, &args)
                }
                // Output transform with bias and residual.
                for t in t0..<t1 {
                    let b = t / (tilesX * tilesY), rem = t % (tilesX * tilesY)
                    let ty = rem / tilesX, tx = rem % tilesX
                    let offset = ((b * height + 2 * ty) * width + 2 * tx) * n
                    ssd_wino23_output(m + (t - t0) * n, mxs, n, bias, residual.map { $0 + offset }, output + offset,
                                      width * n, n, Int32(min(2, height - 2 * ty)), Int32(min(2, width - 2 * tx)))
                }
            }
        }
        return true
    }
}
