import CSSDKernels
import SSDTensor

extension CPUBackend {
    /// Query rows per bf16 or split attention task (whole 32-row blocks of the AMX kernel).
    static let attentionQueryBlockBF16 = 64

    /// Flash attention on the bf16 GEMM (diffusers `AttnProcessor2_0`; `y` is `[b, nq, heads · d]`):
    /// K and V are packed once per head into bf16 k-pair panels, each block of queries is converted
    /// once, and the scores Q·Kᵀ and the products P·V run on the AMX tiles (else `vdpbf16ps` or
    /// portable kernels) with fp32 accumulation; the online softmax and the output accumulator stay fp32.
    /// - `split == false` (`bf16Compute`): bf16 operands; the softmax scales the raw scores and
    ///   writes P as bf16 itself.
    /// - `split == true` (fp32 matmul precision `.high` on AMX): every operand split in bf16 hi + lo
    ///   and both products on the bf16×3 GEMM (`ssd_bf16x3gemm_bf16a`, ~1e-5 relative); the scores
    ///   come scaled, and P is split after the fp32 softmax.
    func attentionAMX(q qp: UnsafePointer<Float>, k kp: UnsafePointer<Float>, v vp: UnsafePointer<Float>,
                      into y: UnsafeMutablePointer<Float>, batch b: Int, queries nq: Int, keys nk: Int,
                      heads: Int, headWidth d: Int, scale: Float, causal: Bool, split: Bool) {
        let width = heads * d, nr = Int(SSD_NR), align = Int(SSD_BF16_KALIGN)
        let dPad = (d + align - 1) / align * align, nkPad = (nk + align - 1) / align * align
        // Stored values per real depth: 2 for split operands.
        let factor = split ? 2 : 1
        let kPanels = (nk + nr - 1) / nr, vPanels = (d + nr - 1) / nr
        let kPanelStride = factor * dPad * nr, vPanelStride = factor * nkPad * nr
        let kSize = kPanels * kPanelStride, vSize = vPanels * vPanelStride
        let pairs = b * heads
        // Kᵀ and V of every (batch, head).
        let packedBytes = pairs * (kSize + vSize) * 2
        // The calling thread's kept scratch (slot 1; the workers only read it).
        let keptPacked = ssd_thread_scratch(1, packedBytes)
        let packedRaw = keptPacked ?? counter.obtain(packedBytes)
        defer { if keptPacked == nil { counter.release(packedRaw, packedBytes) } }
        let packed = packedRaw.assumingMemoryBound(to: UInt16.self)
        parallelFor(pairs * 2) { t in
            let pair = t / 2, bi = pair / heads, h = pair % heads
            let base = bi * nk * width + h * d
            let dst = packed + pair * (kSize + vSize)
            switch (t % 2 == 0, split) {
            case (true, false): ssd_pack_bf16_pairs(kp + base, width, 1, d, nk, dPad, dst)
            case (false, false): ssd_pack_bf16_pairs(vp + base, width, 0, nk, d, nkPad, dst + kSize)
            case (true, true):
                // fp32 panels first, then split.
                let f = PackedWeight(operand: kp + base, k: d, n: nk, transposed: true, ld: width, counter: counter)
                for p in 0..<kPanels { ssd_pack_bf16x2_panel(f.buffer.floats + p * f.panelStride, d, dPad, dst + p * kPanelStride) }
            case (false, true):
                let f = PackedWeight(operand: vp + base, k: nk, n: d, transposed: false, ld: width, counter: counter)
                for p in 0..<vPanels {
                    ssd_pack_bf16x2_panel(f.buffer.floats + p * f.panelStride, nk, nkPad, dst + kSize + p * vPanelStride)
                }
            }
        }
        let bq = Self.attentionQueryBlockBF16, bk = Self.attentionKeyBlock
        // Row strides of the converted Q and P blocks (split: padded off multiples of 512 bytes).
        let ldq = split ? Self.amxRowStride(depth: 2 * dPad) : dPad, ldp = split ? Self.amxRowStride(depth: 2 * bk) : bk
        let qBlocks = (nq + bq - 1) / bq
        parallelChunks(pairs * qBlocks, minimumChunk: 1) { range in
            let s = UnsafeMutablePointer<Float>.allocate(capacity: bq * bk)
            let o = UnsafeMutablePointer<Float>.allocate(capacity: bq * d)
            let m = UnsafeMutablePointer<Float>.allocate(capacity: bq), l = UnsafeMutablePointer<Float>.allocate(capacity: bq)
            let qRows = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: bq)
            let sRows = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: bq)
            // Converted Q block and P block (all bq rows readable by the kernel); scratch for the
            // non-AMX bf16 kernels.
            let qb = UnsafeMutableRawPointer.allocate(byteCount: bq * ldq * 2, alignment: 64).assumingMemoryBound(to: UInt16.self)
            let pb = UnsafeMutableRawPointer.allocate(byteCount: bq * ldp * 2, alignment: 64).assumingMemoryBound(to: UInt16.self)
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: 24 * max(dPad, bk) + 64, alignment: 64)
            defer {
                s.deallocate(); o.deallocate(); m.deallocate(); l.deallocate(); qRows.deallocate(); sRows.deallocate()
                qb.deallocate(); pb.deallocate(); scratch.deallocate()
            }
            for i in 0..<bq { sRows[i] = UnsafePointer(s + i * bk) }
            func multiply(_ a: UnsafePointer<UInt16>, _ lda: Int, _ args: inout ssd_gemm_args) {
                if split { ssd_bf16x3gemm_bf16a(a, lda, &args) } else { ssd_bf16gemm_bf16a(a, lda, &args) }
            }
            for task in range {
                let pair = task / qBlocks, q0 = (task % qBlocks) * bq
                let bi = pair / heads, h = pair % heads
                let rows = min(bq, nq - q0)
                let kw = UnsafeRawPointer(packed + pair * (kSize + vSize)), vw = UnsafeRawPointer(packed + pair * (kSize + vSize) + kSize)
                for i in 0..<rows { qRows[i] = qp + (bi * nq + q0 + i) * width + h * d }
                if split { ssd_rows_to_bf16x2(UnsafePointer(qRows), rows, d, dPad, qb, ldq) }
                else { ssd_rows_to_bf16(UnsafePointer(qRows), rows, d, dPad, qb, ldq) }
                o.update(repeating: 0, count: rows * d)
                m.update(repeating: -.infinity, count: rows)
                l.update(repeating: 0, count: rows)
                let keyEnd = causal ? min(nk, q0 + rows) : nk
                var k0 = 0
                while k0 < keyEnd {
                    let cols = min(bk, keyEnd - k0), colsPad = (cols + align - 1) / align * align
                    // bf16: unscaled scores (whole AMX blocks store straight from the tiles).
                    var sArgs = ssd_gemm_args(
                        m: rows, n: cols, k: factor * dPad, a_rows: nil, a_offset: 0, b: kw + (k0 / nr) * kPanelStride * 2,
                        b_panel_stride: kPanelStride, c: s, ldc: bk, alpha: split ? scale : 1, accumulate: 0,
                        bias: nil, residual: nil, ldr: 0, scratch: scratch)
                    multiply(qb, ldq, &sArgs)
                    if split {
                        ssd_online_softmax(s, rows, cols, cols, bk, m, l, o, d, d, causal ? 1 : 0, q0, k0)
                        ssd_rows_to_bf16x2(UnsafePointer(sRows), rows, cols, colsPad, pb, ldp)
                    } else {
                        ssd_online_softmax_bf16(s, rows, cols, colsPad, bk, scale, m, l, o, d, d, causal ? 1 : 0, q0, k0, pb, ldp)
                    }
                    // Keys k0… start a stored chunk (k0 is a multiple of bk).
                    var pvArgs = ssd_gemm_args(
                        m: rows, n: d, k: factor * colsPad, a_rows: nil, a_offset: 0, b: vw + factor * k0 * nr * 2,
                        b_panel_stride: vPanelStride, c: o, ldc: d, alpha: 1, accumulate: 1,
                        bias: nil, residual: nil, ldr: 0, scratch: scratch)
                    multiply(pb, ldp, &pvArgs)
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
