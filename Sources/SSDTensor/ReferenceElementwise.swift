#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Scalar math shared by the reference ops (libm `expf`/`erff`).
enum ReferenceMath {
    /// `x · sigmoid(x)` as `x / (1 + e^−x)` (torch `silu`).
    @inline(__always)
    static func silu(_ x: Float) -> Float { x / (1 + expf(-x)) }

    /// Exact GELU `x/2 · (1 + erf(x/√2))` (torch `gelu`, approximate="none").
    @inline(__always)
    static func gelu(_ x: Float) -> Float { 0.5 * x * (1 + erff(x * 0.70710678118654752)) }

    /// `x · sigmoid(1.702x)` (transformers `QuickGELUActivation`).
    @inline(__always)
    static func quickGELU(_ x: Float) -> Float { x / (1 + expf(-1.702 * x)) }

    @inline(__always)
    static func apply(_ kind: Activation, _ x: Float) -> Float {
        switch kind {
        case .silu: return silu(x)
        case .gelu: return gelu(x)
        case .quickGELU: return quickGELU(x)
        case .relu: return x < 0 ? 0 : x
        case .tanh: return tanhf(x)
        }
    }

    /// Softmax of `src[0..<valid]` into `dst`, zeros in `dst[valid..<width]`.
    static func softmaxRow(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, valid: Int, width: Int) {
        var maximum = -Float.infinity
        for i in 0..<valid { maximum = max(maximum, src[i]) }
        var sum: Float = 0
        for i in 0..<valid {
            let e = expf(src[i] - maximum)
            dst[i] = e
            sum += e
        }
        let inverse = 1 / sum
        for i in 0..<valid { dst[i] *= inverse }
        for i in valid..<width { dst[i] = 0 }
    }
}

extension ReferenceBackend {
    /// Pointwise SiLU, GELU (erf) or quick-GELU.
    public func activation(_ x: Tensor, _ kind: Activation) throws -> Tensor {
        let xp = try floats(x, "activation")
        let (out, yp) = allocateFloats(x.shape)
        Parallel.forEachChunk(x.count, minimumChunk: 4096) { range in
            for i in range { yp[i] = ReferenceMath.apply(kind, xp[i]) }
        }
        return out
    }

    /// diffusers `GEGLU` after its projection: `x[..., :N] · GELU(x[..., N:])`.
    public func geglu(_ x: Tensor) throws -> Tensor {
        let op = "geglu"
        guard let last = x.shape.last, last % 2 == 0 else {
            throw TensorError.invalidArgument(op: op, message: "last axis of \(x.shape) must be even")
        }
        let half = last / 2
        let xp = try floats(x, op)
        let (out, yp) = allocateFloats(Array(x.shape.dropLast()) + [half])
        Parallel.forEachChunk(x.count / max(last, 1), minimumChunk: 8) { rows in
            for row in rows {
                let src = xp + row * last, dst = yp + row * half
                for j in 0..<half { dst[j] = src[j] * ReferenceMath.gelu(src[half + j]) }
            }
        }
        return out
    }

    /// Elementwise `a op b` with NumPy broadcasting (shapes aligned on the right, size-1 axes stretch).
    public func binary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp) throws -> Tensor {
        let name = "binary \(op.rawValue)"
        let rank = max(a.rank, b.rank)
        let aShape = [Int](repeating: 1, count: rank - a.rank) + a.shape
        let bShape = [Int](repeating: 1, count: rank - b.rank) + b.shape
        var outShape = [Int](repeating: 1, count: rank)
        for d in 0..<rank {
            guard aShape[d] == bShape[d] || aShape[d] == 1 || bShape[d] == 1 else {
                throw TensorError.shapeMismatch(op: name, expected: a.shape, actual: b.shape)
            }
            outShape[d] = aShape[d] == 1 ? bShape[d] : aShape[d]
        }
        let ap = try floats(a, name), bp = try floats(b, name)
        let (out, yp) = allocateFloats(outShape)
        // Element strides of each operand in the output's index space (0 along broadcast axes).
        let aStrides = Self.broadcastStrides(aShape, outShape), bStrides = Self.broadcastStrides(bShape, outShape)
        let inner = rank > 0 ? outShape[rank - 1] : 1
        let (aInner, bInner) = rank > 0 ? (aStrides[rank - 1], bStrides[rank - 1]) : (0, 0)
        let outerCount = inner == 0 ? 0 : out.count / inner
        Parallel.forEachChunk(outerCount, minimumChunk: max(1, 4096 / max(inner, 1))) { rows in
            for row in rows {
                // Offsets of this output row's first element in a and b.
                var rest = row, aOffset = 0, bOffset = 0
                for d in stride(from: rank - 2, through: 0, by: -1) {
                    let i = rest % outShape[d]
                    rest /= outShape[d]
                    aOffset += i * aStrides[d]
                    bOffset += i * bStrides[d]
                }
                let dst = yp + row * inner
                let x = ap + aOffset, y = bp + bOffset
                switch op {
                case .add: for j in 0..<inner { dst[j] = x[j * aInner] + y[j * bInner] }
                case .subtract: for j in 0..<inner { dst[j] = x[j * aInner] - y[j * bInner] }
                case .multiply: for j in 0..<inner { dst[j] = x[j * aInner] * y[j * bInner] }
                case .divide: for j in 0..<inner { dst[j] = x[j * aInner] / y[j * bInner] }
                }
            }
        }
        return out
    }

    /// Row-major strides of `shape` (same rank as `outShape`), 0 where the axis is broadcast.
    static func broadcastStrides(_ shape: [Int], _ outShape: [Int]) -> [Int] {
        var strides = [Int](repeating: 0, count: shape.count)
        var step = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[d] = shape[d] == 1 && outShape[d] != 1 ? 0 : step
            step *= shape[d]
        }
        return strides
    }

    /// `x · scale + shift`.
    public func affine(_ x: Tensor, scale: Float, shift: Float) throws -> Tensor {
        let xp = try floats(x, "affine")
        let (out, yp) = allocateFloats(x.shape)
        Parallel.forEachChunk(x.count, minimumChunk: 4096) { range in
            for i in range { yp[i] = xp[i] * scale + shift }
        }
        return out
    }

    /// Element type conversion, round to nearest even (torch `.to(dtype)`); integer tensors
    /// convert to floating types by value.
    public func convert(_ x: Tensor, to dtype: DType) throws -> Tensor {
        let op = "convert"
        let storage = try referenceStorage(x, op)
        guard storage.layout == .rowMajor else {
            throw TensorError.invalidArgument(op: op, message: "a prepared linear/conv weight cannot be converted")
        }
        let view = HostTensorView(name: op, shape: x.shape, dtype: x.dtype, pointer: UnsafeRawPointer(storage.pointer), owner: storage)
        return try upload(view, as: dtype)
    }
}
