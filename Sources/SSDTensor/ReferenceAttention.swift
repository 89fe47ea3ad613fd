extension ReferenceBackend {
    /// Multi-head scaled dot-product attention (torch `F.scaled_dot_product_attention` as used by
    /// diffusers `AttnProcessor2_0` and transformers CLIP): `softmax(scale · Q Kᵀ) V` per head.
    ///
    /// Computed directly per (batch, head, block of 64 queries): the heads are strided column
    /// slices of the `[B, N, H·D]` inputs, so nothing is permuted and only a `[64, Nk]` score
    /// block is materialised per task. With `causal`, key `j` is masked for query `i` when `j > i`.
    public func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool) throws -> Tensor {
        let op = "attention"
        let (batch, queries, width) = try attentionShape(query: query, key: key, value: value, heads: heads)
        let keys = key.shape[1]
        let headSize = width / heads
        guard keys > 0 else { throw TensorError.shapeMismatch(op: op, expected: [batch, 1, width], actual: key.shape) }
        let qp = try floats(query, op), kp = try floats(key, op), vp = try floats(value, op)
        let (out, op2) = allocateFloats([batch, queries, width])
        let block = 64
        let blocks = (queries + block - 1) / block
        Parallel.forEach(batch * heads * blocks) { task in
            let b = task / (heads * blocks), h = task / blocks % heads, q0 = task % blocks * block
            let rows = min(block, queries - q0)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: rows * keys)
            defer { scores.deallocate() }
            let column = h * headSize
            // scores = Q_block · Kᵀ: K's rows are keys, so Kᵀ has column stride `width`.
            let q = MatrixView(base: qp + (b * queries + q0) * width + column, rowStride: width, columnStride: 1)
            let kT = MatrixView(base: kp + b * keys * width + column, rowStride: 1, columnStride: width)
            ReferenceGEMM.multiply(q, kT, into: scores, ldc: keys, m: rows, n: keys, k: headSize)
            for r in 0..<rows {
                let row = scores + r * keys
                for j in 0..<keys { row[j] *= scale }
                let valid = causal ? min(keys, q0 + r + 1) : keys
                ReferenceMath.softmaxRow(row, row, valid: valid, width: keys)
            }
            // out_block = P · V, written into this head's columns of the output.
            let v = MatrixView(base: vp + b * keys * width + column, rowStride: width, columnStride: 1)
            ReferenceGEMM.multiply(MatrixView(base: scores, rowStride: keys, columnStride: 1), v,
                                   into: op2 + (b * queries + q0) * width + column, ldc: width, m: rows, n: headSize, k: keys)
        }
        return out
    }
}
