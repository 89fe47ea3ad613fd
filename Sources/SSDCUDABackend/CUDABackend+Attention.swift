import CCUDA
import SSDTensor

extension CUDABackend {
    /// Scaled dot-product attention (diffusers `AttnProcessor2_0`, transformers CLIP attention).
    /// fp16 with head dim 64: the double-buffered flash kernel (`KernelSource.fast`) unless
    /// `usesFastAttention` is off; fp16 with head dim ≤ 128: the flash kernel (`KernelSource.attention`); otherwise scores are
    /// materialised in query chunks of at most 256 MiB (batched cuBLASLt products and softmax).
    public func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool) throws -> Tensor {
        let (b, nq, width) = try attentionShape(query: query, key: key, value: value, heads: heads)
        let nk = key.shape[1]
        let d = width / heads
        let y = try empty(query.shape, query.dtype)
        guard y.count > 0 else { return y }
        // cuDNN's fused attention (SSD_CUDA_CUDNN_ATTENTION), where it plans the shape.
        if let graphs = attentionGraphs, key.dtype == query.dtype, value.dtype == query.dtype,
           AttentionGraphEngine.accepts(dtype: query.dtype, headDim: d, causal: causal),
           try graphs.run(q: try pointer(query, "attention"), k: try pointer(key, "attention"), v: try pointer(value, "attention"),
                          o: try pointer(y, "attention"), batch: b, queries: nq, keys: nk, heads: heads, headDim: d, scale: scale,
                          dtype: query.dtype) {
            return y
        }
        if query.dtype == .f16, key.dtype == .f16, value.dtype == .f16,
           try kernels.flashAttention(try pointer(query, "attention"), try pointer(key, "attention"), try pointer(value, "attention"),
                                      try pointer(y, "attention"), b: b, nq: nq, nk: nk, heads: heads, headDim: d, scale: scale,
                                      causal: causal) {
            return y
        }
        return try chunkedAttention(query: query, key: cast(key, query.dtype), value: cast(value, query.dtype),
                                    heads: heads, scale: scale, causal: causal)
    }

    /// The materialised-scores path: [B, N, H·D] → [B·H, N, D], per query chunk S = α·QKᵀ, softmax, S·V.
    func chunkedAttention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool) throws -> Tensor {
        let b = query.shape[0], nq = query.shape[1], nk = key.shape[1], d = query.shape[2] / heads
        let bh = b * heads
        _ = try floatCode(query, "attention")
        func split(_ t: Tensor, _ n: Int) throws -> Tensor {
            try permute(t.reshaped([b, n, heads, d]), [0, 2, 1, 3])
        }
        let q = try split(query, nq), k = try split(key, nk), v = try split(value, nk)
        let out = try empty([b, heads, nq, d], query.dtype)
        let e = query.dtype.byteSize
        let chunk = max(8, min(nq, (256 << 20) / max(bh * nk * e, 1)) / 8 * 8)
        let pq = try pointer(q, "attention"), pk = try pointer(k, "attention"), pv = try pointer(v, "attention")
        let po = try pointer(out, "attention")
        var c0 = 0
        while c0 < nq {
            let cq = min(chunk, nq - c0)
            let scores = try empty([bh, cq, nk], query.dtype)
            let ps = try pointer(scores, "attention")
            let qk = GemmShape(m: cq, n: nk, k: d, transA: false, transB: true, lda: d, ldb: d, ldd: nk,
                               strideA: nq * d, strideB: nk * d, strideD: cq * nk, batch: bh, dtype: query.dtype)
            try gemm.run(qk, a: pq + UInt64(c0 * d * e), b: pk, c: nil, d: ps, alpha: scale)
            try softmax(scores, into: scores, causal: causal, queryOffset: c0)
            let sv = GemmShape(m: cq, n: d, k: nk, transA: false, transB: false, lda: nk, ldb: d, ldd: d,
                               strideA: cq * nk, strideB: nk * d, strideD: nq * d, batch: bh, dtype: query.dtype)
            try gemm.run(sv, a: ps, b: pv, c: nil, d: po + UInt64(c0 * d * e))
            c0 += cq
        }
        return try permute(out, [0, 2, 1, 3]).reshaped([b, nq, heads * d])
    }
}

extension Int {
    /// ⌈self / d⌉ for positive d.
    func ceilDiv(_ d: Int) -> Int { (self + d - 1) / d }
}
