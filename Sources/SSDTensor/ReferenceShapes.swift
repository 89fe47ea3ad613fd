extension ReferenceBackend {
    /// `torch.cat(tensors, dim=axis)`. Any element type (all the same); data is copied in contiguous runs.
    public func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor {
        let op = "concat"
        guard let first = tensors.first else { throw TensorError.invalidArgument(op: op, message: "no tensors") }
        guard axis >= 0, axis < first.rank else {
            throw TensorError.invalidArgument(op: op, message: "axis \(axis) out of range for rank \(first.rank)")
        }
        for t in tensors {
            guard t.dtype == first.dtype else { throw TensorError.unsupportedDType(op: op, dtype: t.dtype) }
            guard t.rank == first.rank, t.shape.enumerated().allSatisfy({ $0.offset == axis || $0.element == first.shape[$0.offset] }) else {
                throw TensorError.shapeMismatch(op: op, expected: first.shape, actual: t.shape)
            }
        }
        let sources = try tensors.map { try rawElements($0, op) }
        var outShape = first.shape
        outShape[axis] = tensors.reduce(0) { $0 + $1.shape[axis] }
        let elementSize = first.dtype.byteSize
        let outer = first.shape[..<axis].reduce(1, *)
        let inner = first.shape[(axis + 1)...].reduce(1, *) * elementSize
        let outRun = outShape[axis] * inner
        let (out, dst) = allocate(outShape, first.dtype)
        Parallel.forEachChunk(outer, minimumChunk: 16) { rows in
            for row in rows {
                var offset = row * outRun
                for (t, src) in zip(tensors, sources) {
                    let run = t.shape[axis] * inner
                    (dst + offset).copyMemory(from: src + row * run, byteCount: run)
                    offset += run
                }
            }
        }
        return out
    }

    /// `x.narrow(axis, range.lowerBound, range.count)`, copied to a new contiguous tensor.
    public func slice(_ x: Tensor, axis: Int, range: Range<Int>) throws -> Tensor {
        let op = "slice"
        guard axis >= 0, axis < x.rank, range.lowerBound >= 0, range.upperBound <= x.shape[axis] else {
            throw TensorError.invalidArgument(op: op, message: "range \(range) of axis \(axis) out of bounds for \(x.shape)")
        }
        let src = try rawElements(x, op)
        var outShape = x.shape
        outShape[axis] = range.count
        let elementSize = x.dtype.byteSize
        let outer = x.shape[..<axis].reduce(1, *)
        let inner = x.shape[(axis + 1)...].reduce(1, *) * elementSize
        let (out, dst) = allocate(outShape, x.dtype)
        Parallel.forEachChunk(outer, minimumChunk: 16) { rows in
            for row in rows {
                (dst + row * range.count * inner).copyMemory(from: src + (row * x.shape[axis] + range.lowerBound) * inner,
                                                             byteCount: range.count * inner)
            }
        }
        return out
    }

    /// `x.permute(dims).contiguous()`. Any element type.
    public func permute(_ x: Tensor, _ dims: [Int]) throws -> Tensor {
        let op = "permute"
        guard dims.count == x.rank, Set(dims) == Set(0..<x.rank) else {
            throw TensorError.invalidArgument(op: op, message: "\(dims) is not a permutation of the axes of \(x.shape)")
        }
        let src = try rawElements(x, op)
        let outShape = dims.map { x.shape[$0] }
        var inStrides = [Int](repeating: 1, count: x.rank)
        for d in stride(from: x.rank - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * x.shape[d + 1] }
        // Stride in the source of each output axis.
        let strides = dims.map { inStrides[$0] }
        let (out, dst) = allocate(outShape, x.dtype)
        switch x.dtype.byteSize {
        case 2: Self.permute(UInt16.self, src, dst, outShape, strides)
        case 4: Self.permute(UInt32.self, src, dst, outShape, strides)
        default: Self.permute(UInt64.self, src, dst, outShape, strides)
        }
        return out
    }

    private static func permute<T>(_: T.Type, _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, _ outShape: [Int], _ strides: [Int]) {
        let s = src.assumingMemoryBound(to: T.self), d = dst.assumingMemoryBound(to: T.self)
        let rank = outShape.count
        guard rank > 0 else { d[0] = s[0]; return }
        let inner = outShape[rank - 1], innerStride = strides[rank - 1]
        let rows = inner == 0 ? 0 : outShape.reduce(1, *) / inner
        Parallel.forEachChunk(rows, minimumChunk: 64) { chunk in
            for row in chunk {
                var rest = row, offset = 0
                for axis in stride(from: rank - 2, through: 0, by: -1) {
                    offset += rest % outShape[axis] * strides[axis]
                    rest /= outShape[axis]
                }
                let out = d + row * inner
                for j in 0..<inner { out[j] = s[offset + j * innerStride] }
            }
        }
    }

    /// `nn.Embedding`: rows `ids` of `table` `[rows, dim]` → `[ids.count, dim]` in `outputDType`.
    public func embedding(_ table: Tensor, ids: [Int32], outputDType: DType) throws -> Tensor {
        let op = "embedding"
        guard table.rank == 2 else { throw TensorError.shapeMismatch(op: op, expected: [-1, -1], actual: table.shape) }
        let (rows, dim) = (table.shape[0], table.shape[1])
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= rows }) {
            throw TensorError.invalidArgument(op: op, message: "id \(bad) outside the table's \(rows) rows")
        }
        let tp = try floats(table, op)
        let (out, yp) = allocateFloats([ids.count, dim])
        for (r, id) in ids.enumerated() {
            (yp + r * dim).update(from: tp + Int(id) * dim, count: dim)
        }
        return outputDType == .f32 ? out : try convert(out, to: outputDType)
    }

    /// Raw bytes of a row-major tensor of any element type.
    func rawElements(_ t: Tensor, _ op: String) throws -> UnsafeRawPointer {
        let storage = try referenceStorage(t, op)
        guard storage.layout == .rowMajor else {
            throw TensorError.invalidArgument(op: op, message: "a prepared linear/conv weight cannot be used as a plain tensor")
        }
        guard storage.byteCount >= t.count * t.dtype.byteSize else {
            throw TensorError.shapeMismatch(op: op, expected: t.shape, actual: [storage.byteCount / t.dtype.byteSize])
        }
        return UnsafeRawPointer(storage.pointer)
    }
}
