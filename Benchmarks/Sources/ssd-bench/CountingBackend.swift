import Synchronization
import SSDTensor

/// Forwards every op to `inner` and counts the FLOPs of linear, matmul, conv2d and attention
/// (2 per multiply-add; attention 4·B·H·Nq·Nk·D), for the GFLOP/s column of `ssd-bench unet`;
/// with `profiling`, also the wall time and FLOPs per op kind (the backends are synchronous).
final class CountingBackend: ComputeBackend {
    let inner: any ComputeBackend
    private let counter = Atomic<Int>(0)
    let profiling: Bool
    /// Profile rows per linear shape (`linear MxNxK`) instead of one row for all linears.
    let profilingShapes: Bool
    private let profile = Mutex<[String: (seconds: Double, flops: Double, calls: Int)]>([:])
    init(_ inner: any ComputeBackend, profiling: Bool = false, profilingShapes: Bool = false) {
        self.inner = inner
        self.profiling = profiling || profilingShapes
        self.profilingShapes = profilingShapes
    }

    /// FLOPs counted since the last reset.
    var flops: Double { Double(counter.load(ordering: .relaxed)) }
    func reset() {
        counter.store(0, ordering: .relaxed)
        profile.withLock { $0 = [:] }
    }
    private func add(_ f: Int) { _ = counter.wrappingAdd(f, ordering: .relaxed) }

    /// Seconds, FLOPs and calls per op kind since the last reset, slowest first.
    var profileRows: [(op: String, seconds: Double, flops: Double, calls: Int)] {
        profile.withLock { $0.map { ($0.key, $0.value.seconds, $0.value.flops, $0.value.calls) } }.sorted { $0.seconds > $1.seconds }
    }

    private func timed<T>(_ op: String, flops: Int = 0, _ body: () throws -> T) rethrows -> T {
        guard profiling else { return try body() }
        let clock = ContinuousClock()
        let start = clock.now
        let r = try body()
        let d = clock.now - start
        let s = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        profile.withLock { p in
            let old = p[op] ?? (0, 0, 0)
            p[op] = (old.seconds + s, old.flops + Double(flops), old.calls + 1)
        }
        return r
    }

    var name: String { inner.name }
    func activationDType(for component: ModelComponent) -> DType { inner.activationDType(for: component) }
    func upload(_ view: HostTensorView, as dtype: DType) throws -> Tensor { try inner.upload(view, as: dtype) }
    func download(_ tensor: Tensor) throws -> [Float] { try inner.download(tensor) }
    func prepareWeight(_ view: HostTensorView, role: WeightRole, activationDType: DType) throws -> Tensor {
        try inner.prepareWeight(view, role: role, activationDType: activationDType)
    }
    func prepareWeight(_ view: HostTensorView, role: WeightRole, component: ModelComponent) throws -> Tensor {
        try inner.prepareWeight(view, role: role, component: component)
    }
    func synchronize() throws { try inner.synchronize() }
    func memoryStatistics() -> BackendMemoryStatistics { inner.memoryStatistics() }
    func resetPeakMemory() { inner.resetPeakMemory() }
    func runReplayable(key: String, inputs: [Tensor], _ body: ([Tensor]) throws -> [Tensor]) throws -> [Tensor] {
        try inner.runReplayable(key: key, inputs: inputs, body)
    }

    var replaysRecordedRegions: Bool { inner.replaysRecordedRegions }

