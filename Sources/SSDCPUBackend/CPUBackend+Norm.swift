import CSSDKernels
import SSDTensor

extension CPUBackend {
    public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon, activation: Int32(SSD_ACT_NONE))
    }

    /// Fused group norm + SiLU (diffusers `ResnetBlock2D`'s `norm` then `nonlinearity`).
    public func groupNormSiLU(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon, activation: Int32(SSD_ACT_SILU))
    }

    /// `nn.GroupNorm` on channels-last `[B, ..., C]`: the statistics (`groupNormCoefficients`), then
    /// one fused scale/shift/activation pass.
    private func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float, activation: Int32) throws -> Tensor {
        let op = "groupNorm"
        let xp = try x.cpuFloats(op)
        let coefficients = try groupNormCoefficients(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon, op: op)
        let b = x.shape[0], c = x.shape[x.rank - 1], rows = x.count / (b * c)
        let out = allocate(x.shape)
        let y = try out.cpuBuffer(op).floats
        let chunkRows = 64, chunks = (rows + chunkRows - 1) / chunkRows
        parallelFor(b * chunks) { t in
            let bi = t / chunks, ch = t % chunks
            let r0 = ch * chunkRows, r1 = min(rows, r0 + chunkRows)
            let off = (bi * rows + r0) * c
            ssd_scale_shift_act(xp + off, y + off, r1 - r0, c, coefficients.scale + bi * c, coefficients.shift + bi * c, activation)
        }
        return out
    }

    /// Per-(batch item, channel) `scale` and `shift` with `groupNorm(x) = x·scale + shift`, from the
    /// group statistics of `x` `[B, ..., C]`: two passes (mean, then centred variance) with
    /// per-channel partial sums in parallel row chunks, accumulated in Double.
    func groupNormCoefficients(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float, op: String) throws -> ChannelAffine {
        let xp = try x.cpuFloats(op)
        guard x.rank >= 2, let c = x.shape.last, c > 0, groups > 0, c % groups == 0 else {
            throw TensorError.invalidArgument(op: op, message: "shape \(x.shape) with \(groups) groups")
        }
        guard weight.count == c, bias.count == c else { throw TensorError.shapeMismatch(op: op, expected: [c], actual: weight.shape) }
        let gamma = try weight.cpuFloats(op), beta = try bias.cpuFloats(op)
        let b = x.shape[0], rows = x.count / (b * c), cpg = c / groups
        let chunkRows = 64
        let chunks = (rows + chunkRows - 1) / chunkRows
        let partial = UnsafeMutablePointer<Double>.allocate(capacity: max(1, b * chunks * c))
        defer { partial.deallocate() }
        let mean = UnsafeMutablePointer<Float>.allocate(capacity: b * c)
        defer { mean.deallocate() }
        let coefficients = ChannelAffine(count: b * c)
        let scale = coefficients.scale, shift = coefficients.shift
        let count = Double(rows * cpg)

        // Reduces the per-chunk channel sums into per-group values, per batch item.
        func groupTotals(_ bi: Int) -> [Double] {
            var g = [Double](repeating: 0, count: groups)
            for ch in 0..<chunks {
                let p = partial + (bi * chunks + ch) * c
                for j in 0..<c { g[j / cpg] += p[j] }
            }
            return g
        }
        func pass(_ body: @escaping (UnsafePointer<Float>, Int, UnsafeMutablePointer<Double>, Int) -> Void) {
            parallelFor(b * chunks) { t in
                let bi = t / chunks, ch = t % chunks
                let r0 = ch * chunkRows, r1 = min(rows, r0 + chunkRows)
                let p = partial + t * c
                p.update(repeating: 0, count: c)
                body(xp + (bi * rows + r0) * c, r1 - r0, p, bi)
            }
        }
        pass { src, n, p, _ in ssd_channel_sum(src, n, c, p) }
        for bi in 0..<b {
            let g = groupTotals(bi)
            for j in 0..<c { mean[bi * c + j] = Float(g[j / cpg] / count) }
        }
        pass { src, n, p, bi in ssd_channel_sqdev(src, n, c, mean + bi * c, p) }
        for bi in 0..<b {
            let g = groupTotals(bi)
            for j in 0..<c {
                let rstd = Float(1 / (g[j / cpg] / count + Double(epsilon)).squareRoot())
                scale[bi * c + j] = rstd * gamma[j]
                shift[bi * c + j] = beta[j] - mean[bi * c + j] * rstd * gamma[j]
            }
        }
        return coefficients
    }

    public func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        let op = "layerNorm"
        let xp = try x.cpuFloats(op)
        guard let n = x.shape.last, n > 0, weight.count == n, bias.count == n else {
            throw TensorError.shapeMismatch(op: op, expected: [x.shape.last ?? 0], actual: weight.shape)
        }
        let gamma = try weight.cpuFloats(op), beta = try bias.cpuFloats(op)
        let out = allocate(x.shape)
        let y = try out.cpuBuffer(op).floats
        parallelChunks(x.count / n, minimumChunk: 8) { rows in
            for r in rows { ssd_layer_norm_row(xp + r * n, y + r * n, n, gamma, beta, epsilon) }
        }
        return out
    }

    public func softmax(_ x: Tensor, causal: Bool) throws -> Tensor {
        let op = "softmax"
        let xp = try x.cpuFloats(op)
        guard let n = x.shape.last, n > 0 else { throw TensorError.shapeMismatch(op: op, expected: [-1], actual: x.shape) }
        if causal && x.rank < 2 { throw TensorError.invalidArgument(op: op, message: "causal softmax needs [.., Nq, Nk], got \(x.shape)") }
        let nq = causal ? x.shape[x.rank - 2] : 1
        let out = allocate(x.shape)
        let y = try out.cpuBuffer(op).floats
        parallelChunks(x.count / n, minimumChunk: 8) { rows in
            for r in rows {
                let valid = causal ? min(n, r % nq + 1) : n
                ssd_softmax_row(xp + r * n, y + r * n, n, valid)
            }
        }
        return out
    }
}

/// Per-(batch item, channel) `scale` and `shift` of a normalisation, freed with the object.
final class ChannelAffine {
    let scale: UnsafeMutablePointer<Float>
    let shift: UnsafeMutablePointer<Float>

    init(count: Int) {
        scale = .allocate(capacity: max(count, 1))
        shift = .allocate(capacity: max(count, 1))
    }

    deinit {
        scale.deallocate()
        shift.deallocate()
    }
}
