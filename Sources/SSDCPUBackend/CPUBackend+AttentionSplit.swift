import CSSDKernels
import SSDTensor

extension CPUBackend {
    /// Query rows per split attention task (whole 32-row blocks of the AMX kernel).
    static let attentionQueryBlockSplit = 64

    /// Flash attention for fp32 matmul precision `.high` on AMX: K and V packed once per head into
    /// split bf16 k-pair panels (hi + lo), each query block split once, the scores Q·Kᵀ and the
    /// products P·V on the bf16×3 GEMM (`ssd_bf16x3gemm_bf16a`, ~1e-5 relative); the online softmax
    /// and the output accumulator stay fp32, P is split after it. Same semantics as `attention`
    /// (diffusers `AttnProcessor2_0`); `y` is `[b, nq, heads · d]`.
    func attentionSplit(q qp: UnsafePointer<Float>, k kp: UnsafePointer<Float>, v vp: UnsafePointer<Float>,
                        into y: UnsafeMutablePointer<Float>, batch b: Int, queries nq: Int, keys nk: Int,
                        heads: Int, headWidth d: Int, scale: Float, causal: Bool) {
        let width = heads * d, nr = Int(SSD_NR), align = Int(SSD_BF16_KALIGN)
        let dPad = (d + align - 1) / align * align, nkPad = (nk + align - 1) / align * align
        let kPanels = (nk + nr - 1) / nr, vPanels = (d + nr - 1) / nr
        let kPanelStride = 2 * dPad * nr, vPanelStride = 2 * nkPad * nr
        let kSize = kPanels * kPanelStride, vSize = vPanels * vPanelStride
        let pairs = b * heads
        // Kᵀ and V of every (batch, head), split pairs: fp32 panels first, then split.
        let packedBytes = pairs * (kSize + vSize) * 2
        let keptPacked = ssd_thread_scratch(1, packedBytes)
        let packedRaw = keptPacked ?? counter.obtain(packedBytes)
        defer { if keptPacked == nil { counter.release(packedRaw, packedBytes) } }
        let packed = packedRaw.assumingMemoryBound(to: UInt16.self)
        parallelFor(pairs * 2) { t in
            let pair = t / 2, bi = pair / heads, h = pair % heads
            let base = bi * nk * width + h * d
            let dst = packed + pair * (kSize + vSize)
            if t % 2 == 0 {
                let f = PackedWeight(operand: kp + base, k: d, n: nk, transposed: true, ld: width, counter: counter)
                for p in 0..<kPanels { ssd_pack_bf16x2_panel(f.buffer.floats + p * f.panelStride, d, dPad, dst + p * kPanelStride) }
            } else {
                let f = PackedWeight(operand: vp + base, k: nk, n: d, transposed: false, ld: width, counter: counter)
                for p in 0..<vPanels {
                    ssd_pack_bf16x2_panel(f.buffer.floats + p * f.panelStride, nk, nkPad, dst + kSize + p * vPanelStride)
                }
            }
        }
        let bq = Self.attentionQueryBlockSplit, bk = Self.attentionKeyBlock
        let ldq = Self.amxRowStride(depth: 2 * dPad), ldp = Self.amxRowStride(depth: 2 * bk)
        let qBlocks = (nq + bq - 1) / bq
        parallelChunks(pairs * qBlocks, minimumChunk: 1) { range in
            let s = UnsafeMutablePointer<Float>.allocate(capacity: bq * bk)
            let o = UnsafeMutablePointer<Float>.allocate(capacity: bq * d)
            let m = UnsafeMutablePointer<Float>.allocate(capacity: bq), l = UnsafeMutablePointer<Float>.allocate(capacity: bq)
            let qRows = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: bq)
            let sRows = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: bq)
            // Split Q block and P block (all bq rows readable by the kernel).
            let qs = UnsafeMutableRawPointer.allocate(byteCount: bq * ldq * 2, alignment: 64).assumingMemoryBound(to: UInt16.self)
            let ps = UnsafeMutableRawPointer.allocate(byteCount: bq * ldp * 2, alignment: 64).assumingMemoryBound(to: UInt16.self)
            defer {
                s.deallocate(); o.deallocate(); m.deallocate(); l.deallocate(); qRows.deallocate(); sRows.deallocate()
                qs.deallocate(); ps.deallocate()
            }
            for i in 0..<bq { sRows[i] = UnsafePointer(s + i * bk) }
            for task in range {
                let pair = task / qBlocks, q0 = (task % qBlocks) * bq
                let bi = pair / heads, h = pair % heads
                let rows = min(bq, nq - q0)
                let kw = UnsafeRawPointer(packed + pair * (kSize + vSize))
                let vw = UnsafeRawPointer(packed + pair * (kSize + vSize) + kSize)
                for i in 0..<rows { qRows[i] = qp + (bi * nq + q0 + i) * width + h * d }
                ssd_rows_to_bf16x2(UnsafePointer(qRows), rows, d, dPad, qs, ldq)
                o.update(repeating: 0, count: rows * d)
                m.update(repeating: -.infinity, count: rows)
                l.update(repeating: 0, count: rows)
                let keyEnd = causal ? min(nk, q0 + rows) : nk
                var k0 = 0
                while k0 < keyEnd {
                    let cols = min(bk, keyEnd - k0), colsPad = (cols + align - 1) / align * align
                    var sArgs = ssd_gemm_args(
                        m: rows, n: cols, k: 2 * dPad, a_rows: nil, a_offset: 0, b: kw + (k0 / nr) * kPanelStride * 2,
                        b_panel_stride: kPanelStride, c: s, ldc: bk, alpha: scale, accumulate: 0,
                        bias: nil, residual: nil, ldr: 0, scratch: nil)
                    ssd_bf16x3gemm_bf16a(qs, ldq, &sArgs)
                    ssd_online_softmax(s, rows, cols, cols, bk, m, l, o, d, d, causal ? 1 : 0, q0, k0)
                    ssd_rows_to_bf16x2(UnsafePointer(sRows), rows, cols, colsPad, ps, ldp)
                    // Keys k0… start a stored chunk (k0 is a multiple of bk).
                    var pvArgs = ssd_gemm_args(
                        m: rows, n: d, k: 2 * colsPad, a_rows: nil, a_offset: 0, b: vw + 2 * k0 * nr * 2,
                        b_panel_stride: vPanelStride, c: o, ldc: d, alpha: 1, accumulate: 1,
                        bias: nil, residual: nil, ldr: 0, scratch: nil)
                    ssd_bf16x3gemm_bf16a(ps, ldp, &pvArgs)
                    k0 += cols
                }
                for i in 0..<rows {
                    let inv = l[i] > 0 ? 1 / l[i] : 0
                    ssd_affine(o + i * d, y + (bi * nq + q0 + i) * width + h * d, d, inv, 0)
                }
            }
        }
    }
}
