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
        let rowsPerChunk = 32
        let chunks = (hw + rowsPerChunk - 1) / rowsPerChunk
        let partial = try empty([b * chunks * c * 2], .f32)
        let stats = try empty([b * groups * 2], .f32)
        let px = try pointer(x, "groupNorm")
        try device.launch(.normalization, "group_norm_partial_kernel<\(t)>", grid: (chunks, b, 1), block: 256,
                          [.pointer(px), .pointer(try pointer(partial, "groupNorm")), .int(hw), .i32(c), .i32(rowsPerChunk)])
        try device.launch(.normalization, "group_norm_finalize_kernel", grid: (b * groups, 1, 1), block: 256,
                          [.pointer(try pointer(partial, "groupNorm")), .pointer(try pointer(stats, "groupNorm")), .int(hw), .i32(c),
                           .i32(groups), .i32(chunks), .i32(rowsPerChunk), .float(epsilon)])
        let perBatch = hw * c
        let blocks = max(1, min((perBatch + 255) / 256, device.multiprocessors * 32 / max(1, min(b, 32))))
        try device.launch(.normalization, "group_norm_apply_kernel<\(t)>", grid: (blocks, b, 1), block: 256,
                          [.pointer(px), .pointer(try pointer(y, "groupNorm")), .pointer(try pointer(stats, "groupNorm")),
                           .pointer(try pointer(weight, "groupNorm")), .i32(CUDABackend.code(weight.dtype)),
                           .pointer(try pointer(bias, "groupNorm")), .i32(CUDABackend.code(bias.dtype)),
                           .int(hw), .i32(c), .i32(groups), .i32(silu ? 1 : 0)])
        return y
    }

    public func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        guard let c = x.shape.last, weight.count == c, bias.count == c else {
            throw TensorError.shapeMismatch(op: "layerNorm", expected: [weight.count], actual: x.shape)
        }
        let t = try floatCode(x, "layerNorm")
        let rows = x.count / max(c, 1)
        let y = try empty(x.shape, x.dtype)
        try device.launch(.normalization, "layer_norm_kernel<\(t)>", grid: ((rows + 7) / 8, 1, 1), block: 256,
                          [.pointer(try pointer(x, "layerNorm")), .pointer(try pointer(y, "layerNorm")),
                           .pointer(try pointer(weight, "layerNorm")), .i32(CUDABackend.code(weight.dtype)),
                           .pointer(try pointer(bias, "layerNorm")), .i32(CUDABackend.code(bias.dtype)),
                           .int(rows), .i32(c), .float(epsilon)])
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
        try device.launch(.normalization, "softmax_kernel<\(t)>", grid: ((rows + 7) / 8, 1, 1), block: 256,
                          [.pointer(try pointer(x, "softmax")), .pointer(try pointer(y, "softmax")), .int(rows), .i32(n), .i32(nq),
                           .i32(queryOffset), .i32(causal ? 1 : 0)])
    }
}
