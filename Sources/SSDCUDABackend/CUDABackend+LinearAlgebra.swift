import CCUDA
import SSDTensor

extension CUDABackend {
    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor?) throws -> Tensor {
        guard weight.rank == 2, let k = x.shape.last, k == weight.shape[1] else {
            throw TensorError.shapeMismatch(op: "linear", expected: [-1, weight.shape.last ?? -1], actual: x.shape)
        }
        _ = try floatCode(x, "linear")
        let n = weight.shape[0]
        let m = x.count / max(k, 1)
        let outShape = Array(x.shape.dropLast()) + [n]
        if let residual, residual.shape.reduce(1, *) != m * n {
            throw TensorError.shapeMismatch(op: "linear residual", expected: outShape, actual: residual.shape)
        }
        if let bias, bias.count != n { throw TensorError.shapeMismatch(op: "linear bias", expected: [n], actual: bias.shape) }
        let y = try empty(outShape, x.dtype)
        try gemmRows(m: m, n: n, k: k, x: x, weight: weight, bias: bias, residual: residual, into: try pointer(y, "linear"), op: "linear")
        return y
    }

    /// `out[m, n] = x[m, k] · W[n, k]ᵀ + bias + residual` (rows of x, W and out contiguous).
    func gemmRows(m: Int, n: Int, k: Int, x: Tensor, xOffset: Int = 0, weight: Tensor, bias: Tensor?, residual: Tensor?,
                  residualOffset: Int = 0, into out: CUdeviceptr, op: String) throws {
        let dtype = x.dtype
        let w = try cast(weight, dtype)
        let b = try bias.map { try cast($0, dtype) }
        let r = try residual.map { try cast($0, dtype) }
        let e = UInt64(dtype.byteSize)
        let shape = GemmShape(m: m, n: n, k: k, transA: false, transB: true, lda: k, ldb: k, ldd: n, dtype: dtype, bias: b != nil)
        try gemm.run(shape, a: try pointer(x, op) + UInt64(xOffset) * e, b: try pointer(w, op),
                     c: try r.map { try pointer($0, op) + UInt64(residualOffset) * e }, d: out,
                     bias: try b.map { try pointer($0, op) })
        withExtendedLifetime((w, b, r)) {}
    }

    public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, alpha: Float) throws -> Tensor {
        guard a.rank >= 2, b.rank >= 2 else { throw TensorError.shapeMismatch(op: "matmul", expected: [-1, -1], actual: a.shape) }
        _ = try floatCode(a, "matmul")
        let bb = try cast(b, a.dtype)
        let m = transposeA ? a.shape[a.rank - 1] : a.shape[a.rank - 2]
        let k = transposeA ? a.shape[a.rank - 2] : a.shape[a.rank - 1]
        let kb = transposeB ? b.shape[b.rank - 1] : b.shape[b.rank - 2]
        let n = transposeB ? b.shape[b.rank - 2] : b.shape[b.rank - 1]
        let leading = Array(a.shape.dropLast(2))
        let batch = leading.reduce(1, *)
        let shared = b.rank == 2
        guard k == kb, shared || Array(b.shape.dropLast(2)) == leading else {
            throw TensorError.shapeMismatch(op: "matmul", expected: a.shape, actual: b.shape)
        }
        let y = try empty(leading + [m, n], a.dtype)
        let pa = try pointer(a, "matmul"), pb = try pointer(bb, "matmul"), py = try pointer(y, "matmul")
        let lda = transposeA ? m : k, ldb = transposeB ? k : n
        if shared && !transposeA {
            // Fold the batch into M: [batch·M, K] · B.
            let s = GemmShape(m: batch * m, n: n, k: k, transA: false, transB: transposeB, lda: lda, ldb: ldb, ldd: n, dtype: a.dtype)
            try gemm.run(s, a: pa, b: pb, c: nil, d: py, alpha: alpha)
        } else if shared {
            let e = UInt64(a.dtype.byteSize)
            let s = GemmShape(m: m, n: n, k: k, transA: true, transB: transposeB, lda: lda, ldb: ldb, ldd: n, dtype: a.dtype)
            for i in 0..<batch {
                try gemm.run(s, a: pa + UInt64(i * m * k) * e, b: pb, c: nil, d: py + UInt64(i * m * n) * e, alpha: alpha)
            }
        } else {
            let s = GemmShape(m: m, n: n, k: k, transA: transposeA, transB: transposeB, lda: lda, ldb: ldb, ldd: n,
                              strideA: m * k, strideB: k * n, strideD: m * n, batch: batch, dtype: a.dtype)
            try gemm.run(s, a: pa, b: pb, c: nil, d: py, alpha: alpha)
        }
        withExtendedLifetime(bb) {}
        return y
    }

    public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int, residual: Tensor?) throws -> Tensor {
        guard x.rank == 4, weight.rank == 4, x.shape[3] == weight.shape[1], stride > 0, padding >= 0 else {
            throw TensorError.shapeMismatch(op: "conv2d", expected: [-1, -1, -1, weight.rank == 4 ? weight.shape[1] : -1], actual: x.shape)
        }
        _ = try floatCode(x, "conv2d")
        let s = ConvShape(batch: x.shape[0], height: x.shape[1], width: x.shape[2], inChannels: x.shape[3],
                          outChannels: weight.shape[0], kernelHeight: weight.shape[2], kernelWidth: weight.shape[3],
                          stride: stride, padding: padding, dtype: x.dtype)
        guard s.outHeight > 0, s.outWidth > 0 else {
            throw TensorError.invalidArgument(op: "conv2d", message: "kernel \(weight.shape) does not fit input \(x.shape) with padding \(padding)")
        }
        let outShape = [s.batch, s.outHeight, s.outWidth, s.outChannels]
        if let residual, residual.shape != outShape {
            throw TensorError.shapeMismatch(op: "conv2d residual", expected: outShape, actual: residual.shape)
        }
        let y = try empty(outShape, x.dtype)
        let rows = s.batch * s.outHeight * s.outWidth
        let kdim = s.kernelHeight * s.kernelWidth * s.inChannels
        // 1×1 stride 1: a plain GEMM with the bias and residual fused.
        if s.kernelHeight == 1 && s.kernelWidth == 1 && stride == 1 && padding == 0 {
            try gemmRows(m: rows, n: s.outChannels, k: s.inChannels, x: x, weight: weight.reshaped([s.outChannels, s.inChannels]),
                         bias: bias, residual: residual, into: try pointer(y, "conv2d"), op: "conv2d")
            return y
        }
        let prepared = try buffer(weight, "conv2d").layout == .convOHWI
        var w = try cast(weight, x.dtype)
        if !prepared {  // not from prepareWeight: re-lay out [Cout, Cin, kh, kw] → [Cout, kh, kw, Cin] now
            w = try Tensor(shape: w.shape, dtype: w.dtype, storage: permute(w, [0, 2, 3, 1]).storage)
        }
        // cuDNN's graph API (SSD_CUDA_CONV_GRAPH): conv, bias and residual (in x's type) in one plan.
        if let graphs = convolutionGraphs, x.dtype != .f32 {
            let b = try bias.map { try cast($0, x.dtype) }, r = try residual.map { try cast($0, x.dtype) }
            let done = try graphs.run(s, x: try pointer(x, "conv2d"), w: try pointer(w, "conv2d"), y: try pointer(y, "conv2d"),
                                      bias: try b.map { try pointer($0, "conv2d") }, residual: try r.map { try pointer($0, "conv2d") })
            withExtendedLifetime((b, r)) {}
            if done { return y }
        }
        if let plan = convolutions.plan(s) {
            do {
                // Fused (SSD_CUDA_FUSED_CONV): bias and residual in x's type go into cuDNN's call.
                let fuse = convolutions.fused && bias != nil
                let b = fuse ? try bias.map { try cast($0, x.dtype) } : nil
                let r = fuse ? try residual.map { try cast($0, x.dtype) } : nil
                let done = try convolutions.run(plan, x: try pointer(x, "conv2d"), w: try pointer(w, "conv2d"), y: try pointer(y, "conv2d"),
                                                bias: try b.map { try pointer($0, "conv2d") }, residual: try r.map { try pointer($0, "conv2d") },
                                                dtype: x.dtype)
                if !done { try addBiasResidual(y, bias: bias, residual: residual, op: "conv2d") }
                withExtendedLifetime((b, r)) {}
                return y
            } catch {
                // Inside a graph capture the refusal may be the capture's: the capture fails instead.
                if device.isCapturing { throw error }
                convolutions.disable(s)  // cuDNN refused at run time: use the fallback for this shape from now on
            }
        }
        // Fallback: im2col in row chunks of at most 256 MiB, each chunk one GEMM into its rows of y.
        let e = x.dtype.byteSize
        let chunk = max(8, min(rows, (256 << 20) / max(kdim * e, 1)) / 8 * 8)
        let u = CUDABackend.unit([s.inChannels * e])
        let cu = s.inChannels * e / u
        let col = try empty([min(chunk, rows), kdim], x.dtype)
        let wRows = try w.reshaped([s.outChannels, kdim])
        var r0 = 0
        while r0 < rows {
            let r = min(chunk, rows - r0)
            try kernels.im2col(try pointer(x, "conv2d"), try pointer(col, "conv2d"), unit: u, height: s.height, width: s.width,
                               channelUnits: cu, kernelHeight: s.kernelHeight, kernelWidth: s.kernelWidth, stride: stride,
                               padding: padding, outHeight: s.outHeight, outWidth: s.outWidth, firstRow: r0, rows: r)
            try gemmRows(m: r, n: s.outChannels, k: kdim, x: col, weight: wRows, bias: bias, residual: residual,
                         residualOffset: r0 * s.outChannels, into: try pointer(y, "conv2d") + UInt64(r0 * s.outChannels * e), op: "conv2d")
            r0 += r
        }
        return y
    }
}
