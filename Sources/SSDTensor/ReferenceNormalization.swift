extension ReferenceBackend {
    /// `nn.GroupNorm` on channels-last `[B, ..., C]`: biased variance over each group's channels and
    /// all positions, `(x − mean) / sqrt(var + eps) · weight + bias`. Statistics in Double.
    public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon, silu: false)
    }

    /// Group norm followed by SiLU, fused into the normalising pass.
    public func groupNormSiLU(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon, silu: true)
    }

    private func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float, silu: Bool) throws -> Tensor {
        let op = silu ? "groupNormSiLU" : "groupNorm"
        guard x.rank >= 2, let channels = x.shape.last else { throw TensorError.shapeMismatch(op: op, expected: [-1, -1], actual: x.shape) }
        guard groups > 0, channels % groups == 0 else {
            throw TensorError.invalidArgument(op: op, message: "\(channels) channels do not split into \(groups) groups")
        }
        let batch = x.shape[0]
        let positions = x.shape.dropFirst().dropLast().reduce(1, *)
        let perGroup = channels / groups
        let xp = try floats(x, op)
        guard let wp = try vector(weight, count: channels, op), let bp = try vector(bias, count: channels, op) else {
            throw TensorError.invalidArgument(op: op, message: "missing affine parameters")
        }
        // Mean and 1/sqrt(var + eps) per (batch, group).
        var mean = [Float](repeating: 0, count: batch * groups)
        var rstd = [Float](repeating: 0, count: batch * groups)
        mean.withUnsafeMutableBufferPointer { meanBuffer in
            rstd.withUnsafeMutableBufferPointer { rstdBuffer in
                let meanOut = meanBuffer.baseAddress!, rstdOut = rstdBuffer.baseAddress!
                Parallel.forEach(batch * groups) { bg in
                    let b = bg / groups, g = bg % groups
                    let base = xp + b * positions * channels + g * perGroup
                    var sum = 0.0
                    for p in 0..<positions { for c in 0..<perGroup { sum += Double(base[p * channels + c]) } }
                    let m = sum / Double(positions * perGroup)
                    var squares = 0.0
                    for p in 0..<positions { for c in 0..<perGroup { let d = Double(base[p * channels + c]) - m; squares += d * d } }
                    let variance = squares / Double(positions * perGroup)
                    meanOut[bg] = Float(m)
                    rstdOut[bg] = Float(1 / (variance + Double(epsilon)).squareRoot())
                }
            }
        }
        let (out, yp) = allocateFloats(x.shape)
        mean.withUnsafeBufferPointer { meanBuffer in
            rstd.withUnsafeBufferPointer { rstdBuffer in
                Parallel.forEachChunk(batch * positions, minimumChunk: 16) { rows in
                    for row in rows {
                        let b = row / positions
                        let src = xp + row * channels, dst = yp + row * channels
                        for c in 0..<channels {
                            let g = b * groups + c / perGroup
                            let y = (src[c] - meanBuffer[g]) * rstdBuffer[g] * wp[c] + bp[c]
                            dst[c] = silu ? ReferenceMath.silu(y) : y
                        }
                    }
                }
            }
        }
        return out
    }

    /// `nn.LayerNorm` over the last axis: biased variance, `(x − mean) / sqrt(var + eps) · weight + bias`.
    public func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        let op = "layerNorm"
        guard let width = x.shape.last, width > 0 else { throw TensorError.shapeMismatch(op: op, expected: [-1], actual: x.shape) }
        let xp = try floats(x, op)
        guard let wp = try vector(weight, count: width, op), let bp = try vector(bias, count: width, op) else {
            throw TensorError.invalidArgument(op: op, message: "missing affine parameters")
        }
        let (out, yp) = allocateFloats(x.shape)
        Parallel.forEachChunk(x.count / width, minimumChunk: 16) { rows in
            for row in rows {
                let src = xp + row * width, dst = yp + row * width
                var sum = 0.0
                for i in 0..<width { sum += Double(src[i]) }
                let m = sum / Double(width)
                var squares = 0.0
                for i in 0..<width { let d = Double(src[i]) - m; squares += d * d }
                let r = Float(1 / (squares / Double(width) + Double(epsilon)).squareRoot())
                let mf = Float(m)
                for i in 0..<width { dst[i] = (src[i] - mf) * r * wp[i] + bp[i] }
            }
        }
        return out
    }

    /// `torch.softmax(x, dim=-1)` with max subtraction. With `causal`, keys after the query
    /// (index along the last axis greater than the index along the second-to-last) get weight 0.
    public func softmax(_ x: Tensor, causal: Bool) throws -> Tensor {
        let op = "softmax"
        guard let width = x.shape.last, width > 0, !causal || x.rank >= 2 else {
            throw TensorError.shapeMismatch(op: op, expected: causal ? [-1, -1] : [-1], actual: x.shape)
        }
        let queries = causal ? x.shape[x.rank - 2] : 1
        let xp = try floats(x, op)
        let (out, yp) = allocateFloats(x.shape)
        Parallel.forEachChunk(x.count / width, minimumChunk: 16) { rows in
            for row in rows {
                let valid = causal ? min(width, row % queries + 1) : width
                ReferenceMath.softmaxRow(xp + row * width, yp + row * width, valid: valid, width: width)
            }
        }
        return out
    }
}
