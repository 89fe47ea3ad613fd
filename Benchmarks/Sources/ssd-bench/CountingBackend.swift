import Synchronization
import SSDTensor

/// Forwards every op to `inner` and counts the FLOPs of linear, matmul, conv2d and attention
/// (2 per multiply-add; attention 4·B·H·Nq·Nk·D), for the GFLOP/s column of `ssd-bench unet`.
final class CountingBackend: ComputeBackend {
    let inner: any ComputeBackend
    private let counter = Atomic<Int>(0)
    init(_ inner: any ComputeBackend) { self.inner = inner }

    /// FLOPs counted since the last reset.
    var flops: Double { Double(counter.load(ordering: .relaxed)) }
    func reset() { counter.store(0, ordering: .relaxed) }
    private func add(_ f: Int) { _ = counter.wrappingAdd(f, ordering: .relaxed) }

    var name: String { inner.name }
    func activationDType(for component: ModelComponent) -> DType { inner.activationDType(for: component) }
    func upload(_ view: HostTensorView, as dtype: DType) throws -> Tensor { try inner.upload(view, as: dtype) }
    func download(_ tensor: Tensor) throws -> [Float] { try inner.download(tensor) }
    func prepareWeight(_ view: HostTensorView, role: WeightRole, activationDType: DType) throws -> Tensor {
        try inner.prepareWeight(view, role: role, activationDType: activationDType)
    }
    func synchronize() throws { try inner.synchronize() }
    func memoryStatistics() -> BackendMemoryStatistics { inner.memoryStatistics() }
    func resetPeakMemory() { inner.resetPeakMemory() }
    func runReplayable(key: String, inputs: [Tensor], _ body: ([Tensor]) throws -> [Tensor]) throws -> [Tensor] {
        try inner.runReplayable(key: key, inputs: inputs, body)
    }

    func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor?) throws -> Tensor {
        add(2 * x.count * (weight.shape.first ?? 0))
        return try inner.linear(x, weight: weight, bias: bias, residual: residual)
    }
    func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) throws -> Tensor {
        let out = try inner.matmul(a, b, transposeA: transposeA, transposeB: transposeB, alpha: alpha)
        add(2 * out.count * (transposeA ? a.shape[a.rank - 2] : a.shape[a.rank - 1]))
        return out
    }
    func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int, residual: Tensor?) throws -> Tensor {
        let out = try inner.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, residual: residual)
        add(2 * out.count * weight.shape.dropFirst().reduce(1, *))
        return out
    }
    func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try inner.groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon)
    }
    func groupNormSiLU(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try inner.groupNormSiLU(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon)
    }
    func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try inner.layerNorm(x, weight: weight, bias: bias, epsilon: epsilon)
    }
    func softmax(_ x: Tensor, causal: Bool) throws -> Tensor { try inner.softmax(x, causal: causal) }
    func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool) throws -> Tensor {
        add(4 * query.count * key.shape[1])
        return try inner.attention(query: query, key: key, value: value, heads: heads, scale: scale, causal: causal)
    }
    func activation(_ x: Tensor, _ kind: Activation) throws -> Tensor { try inner.activation(x, kind) }
    func geglu(_ x: Tensor) throws -> Tensor { try inner.geglu(x) }
    func binary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp) throws -> Tensor { try inner.binary(a, b, op) }
    func affine(_ x: Tensor, scale: Float, shift: Float) throws -> Tensor { try inner.affine(x, scale: scale, shift: shift) }
    func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor { try inner.concat(tensors, axis: axis) }
    func slice(_ x: Tensor, axis: Int, range: Range<Int>) throws -> Tensor { try inner.slice(x, axis: axis, range: range) }
    func permute(_ x: Tensor, _ dims: [Int]) throws -> Tensor { try inner.permute(x, dims) }
    func upsampleNearest2x(_ x: Tensor) throws -> Tensor { try inner.upsampleNearest2x(x) }
    func embedding(_ table: Tensor, ids: [Int32], outputDType: DType) throws -> Tensor {
        try inner.embedding(table, ids: ids, outputDType: outputDType)
    }
    func convert(_ x: Tensor, to dtype: DType) throws -> Tensor { try inner.convert(x, to: dtype) }
}
