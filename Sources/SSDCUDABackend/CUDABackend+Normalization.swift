import CCUDA
import SSDTensor

extension CUDABackend {
    public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon, silu: false)
    }

    public func groupNormSiLU(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon, silu: true)
    }

    /// diffusers `nn.GroupNorm` over NHWC `[B, ..., C]` (optionally followed by SiLU): see
    /// `KernelSource.normalization` for the three launches.
    func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float, silu: Bool) throws -> Tensor {
        guard x.rank >= 2, let c = x.shape.last, groups > 0, c % groups == 0, weight.count == c, bias.count == c else {
            throw TensorError.invalidArgument(op: "groupNorm", message: "\(groups) groups for shape \(x.shape), weight \(weight.shape)")
        }
        let t = try floatCode(x, "groupNorm")
        let b = x.shape[0]
        let hw = x.count / max(b * c, 1)
        let y = try empty(x.shape, x.dtype)
        guard x.count > 0 else { return y }
        let scratch = KernelCalls.groupNormScratch(b: b, hw: hw, channels: c, groups: groups)
        let partial = try empty([scratch.partial], .f32)
        let stats = try empty([scratch.stats], .f32)
        try kernels.groupNorm(try pointer(x, "groupNorm"), try pointer(y, "groupNorm"), partial: try pointer(partial, "groupNorm"),
                              stats: try pointer(stats, "groupNorm"), weight: try pointer(weight, "groupNorm"),
                              weightType: CUDABackend.code(weight.dtype), bias: try pointer(bias, "groupNorm"),
                              biasType: CUDABackend.code(bias.dtype), b: b, hw: hw, channels: c, groups: groups, epsilon: epsilon,
                              silu: silu, type: t)
        return y
    }

    public func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        guard let c = x.shape.last, weight.count == c, bias.count == c else {
            throw TensorError.shapeMismatch(op: "layerNorm", expected: [weight.count], actual: x.shape)
        }
        let t = try floatCode(x, "layerNorm")
        let rows = x.count / max(c, 1)
        let y = try empty(x.shape, x.dtype)
        try kernels.layerNorm(try pointer(x, "layerNorm"), try pointer(y, "layerNorm"), weight: try pointer(weight, "layerNorm"),
                              weightType: CUDABackend.code(weight.dtype), bias: try pointer(bias, "layerNorm"),
                              biasType: CUDABackend.code(bias.dtype), rows: rows, channels: c, epsilon: epsilon, type: t)
        return y
    }

    public func softmax(_ x: Tensor, causal: Bool) throws -> Tensor {
        let y = try empty(x.shape, x.dtype)
        try softmax(x, into: y, causal: causal, queryOffset: 0)
        return y
    }

    /// Softmax over the last axis into `y` (may be `x`); with `causal`, row r is query `queryOffset + r % Nq`.
    func softmax(_ x: Tensor, into y: Tensor, causal: Bool, queryOffset: Int) throws {
        guard let n = x.shape.last else { throw TensorError.shapeMismatch(op: "softmax", expected: [-1], actual: x.shape) }
        let t = try floatCode(x, "softmax")
        let rows = x.count / max(n, 1)
        let nq = x.rank >= 2 ? x.shape[x.rank - 2] : 1
        try kernels.softmax(try pointer(x, "softmax"), try pointer(y, "softmax"), rows: rows, n: n, nq: nq, queryOffset: queryOffset,
                            causal: causal, type: t)
    }
}
