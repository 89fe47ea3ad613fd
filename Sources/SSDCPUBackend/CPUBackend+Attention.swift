import CSSDKernels
import SSDTensor

extension CPUBackend {
    /// Query rows per attention task and keys per online-softmax step.
    static let attentionQueryBlock = 48
    static let attentionKeyBlock = 256

    /// Block sizes for a head width: narrow heads (the UNet's 64) use 48 queries × 256 keys; wide
    /// ones (the VAE's single 512-wide head) take more queries per task, so each pass over the
    /// packed K and V (32 MiB each at 16,384 tokens, far beyond L2) serves 4× the rows, and fewer
    /// keys per step, so the K/V panels, scores and output block stay within L2 (16,384 tokens:
    /// ~10–25 % faster than 48 × 256 in noisy runs of `ssd-bench attention`).
    static func attentionBlocks(headWidth d: Int) -> (queries: Int, keys: Int) {
        return d >= 256 ? (192, 128) : (attentionQueryBlock, attentionKeyBlock)
    }

    /// Flash-style attention (diffusers `AttnProcessor2_0`'s `scaled_dot_product_attention`):
    /// per head, K and V are packed once into GEMM panels; each block of queries walks the keys a
    /// block at a time (`attentionBlocks`) with an online softmax, so no N×N score matrix is ever stored.
    /// With `bf16Compute` the two products take bf16 operands, with fp32 matmul precision `.high` on
    /// AMX split operands (`attentionAMX`).
    public func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool) throws -> Tensor {
        try attention(query: query, key: key, value: value, heads: heads, scale: scale, causal: causal, bf16: options.bf16Compute)
    }

    /// A `force_upcast` VAE's attention stays fp32 with `bf16Compute` (as its weights' dot products
    /// do, `prepareWeight(_:role:component:)`): diffusers runs that VAE in fp32 in a bf16 pipeline.
    public func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool,
                          component: ModelComponent) throws -> Tensor {
        try attention(query: query, key: key, value: value, heads: heads, scale: scale, causal: causal,
                      bf16: options.bf16Compute && component != .vae(forceUpcast: true))
    }

    private func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool,
                           bf16: Bool) throws -> Tensor {
        let op = "attention"
        let (b, nq, width) = try attentionShape(query: query, key: key, value: value, heads: heads)
        let qp = try query.cpuFloats(op), kp = try key.cpuFloats(op), vp = try value.cpuFloats(op)
        let nk = key.shape[1], d = width / heads
        let out = allocate([b, nq, width])
        let y = try out.cpuBuffer(op).floats
        if nq == 0 { return out }
        if nk == 0 {
            y.update(repeating: 0, count: out.count)
            return out
        }
        if bf16 {
            attentionAMX(q: qp, k: kp, v: vp, into: y, batch: b, queries: nq, keys: nk, heads: heads, headWidth: d,
                         scale: scale, causal: causal, split: false)
            return out
        }
        if options.float32MatmulPrecision == .high, ssd_amx_active() != 0 {
            attentionAMX(q: qp, k: kp, v: vp, into: y, batch: b, queries: nq, keys: nk, heads: heads, headWidth: d,
                         scale: scale, causal: causal, split: true)
            return out
        }
        // Packed K (as Kᵀ: depth d, n = keys) and V (depth = keys, n = d) per (batch, head).
        let pairs = b * heads
        var packedK = [PackedWeight?](repeating: nil, count: pairs), packedV = packedK
        packedK.withUnsafeMutableBufferPointer { pk in
            packedV.withUnsafeMutableBufferPointer { pv in
                parallelFor(pairs * 2) { t in
                    let pair = t / 2, bi = pair / heads, h = pair % heads
                    let base = bi * nk * width + h * d
                    if t % 2 == 0 {
                        pk[pair] = PackedWeight(operand: kp + base, k: d, n: nk, transposed: true, ld: width, counter: counter)
                    } else {
                        pv[pair] = PackedWeight(operand: vp + base, k: nk, n: d, transposed: false, ld: width, counter: counter)
                    }
                }
            }
        }
        let (bq, bk) = Self.attentionBlocks(headWidth: d)
        let qBlocks = (nq + bq - 1) / bq
        let tasks = pairs * qBlocks
        parallelChunks(tasks, minimumChunk: 1) { range in
            let s = UnsafeMutablePointer<Float>.allocate(capacity: bq * bk)
            let o = UnsafeMutablePointer<Float>.allocate(capacity: bq * d)
            let m = UnsafeMutablePointer<Float>.allocate(capacity: bq), l = UnsafeMutablePointer<Float>.allocate(capacity: bq)
            let qRows = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: bq)
            let sRows = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: bq)
            defer { s.deallocate(); o.deallocate(); m.deallocate(); l.deallocate(); qRows.deallocate(); sRows.deallocate() }
            for i in 0..<bq { sRows[i] = UnsafePointer(s + i * bk) }
            for task in range {
                let pair = task / qBlocks, q0 = (task % qBlocks) * bq
                let bi = pair / heads, h = pair % heads
                let rows = min(bq, nq - q0)
                guard let kw = packedK[pair], let vw = packedV[pair] else { continue }
                for i in 0..<rows { qRows[i] = qp + (bi * nq + q0 + i) * width + h * d }
                ssd_zero_floats(o, rows * d)
                m.update(repeating: -.infinity, count: rows)
                l.update(repeating: 0, count: rows)
                let keyEnd = causal ? min(nk, q0 + rows) : nk
                var k0 = 0
                while k0 < keyEnd {
                    let cols = min(bk, keyEnd - k0)
                    var sArgs = ssd_gemm_args(
                        m: rows, n: cols, k: d, a_rows: UnsafePointer(qRows), a_offset: 0,
                        b: UnsafeRawPointer(kw.buffer.floats + (k0 / Int(SSD_NR)) * kw.panelStride),
                        b_panel_stride: kw.panelStride, c: s, ldc: bk, alpha: scale, accumulate: 0,
                        bias: nil, residual: nil, ldr: 0, scratch: nil)
                    ssd_sgemm(&sArgs)
                    ssd_online_softmax(s, rows, cols, cols, bk, m, l, o, d, d, causal ? 1 : 0, q0, k0)
                    var pvArgs = ssd_gemm_args(
                        m: rows, n: d, k: cols, a_rows: UnsafePointer(sRows), a_offset: 0,
                        b: UnsafeRawPointer(vw.buffer.floats + k0 * Int(SSD_NR)),
                        b_panel_stride: vw.panelStride, c: o, ldc: d, alpha: 1, accumulate: 1,
                        bias: nil, residual: nil, ldr: 0, scratch: nil)
                    ssd_sgemm(&pvArgs)
                    k0 += cols
                }
                ssd_attention_normalize(o, d, l, rows, d, y + (bi * nq + q0) * width + h * d, width)
            }
        }
        return out
    }
}
