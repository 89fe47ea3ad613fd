import CCUDA
import SSDTensor

extension CUDABackend {
    public func convert(_ x: Tensor, to dtype: DType) throws -> Tensor {
        guard dtype.isFloatingPoint else {
            if x.dtype == dtype { return x }
            throw TensorError.unsupportedDType(op: "convert", dtype: dtype)
        }
        let y = try empty(x.shape, dtype)
        try device.launchElementwise(
            .elementwise, "convert_kernel<\(CUDABackend.code(x.dtype)),\(CUDABackend.code(dtype))>", count: x.count,
            [.pointer(try pointer(x, "convert")), .pointer(try pointer(y, "convert")), .int(x.count)])
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
        }
        try device.launchElementwise(.elementwise, "activation_kernel<\(t)>", count: x.count,
                                     [.pointer(try pointer(x, "activation")), .pointer(try pointer(y, "activation")), .int(x.count), .i32(k)])
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
        try device.launchElementwise(.elementwise, "geglu_kernel<\(t)>", count: rows * n,
                                     [.pointer(try pointer(x, "geglu")), .pointer(try pointer(y, "geglu")), .int(rows), .int(n)])
        return y
    }

    public func affine(_ x: Tensor, scale: Float, shift: Float) throws -> Tensor {
        let t = try floatCode(x, "affine")
        let y = try empty(x.shape, x.dtype)
        try device.launchElementwise(.elementwise, "affine_kernel<\(t)>", count: x.count,
                                     [.pointer(try pointer(x, "affine")), .pointer(try pointer(y, "affine")), .int(x.count),
                                      .float(scale), .float(shift)])
        return y
    }

    public func binary(_ a: Tensor, _ b: Tensor, _ op: BinaryOp) throws -> Tensor {
        let t = try floatCode(a, "binary")
        let bb = try cast(b, a.dtype)
        // NumPy broadcasting: align right, sizes equal or 1.
        let rank = max(a.rank, b.rank)
        let sa = [Int](repeating: 1, count: rank - a.rank) + a.shape
        let sb = [Int](repeating: 1, count: rank - b.rank) + b.shape
        var out = [Int](repeating: 1, count: rank)
        for d in 0..<rank {
            guard sa[d] == sb[d] || sa[d] == 1 || sb[d] == 1 else {
                throw TensorError.shapeMismatch(op: "binary", expected: a.shape, actual: b.shape)
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
        // Collapse: drop size-1 axes, merge neighbours that stay contiguous for both operands.
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
            throw TensorError.invalidArgument(op: "binary", message: "broadcast of \(a.shape) and \(b.shape) has more than 6 axes")
        }
        let y = try empty(out, a.dtype)
        let code: Int
        switch op {
        case .add: code = 0
        case .subtract: code = 1
        case .multiply: code = 2
        case .divide: code = 3
        }
        try device.launchElementwise(
            .elementwise, "binary_kernel<\(t)>", count: y.count,
            [.pointer(try pointer(a, "binary")), .pointer(try pointer(bb, "binary")), .pointer(try pointer(y, "binary")),
             .int(y.count), .i32(dims.count), .dims(dims.map(\.0)), .dims(dims.map(\.1)), .dims(dims.map(\.2)), .i32(code)])
        return y
    }

    /// `y[r, c] += bias[c] + residual[r, c]` in place (either may be nil); y `[rows, C]`.
    func addBiasResidual(_ y: Tensor, bias: Tensor?, residual: Tensor?, op: String) throws {
        guard bias != nil || residual != nil else { return }
        let t = try floatCode(y, op)
        let c = y.shape.last ?? 1
        let b = try bias.map { try pointer(cast($0, y.dtype), op) } ?? 0
        let r = try residual.map { try pointer(cast($0, y.dtype), op) } ?? 0
        try device.launchElementwise(.elementwise, "bias_residual_kernel<\(t)>", count: y.count,
                                     [.pointer(try pointer(y, op)), .pointer(b), .pointer(r), .int(y.count / max(c, 1)), .int(c)])
    }

    /// The largest of 16, 8, 4, 2 bytes dividing every value (copy unit).
    static func unit(_ byteCounts: [Int]) -> Int {
        for u in [16, 8, 4, 2] where byteCounts.allSatisfy({ $0 % u == 0 }) { return u }
        return 2
    }

    /// Strided row copy, all quantities in elements of `elementSize` bytes.
    func copy2d(from source: CUdeviceptr, to destination: CUdeviceptr, rows: Int, cols: Int, sourceStride: Int, sourceOffset: Int,
                destinationStride: Int, destinationOffset: Int, elementSize: Int) throws {
        guard rows > 0, cols > 0 else { return }
        let u = CUDABackend.unit([cols, sourceStride, sourceOffset, destinationStride, destinationOffset].map { $0 * elementSize })
        let scale = { (v: Int) in v * elementSize / u }
        try device.launchElementwise(
            .elementwise, "copy2d_kernel<\(u)>", count: rows * scale(cols),
            [.pointer(source), .pointer(destination), .int(rows), .int(scale(cols)), .int(scale(sourceStride)),
             .int(scale(sourceOffset)), .int(scale(destinationStride)), .int(scale(destinationOffset))])
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
            try copy2d(from: try pointer(cast(t, first.dtype), "concat"), to: destination, rows: outer, cols: cols,
                       sourceStride: cols, sourceOffset: 0, destinationStride: shape[axis] * inner, destinationOffset: offset,
                       elementSize: first.dtype.byteSize)
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
        var inStrides = [Int](repeating: 1, count: x.rank)
        for d in stride(from: x.rank - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * x.shape[d + 1] }
        // Collapse output axes whose source axes are adjacent and in order.
        var shape: [Int] = [], strides: [Int] = []
        for d in dims where x.shape[d] != 1 {
            if let last = strides.last, last == inStrides[d] * x.shape[d] {
                shape[shape.count - 1] *= x.shape[d]
                strides[strides.count - 1] = inStrides[d]
            } else {
                shape.append(x.shape[d])
                strides.append(inStrides[d])
            }
        }
        let y = try empty(dims.map { x.shape[$0] }, x.dtype)
        if shape.count <= 1 {
            try device.copyOnDevice(try pointer(y, "permute"), from: try pointer(x, "permute"), bytes: x.count * x.dtype.byteSize)
            return y
        }
        guard shape.count <= 6 else {
            throw TensorError.invalidArgument(op: "permute", message: "more than 6 axes after collapsing \(x.shape)")
        }
        try device.launchElementwise(.elementwise, "permute_kernel<\(x.dtype.byteSize)>", count: x.count,
                                     [.pointer(try pointer(x, "permute")), .pointer(try pointer(y, "permute")), .int(x.count),
                                      .i32(shape.count), .dims(shape), .dims(strides)])
        return y
    }

    public func upsampleNearest2x(_ x: Tensor) throws -> Tensor {
        guard x.rank == 4 else { throw TensorError.shapeMismatch(op: "upsampleNearest2x", expected: [-1, -1, -1, -1], actual: x.shape) }
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let y = try empty([b, 2 * h, 2 * w, c], x.dtype)
        let u = CUDABackend.unit([c * x.dtype.byteSize])
        let cu = c * x.dtype.byteSize / u
        try device.launchElementwise(.elementwise, "upsample2x_kernel<\(u)>", count: b * 4 * h * w * cu,
                                     [.pointer(try pointer(x, "upsample")), .pointer(try pointer(y, "upsample")),
                                      .int(b), .int(h), .int(w), .int(cu)])
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
        try device.launchElementwise(.elementwise, "embedding_kernel", count: ids.count * dim,
                                     [.pointer(try pointer(table, "embedding")), .i32(CUDABackend.code(table.dtype)), .pointer(idBuffer.pointer),
                                      .pointer(try pointer(y, "embedding")), .i32(CUDABackend.code(outputDType)), .int(ids.count), .int(dim)])
        withExtendedLifetime(idBuffer) {}
        return y
    }
}
