import CCUDA
import SSDTensor

extension CUDABackend {
    public func convert(_ x: Tensor, to dtype: DType) throws -> Tensor {
        guard dtype.isFloatingPoint else {
            if x.dtype == dtype { return x }
            throw TensorError.unsupportedDType(op: "convert", dtype: dtype)
        }
        let y = try empty(x.shape, dtype)
        try kernels.convert(try pointer(x, "convert"), try pointer(y, "convert"), count: x.count,
                            from: CUDABackend.code(x.dtype), to: CUDABackend.code(dtype))
        return y
    }

    public func activation(_ x: Tensor, _ kind: Activation) throws -> Tensor {
        let t = try floatCode(x, "activation")
        let y = try empty(x.shape, x.dtype)
        let k: Int
        switch kind {
        case .silu: k = 0
        case .gelu: k = 1
        case .quickGELU: k = 2
        case .relu: k = 3
        case .tanh: k = 4
        }
        try kernels.activation(try pointer(x, "activation"), try pointer(y, "activation"), count: x.count, type: t, kind: k)
        return y
    }

    public func geglu(_ x: Tensor) throws -> Tensor {
        guard let last = x.shape.last, last % 2 == 0 else {
            throw TensorError.invalidArgument(op: "geglu", message: "last axis of \(x.shape) must be even")
        }
        let t = try floatCode(x, "geglu")
        let n = last / 2
        let rows = x.count / max(last, 1)
        let y = try empty(Array(x.shape.dropLast()) + [n], x.dtype)
        try kernels.geglu(try pointer(x, "geglu"), try pointer(y, "geglu"), rows: rows, n: n, type: t)
        return y
    }

    public func affine(_ x: Tensor, scale: Float, shift: Float) throws -> Tensor {
        let t = try floatCode(x, "affine")
        let y = try empty(x.shape, x.dtype)
        try kernels.affine(try pointer(x, "affine"), try pointer(y, "affine"), count: x.count, type: t, scale: scale, shift: shift)
        return y
    }

