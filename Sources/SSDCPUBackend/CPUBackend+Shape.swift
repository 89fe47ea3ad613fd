import SSDTensor

extension CPUBackend {
    /// `torch.cat`: copies each input's rows of `inner` elements into place (any element type).
    public func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor {
        let op = "concat"
        guard let first = tensors.first else { throw TensorError.invalidArgument(op: op, message: "no tensors") }
        let rank = first.rank
        let ax = axis < 0 ? axis + rank : axis
        guard ax >= 0, ax < rank else { throw TensorError.invalidArgument(op: op, message: "axis \(axis) for rank \(rank)") }
        var shape = first.shape
        shape[ax] = 0
        for t in tensors {
            guard t.rank == rank, t.dtype == first.dtype,
                  (0..<rank).allSatisfy({ $0 == ax || t.shape[$0] == first.shape[$0] }) else {
                throw TensorError.shapeMismatch(op: op, expected: first.shape, actual: t.shape)
            }
            shape[ax] += t.shape[ax]
        }
        let es = first.dtype.byteSize
        let outer = first.shape[..<ax].reduce(1, *), inner = first.shape[(ax + 1)...].reduce(1, *)
        let out = allocate(shape, first.dtype)
        let dst = try out.cpuBuffer(op).pointer
        let rowOut = shape[ax] * inner * es
        var offset = 0
        for t in tensors {
            let src = try t.cpuBuffer(op).pointer
            let row = t.shape[ax] * inner * es
            let off = offset
            parallelChunks(outer, minimumChunk: max(1, (1 << 16) / max(row, 1))) { r in
                for o in r { (dst + o * rowOut + off).copyMemory(from: src + o * row, byteCount: row) }
            }
            offset += row
        }
        return out
    }

    public func slice(_ x: Tensor, axis: Int, range: Range<Int>) throws -> Tensor {
        let op = "slice"
        let ax = axis < 0 ? axis + x.rank : axis
        guard ax >= 0, ax < x.rank, range.lowerBound >= 0, range.upperBound <= x.shape[ax] else {
            throw TensorError.invalidArgument(op: op, message: "range \(range) of axis \(axis) in \(x.shape)")
        }
        let src = try x.cpuBuffer(op).pointer
        var shape = x.shape
        shape[ax] = range.count
        let es = x.dtype.byteSize
        let outer = x.shape[..<ax].reduce(1, *), inner = x.shape[(ax + 1)...].reduce(1, *)
        let out = allocate(shape, x.dtype)
        let dst = try out.cpuBuffer(op).pointer
        let rowIn = x.shape[ax] * inner * es, rowOut = range.count * inner * es, start = range.lowerBound * inner * es
        parallelChunks(outer, minimumChunk: max(1, (1 << 16) / max(rowOut, 1))) { r in
            for o in r { (dst + o * rowOut).copyMemory(from: src + o * rowIn + start, byteCount: rowOut) }
        }
        return out
    }

    /// `torch.permute` (materialised). Trailing axes that stay in place are copied as blocks.
    public func permute(_ x: Tensor, _ dims: [Int]) throws -> Tensor {
        let op = "permute"
        let rank = x.rank
        guard dims.count == rank, Set(dims) == Set(0..<rank) else {
            throw TensorError.invalidArgument(op: op, message: "dims \(dims) for shape \(x.shape)")
        }
        let src = try x.cpuBuffer(op).pointer
        let shape = dims.map { x.shape[$0] }
        let out = allocate(shape, x.dtype)
        let dst = try out.cpuBuffer(op).pointer
        if x.count == 0 { return out }
        var inStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * x.shape[i + 1] }
        // Trailing identity axes form a contiguous block.
        var keep = rank
        while keep > 0 && dims[keep - 1] == keep - 1 && (keep == rank || dims[keep] == keep) { keep -= 1 }
        let block = shape[keep...].reduce(1, *) * x.dtype.byteSize
        let outerShape = Array(shape[..<keep])
        let srcStrides = dims[..<keep].map { inStrides[$0] * x.dtype.byteSize }
        let count = outerShape.reduce(1, *)
        parallelChunks(count, minimumChunk: max(1, (1 << 14) / block)) { r in
            for o in r {
                var rem = o, off = 0
                for d in stride(from: keep - 1, through: 0, by: -1) {
                    off += (rem % outerShape[d]) * srcStrides[d]
                    rem /= outerShape[d]
                }
                (dst + o * block).copyMemory(from: src + off, byteCount: block)
            }
        }
        return out
    }

    /// Nearest ×2 upsampling of NHWC (diffusers `Upsample2D`, `F.interpolate(scale_factor=2.0, mode="nearest")`).
    public func upsampleNearest2x(_ x: Tensor) throws -> Tensor {
        let op = "upsampleNearest2x"
        guard x.rank == 4 else { throw TensorError.shapeMismatch(op: op, expected: [-1, -1, -1, -1], actual: x.shape) }
        let src = try x.cpuBuffer(op).pointer
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let out = allocate([b, 2 * h, 2 * w, c], x.dtype)
        let dst = try out.cpuBuffer(op).pointer
        let px = c * x.dtype.byteSize
        parallelFor(b * h) { row in
            let s = src + row * w * px
            let d0 = dst + (row * 2) * 2 * w * px
            for ix in 0..<w {
                (d0 + 2 * ix * px).copyMemory(from: s + ix * px, byteCount: px)
                (d0 + (2 * ix + 1) * px).copyMemory(from: s + ix * px, byteCount: px)
            }
            (d0 + 2 * w * px).copyMemory(from: d0, byteCount: 2 * w * px)
        }
        return out
    }

    public func embedding(_ table: Tensor, ids: [Int32], outputDType: DType) throws -> Tensor {
        let op = "embedding"
        guard table.rank == 2 else { throw TensorError.shapeMismatch(op: op, expected: [-1, -1], actual: table.shape) }
        let src = try table.cpuBuffer(op).pointer
        let (rows, dim) = (table.shape[0], table.shape[1])
        let out = allocate([ids.count, dim], outputDType)
        let dst = try out.cpuBuffer(op).pointer
        for (i, id) in ids.enumerated() {
            guard id >= 0, Int(id) < rows else {
                throw TensorError.invalidArgument(op: op, message: "id \(id) outside the table's \(rows) rows")
            }
            try convertElements(from: src + Int(id) * dim * table.dtype.byteSize, table.dtype,
                                to: dst + i * dim * outputDType.byteSize, outputDType, count: dim, op: op)
        }
        return out
    }
}