    func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor?) throws -> Tensor {
        let f = 2 * x.count * (weight.shape.first ?? 0)
        add(f)
        let k = x.shape.last ?? 1, label = profilingShapes ? "linear \(x.count / max(k, 1))x\(weight.shape.first ?? 0)x\(k)" : "linear"
        return try timed(label, flops: f) { try inner.linear(x, weight: weight, bias: bias, residual: residual) }
    }
    func layerNormLinears(_ x: Tensor, normWeight: Tensor, normBias: Tensor, epsilon: Float,
                          weights: [Tensor], biases: [Tensor?]) throws -> [Tensor] {
        let m = x.count / max(x.shape.last ?? 1, 1)
        let f = weights.reduce(0) { $0 + 2 * x.count * ($1.shape.first ?? 0) }
        add(f)
        let label = profilingShapes ? "layerNorm+linear ×\(weights.count) \(m)x\(weights.first?.shape.first ?? 0)x\(x.shape.last ?? 0)" : "layerNorm+linear"
        return try timed(label, flops: f) {
            try inner.layerNormLinears(x, normWeight: normWeight, normBias: normBias, epsilon: epsilon, weights: weights, biases: biases)
        }
    }
    func gegluLinear(_ x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor?) throws -> Tensor {
        let f = x.count / 2 * 2 * (weight.shape.first ?? 0)
        add(f)
        let k = (x.shape.last ?? 2) / 2, label = profilingShapes ? "geglu+linear \(x.count / max(2 * k, 1))x\(weight.shape.first ?? 0)x\(k)" : "geglu+linear"
        return try timed(label, flops: f) { try inner.gegluLinear(x, weight: weight, bias: bias, residual: residual) }
    }
    func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) throws -> Tensor {
        let f = 2 * a.count / a.shape[a.rank - 2 + (transposeA ? 1 : 0)] * a.shape[a.rank - 2 + (transposeA ? 1 : 0)] * (transposeB ? b.shape[b.rank - 2] : b.shape[b.rank - 1])
        add(f)
        return try timed("matmul", flops: f) { try inner.matmul(a, b, transposeA: transposeA, transposeB: transposeB, alpha: alpha) }
    }
    func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int, residual: Tensor?) throws -> Tensor {
        let out = try timed("conv2d \(weight.shape[2])x\(weight.shape[3])") { try inner.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, residual: residual) }
        let f = 2 * out.count * weight.shape.dropFirst().reduce(1, *)
        add(f)
        if profiling { profile.withLock { p in p["conv2d \(weight.shape[2])x\(weight.shape[3])"]?.flops += Double(f) } }
        return out
    }
    /// Counted as the direct convolution it replaces (the GN+SiLU pass is not counted).
    func groupNormSiLUConv2d(_ x: Tensor, groups: Int, normWeight: Tensor, normBias: Tensor, epsilon: Float,
                             weight: Tensor, bias: Tensor?, padding: Int, residual: Tensor?) throws -> Tensor {
        var op = "groupNormSiLU+conv2d \(weight.shape[2])x\(weight.shape[3])"
        if profilingShapes, x.rank == 4 { op += " \(x.shape[1])x\(x.shape[2]) \(x.shape[3])->\(weight.shape[0])" }
        let out = try timed(op) {
            try inner.groupNormSiLUConv2d(x, groups: groups, normWeight: normWeight, normBias: normBias, epsilon: epsilon,
                                          weight: weight, bias: bias, padding: padding, residual: residual)
        }
        let f = 2 * out.count * weight.shape.dropFirst().reduce(1, *)
        add(f)
        if profiling { profile.withLock { p in p[op]?.flops += Double(f) } }
        return out
    }
    /// Counted as nearest ×2 then the direct 3×3 convolution (the FLOPs diffusers does).
    func upsampleNearest2xConv2d(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        let op = "upsample+conv2d 3x3"
        let out = try timed(op) { try inner.upsampleNearest2xConv2d(x, weight: weight, bias: bias) }
        let f = 2 * out.count * weight.shape.dropFirst().reduce(1, *)
        add(f)
        if profiling { profile.withLock { p in p[op]?.flops += Double(f) } }
        return out
    }
    func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try timed("groupNorm") { try inner.groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon) }
    }
    func groupNormSiLU(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try timed("groupNormSiLU") { try inner.groupNormSiLU(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon) }
    }
    func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float) throws -> Tensor {
        try timed("layerNorm") { try inner.layerNorm(x, weight: weight, bias: bias, epsilon: epsilon) }
    }
    func softmax(_ x: Tensor, causal: Bool) throws -> Tensor { try timed("softmax") { try inner.softmax(x, causal: causal) } }
    /// Counts and times one attention call (4·B·Nq·Nk·H·D FLOPs).
    private func timedAttention(_ query: Tensor, _ key: Tensor, _ body: () throws -> Tensor) rethrows -> Tensor {
        let f = 4 * query.count * key.shape[1]
        add(f)
        return try timed("attention", flops: f, body)
    }
    func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool) throws -> Tensor {
        try timedAttention(query, key) { try inner.attention(query: query, key: key, value: value, heads: heads, scale: scale, causal: causal) }
    }
    func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, causal: Bool,
                   component: ModelComponent) throws -> Tensor {
        try timedAttention(query, key) {
            try inner.attention(query: query, key: key, value: value, heads: heads, scale: scale, causal: causal, component: component)
        }
    }
    func activation(_ x: Tensor, _ kind: Activation) throws -> Tensor { try timed("activation \(kind)") { try inner.activation(x, kind) } }
    func geglu(_ x: Tensor) throws -> Tensor { try timed("geglu") { try inner.geglu(x) } }
    func binary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp) throws -> Tensor { try timed("binary \(op)") { try inner.binary(a, b, op) } }
    func affine(_ x: Tensor, scale: Float, shift: Float) throws -> Tensor { try timed("affine") { try inner.affine(x, scale: scale, shift: shift) } }
    func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor { try timed("concat") { try inner.concat(tensors, axis: axis) } }
    func slice(_ x: Tensor, axis: Int, range: Range<Int>) throws -> Tensor { try timed("slice") { try inner.slice(x, axis: axis, range: range) } }
    func permute(_ x: Tensor, _ dims: [Int]) throws -> Tensor { try timed("permute") { try inner.permute(x, dims) } }
    func upsampleNearest2x(_ x: Tensor) throws -> Tensor { try timed("upsampleNearest2x") { try inner.upsampleNearest2x(x) } }
    func embedding(_ table: Tensor, ids: [Int32], outputDType: DType) throws -> Tensor {
        try inner.embedding(table, ids: ids, outputDType: outputDType)
    }
    func convert(_ x: Tensor, to dtype: DType) throws -> Tensor { try timed("convert") { try inner.convert(x, to: dtype) } }
}