    public func binary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp) throws -> Tensor {
        let t = try floatCode(a, "binary")
        let bb = try cast(b, a.dtype)
        let (out, dims) = try CUDABackend.broadcastLayout(a.shape, b.shape)
        let y = try empty(out, a.dtype)
        let code: Int
        switch op {
        case .add: code = 0
        case .subtract: code = 1
        case .multiply: code = 2
        case .divide: code = 3
        }
        try kernels.binary(try pointer(a, "binary"), try pointer(bb, "binary"), try pointer(y, "binary"), count: y.count, type: t,
                           dims: dims, op: code)
        return y
    }

    /// NumPy broadcasting of shapes `a` and `b` (aligned right, sizes equal or 1): the output shape
    /// and its axes collapsed for the kernels: size-1 axes dropped, neighbours merged where both
    /// operands stay contiguous; each axis as (size, stride in a, stride in b), at most 6.
    static func broadcastLayout(_ aShape: [Int], _ bShape: [Int]) throws -> (shape: [Int], dims: [(Int, Int, Int)]) {
        let rank = max(aShape.count, bShape.count)
        let sa = [Int](repeating: 1, count: rank - aShape.count) + aShape
        let sb = [Int](repeating: 1, count: rank - bShape.count) + bShape
        var out = [Int](repeating: 1, count: rank)
        for d in 0..<rank {
            guard sa[d] == sb[d] || sa[d] == 1 || sb[d] == 1 else {
                throw TensorError.shapeMismatch(op: "binary", expected: aShape, actual: bShape)
            }
            out[d] = max(sa[d], sb[d])
        }
        func strides(_ shape: [Int]) -> [Int] {
            var s = [Int](repeating: 0, count: rank)
            var acc = 1
            for d in stride(from: rank - 1, through: 0, by: -1) {
                s[d] = shape[d] == 1 ? 0 : acc
                acc *= shape[d]
            }
            return s
        }
        var dims: [(Int, Int, Int)] = []
        for (d, (sa1, sb1)) in zip(strides(sa), strides(sb)).enumerated() where out[d] != 1 {
            if let last = dims.last, last.1 == sa1 * out[d], last.2 == sb1 * out[d] {
                dims[dims.count - 1] = (last.0 * out[d], sa1, sb1)
            } else {
                dims.append((out[d], sa1, sb1))
            }
        }
        if dims.isEmpty { dims = [(1, 0, 0)] }
        guard dims.count <= 6 else {
            throw TensorError.invalidArgument(op: "binary", message: "broadcast of \(aShape) and \(bShape) has more than 6 axes")
        }
        return (out, dims)
    }

    /// The layouts `binary_h8` handles, from the collapsed (size, stride a, stride b) axes: both
    /// operands alike and contiguous (`rowBroadcast` false), or a `[B, P, C]` and b `[B, 1, C]`
    /// (ResnetBlock2D's `h + temb`); counts in elements, C (or the total) a multiple of 8.
    static func vectorBinaryLayout(_ dims: [(Int, Int, Int)]) -> (rowBroadcast: Bool, p: Int, c: Int)? {
        if dims.count == 1, dims[0].1 == 1, dims[0].2 == 1, dims[0].0 % 8 == 0 { return (false, 1, dims[0].0) }
        guard dims.count == 2 || dims.count == 3 else { return nil }
        let inner = dims[dims.count - 1], rows = dims[dims.count - 2]
        let c = inner.0, p = rows.0
        guard c % 8 == 0, inner.1 == 1, inner.2 == 1, rows.1 == c, rows.2 == 0 else { return nil }
        if dims.count == 3 {
            let batch = dims[0]
            guard batch.1 == p * c, batch.2 == c else { return nil }
        }
        return (true, p, c)
    }

    /// `y[r, c] += bias[c] + residual[r, c]` in place (either may be nil); y `[rows, C]`.
    func addBiasResidual(_ y: Tensor, bias: Tensor?, residual: Tensor?, op: String) throws {
        guard bias != nil || residual != nil else { return }
        let t = try floatCode(y, op)
        let c = y.shape.last ?? 1
        // Keep the cast tensors alive until the launch is enqueued (their memory is freed stream-ordered).
        let biasT = try bias.map { try cast($0, y.dtype) }, residualT = try residual.map { try cast($0, y.dtype) }
        defer { withExtendedLifetime((biasT, residualT)) {} }
        let b = try biasT.map { try pointer($0, op) } ?? 0
        let r = try residualT.map { try pointer($0, op) } ?? 0
        try kernels.biasResidual(try pointer(y, op), bias: b, residual: r, rows: y.count / max(c, 1), channels: c, type: t)
    }

    /// The largest of 16, 8, 4, 2 bytes dividing every value (copy unit).
    static func unit(_ byteCounts: [Int]) -> Int {
        for u in [16, 8, 4, 2] where byteCounts.allSatisfy({ $0 % u == 0 }) { return u }
        return 2
    }

    /// Strided row copy, all quantities in elements of `elementSize` bytes.
    func copy2d(from source: CUdeviceptr, to destination: CUdeviceptr, rows: Int, cols: Int, sourceStride: Int, sourceOffset: Int,
                destinationStride: Int, destinationOffset: Int, elementSize: Int) throws {
        try kernels.copy2d(from: source, to: destination, rows: rows, cols: cols, sourceStride: sourceStride, sourceOffset: sourceOffset,
                           destinationStride: destinationStride, destinationOffset: destinationOffset, elementSize: elementSize)
    }

    public func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor {
        guard let first = tensors.first, axis >= 0, axis < first.rank else {
            throw TensorError.invalidArgument(op: "concat", message: "axis \(axis) of \(tensors.count) tensors")
        }
        for t in tensors where t.rank != first.rank
            || zip(t.shape, first.shape).enumerated().contains(where: { $0.offset != axis && $0.element.0 != $0.element.1 }) {
            throw TensorError.shapeMismatch(op: "concat", expected: first.shape, actual: t.shape)
        }
        var shape = first.shape
        shape[axis] = tensors.reduce(0) { $0 + $1.shape[axis] }
        let y = try empty(shape, first.dtype)
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        let destination = try pointer(y, "concat")
        var offset = 0
        for t in tensors {
            let cols = t.shape[axis] * inner
            let source = try cast(t, first.dtype)
            try copy2d(from: try pointer(source, "concat"), to: destination, rows: outer, cols: cols,
                       sourceStride: cols, sourceOffset: 0, destinationStride: shape[axis] * inner, destinationOffset: offset,
                       elementSize: first.dtype.byteSize)
            withExtendedLifetime(source) {}
            offset += cols
        }
        return y
    }

    public func slice(_ x: Tensor, axis: Int, range: Range<Int>) throws -> Tensor {
        guard axis >= 0, axis < x.rank, range.lowerBound >= 0, range.upperBound <= x.shape[axis] else {
            throw TensorError.invalidArgument(op: "slice", message: "range \(range) of axis \(axis) of \(x.shape)")
        }
        var shape = x.shape
        shape[axis] = range.count
        let y = try empty(shape, x.dtype)
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        try copy2d(from: try pointer(x, "slice"), to: try pointer(y, "slice"), rows: outer, cols: range.count * inner,
                   sourceStride: x.shape[axis] * inner, sourceOffset: range.lowerBound * inner,
                   destinationStride: range.count * inner, destinationOffset: 0, elementSize: x.dtype.byteSize)
        return y
    }

    public func permute(_ x: Tensor, _ dims: [Int]) throws -> Tensor {
        guard dims.count == x.rank, Set(dims) == Set(0..<x.rank) else {
            throw TensorError.invalidArgument(op: "permute", message: "\(dims) is not a permutation of the axes of \(x.shape)")
        }
        let (shape, strides) = CUDABackend.permuteLayout(x.shape, dims)
        let y = try empty(dims.map { x.shape[$0] }, x.dtype)
        if shape.count <= 1 {
            try device.copyOnDevice(try pointer(y, "permute"), from: try pointer(x, "permute"), bytes: x.count * x.dtype.byteSize)
            return y
        }
        guard shape.count <= 6 else {
            throw TensorError.invalidArgument(op: "permute", message: "more than 6 axes after collapsing \(x.shape)")
        }
        try kernels.permute(try pointer(x, "permute"), try pointer(y, "permute"), count: x.count, elementSize: x.dtype.byteSize,
                            shape: shape, strides: strides)
        return y
    }

    /// The axes of `shape` permuted by `dims`, collapsed for `permute_kernel`: output axes (size-1
    /// dropped) whose source axes are adjacent and in order merged; each with its source stride.
    static func permuteLayout(_ shape: [Int], _ dims: [Int]) -> (shape: [Int], strides: [Int]) {
        var inStrides = [Int](repeating: 1, count: shape.count)
        for d in stride(from: shape.count - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * shape[d + 1] }
        var outShape: [Int] = [], strides: [Int] = []
        for d in dims where shape[d] != 1 {
            if let last = strides.last, last == inStrides[d] * shape[d] {
                outShape[outShape.count - 1] *= shape[d]
                strides[strides.count - 1] = inStrides[d]
            } else {
                outShape.append(shape[d])
                strides.append(inStrides[d])
            }
        }
        return (outShape, strides)
    }

    public func upsampleNearest2x(_ x: Tensor) throws -> Tensor {
        guard x.rank == 4 else { throw TensorError.shapeMismatch(op: "upsampleNearest2x", expected: [-1, -1, -1, -1], actual: x.shape) }
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let y = try empty([b, 2 * h, 2 * w, c], x.dtype)
        try kernels.upsample2x(try pointer(x, "upsample"), try pointer(y, "upsample"), b: b, h: h, w: w, channels: c,
                               elementSize: x.dtype.byteSize)
        return y
    }

    public func embedding(_ table: Tensor, ids: [Int32], outputDType: DType) throws -> Tensor {
        guard table.rank == 2 else { throw TensorError.shapeMismatch(op: "embedding", expected: [-1, -1], actual: table.shape) }
        let rows = table.shape[0], dim = table.shape[1]
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= rows }) {
            throw TensorError.invalidArgument(op: "embedding", message: "id \(bad) outside 0..<\(rows)")
        }
        let y = try empty([ids.count, dim], outputDType)
        guard !ids.isEmpty else { return y }
        let idBuffer = try device.allocate(ids.count * 4)
        try ids.withUnsafeBytes { try device.copyToDevice(idBuffer.pointer, from: $0.baseAddress!, bytes: ids.count * 4) }
        try kernels.embedding(try pointer(table, "embedding"), tableType: CUDABackend.code(table.dtype), ids: idBuffer.pointer,
                              try pointer(y, "embedding"), outputType: CUDABackend.code(outputDType), count: ids.count, dim: dim)
        withExtendedLifetime(idBuffer) {}
        return y
    }
}
