import CSSDKernels
import SSDTensor

extension CPUBackend {
    /// Query rows per bf16 attention task (a multiple of the AMX kernel's 32-row blocks).
    static let attentionQueryBlockBF16 = 64

    /// Flash attention with bf16 operands (`bf16Compute`): K and V are packed once per head into
    /// bf16 k-pair panels, each block of queries is rounded to bf16 once, and the scores
    /// Q·Kᵀ and the products P·V run on the bf16 GEMM (AMX tiles, else `vdpbf16ps` or portable)
    /// with fp32 accumulation; the online softmax and the output accumulator stay fp32.
    /// Same semantics as `attention` (diffusers `AttnProcessor2_0`); `y` is `[b, nq, heads · d]`.
    func attentionBF16(q qp: UnsafePointer<Float>, k kp: UnsafePointer<Float>, v vp: UnsafePointer<Float>,
                       into y: UnsafeMutablePointer<Float>, batch b: Int, queries nq: Int, keys nk: Int,
                       heads: Int, headWidth d: Int, scale: Float, causal: Bool) {
        let width = heads * d, nr = Int(SSD_NR), align = Int(SSD_BF16_KALIGN)
        let dPad = (d + align - 1) / align * align, nkPad = (nk + align - 1) / align * align
        let kPanels = (nk + nr - 1) / nr, vPanels = (d + nr - 1) / nr
        let kPanelStride = dPad * nr, vPanelStride = nkPad * nr
        let kSize = kPanels * kPanelStride, vSize = vPanels * vPanelStride
        let pairs = b * heads
        // Kᵀ and V of every (batch, head), bf16 pairs.
        let packedBytes = pairs * (kSize + vSize) * 2
        // The calling thread's kept scratch (slot 1; the workers only read it).
        let keptPacked = ssd_thread_scratch(1, packedBytes)
        let packedRaw = keptPacked ?? counter.obtain(packedBytes)
        defer { if keptPacked == nil { counter.release(packedRaw, packedBytes) } }
        let packed = packedRaw.assumingMemoryBound(to: UInt16.self)
        parallelFor(pairs * 2) { t in
            let pair = t / 2, bi = pair / heads, h = pair % heads
            let base = bi * nk * width + h * d
            if t % 2 == 0 {
                ssd_pack_bf16_pairs(kp + base, width, 1, d, nk, dPad, packed + pair * (kSize + vSize))
            } else {
                ssd_pack_bf16_pairs(vp + base, width, 0, nk, d, nkPad, packed + pair * (kSize + vSize) + kSize)
            }
        }
        let bq = Self.attentionQueryBlockBF16, bk = Self.attentionKeyBlock
        let qBlocks = (nq + bq - 1) / bq
        parallelChunks(pairs * qBlocks, minimumChunk: 1) { range in
            let s = UnsafeMutablePointer<Float>.allocate(capacity: bq * bk)
            let o = UnsafeMutablePointer<Float>.allocate(capacity: bq * d)
            let m = UnsafeMutablePointer<Float>.allocate(capacity: bq), l = UnsafeMutablePointer<Float>.allocate(capacity: bq)
            let qRows = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: bq)
            // bf16 Q block [bq × dPad] and P block [bq × bk]; scratch for the non-AMX kernels.
            let qb = UnsafeMutableRawPointer.allocate(byteCount: bq * dPad * 2, alignment: 64).assumingMemoryBound(to: UInt16.self)
            let pb = UnsafeMutableRawPointer.allocate(byteCount: bq * bk * 2, alignment: 64).assumingMemoryBound(to: UInt16.self)
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: 24 * max(dPad, bk) + 64, alignment: 64)
            defer {
                s.deallocate(); o.deallocate(); m.deallocate(); l.deallocate(); qRows.deallocate()
                qb.deallocate(); pb.deallocate(); scratch.deallocate()
            }
            for task in range {
                let pair = task / qBlocks, q0 = (task % qBlocks) * bq
                let bi = pair / heads, h = pair % heads
                let rows = min(bq, nq - q0)
                let kw = UnsafeRawPointer(packed + pair * (kSize + vSize)), vw = UnsafeRawPointer(packed + pair * (kSize + vSize) + kSize)
                for i in 0..<rows { qRows[i] = qp + (bi * nq + q0 + i) * width + h * d }
                ssd_rows_to_bf16(UnsafePointer(qRows), rows, d, dPad, qb, dPad)
                o.update(repeating: 0, count: rows * d)
                m.update(repeating: -.infinity, count: rows)
                l.update(repeating: 0, count: rows)
                let keyEnd = causal ? min(nk, q0 + rows) : nk
                var k0 = 0
                while k0 < keyEnd {
                    let cols = min(bk, keyEnd - k0), colsPad = (cols + align - 1) / align * align
                    // Unscaled scores (so that whole AMX blocks store straight from the tiles);
                    // the softmax applies the scale and writes P as bf16.
                    var sArgs = ssd_gemm_args(
                        m: rows, n: cols, k: dPad, a_rows: nil, a_offset: 0, b: kw + (k0 / nr) * kPanelStride * 2,
                        b_panel_stride: kPanelStride, c: s, ldc: bk, alpha: 1, accumulate: 0,
                        bias: nil, residual: nil, ldr: 0, scratch: scratch)
                    ssd_bf16gemm_bf16a(qb, dPad, &sArgs)
                    ssd_online_softmax_bf16(s, rows, cols, colsPad, bk, scale, m, l, o, d, d, causal ? 1 : 0, q0, k0, pb, bk)
                    var pvArgs = ssd_gemm_args(
                        m: rows, n: d, k: colsPad, a_rows: nil, a_offset: 0, b: vw + k0 * nr * 2,
                        b_panel_stride: vPanelStride, c: o, ldc: d, alpha: 1, accumulate: 1,
                        bias: nil, residual: nil, ldr: 0, scratch: scratch)
                    ssd_bf16gemm_bf16a(pb, bk, &pvArgs)
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
